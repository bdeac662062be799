/**
 * A programmable receiving MX for delivery tests (design convention 8, after KumoMTA's sink):
 * a real SMTP server (the `smtp-server` package) bound to a loopback address such as 127.0.0.2,
 * whose behaviour the recipient's local part chooses:
 *
 *   tempfail@…            RCPT → 451 4.2.1      permfail@…          RCPT → 550 5.1.1
 *   blocked@…             RCPT → 550 5.7.1 (a blocklist rejection, as Postfix with Spamhaus words it)
 *   data-tempfail@…       end of DATA → 451     data-permfail@…     end of DATA → 554 5.6.0
 *   disconnect-in-data@…  the connection is cut while the message is being sent
 *   slow@…                RCPT answered after `slowMs`
 *   throttle@…            RCPT → 421 4.7.0 [TSS04] (Yahoo's throttle reply; the server then closes)
 *   hold@…                the end of DATA is not answered until release() (or the connection ends)
 *   hang@…                RCPT never answered (a receiver that hangs the sender's worker)
 *   anything else         accepted and kept in `messages`
 * (a "+tag" after the keyword is ignored: tempfail+3@… behaves as tempfail@…).
 *
 * Options add STARTTLS (with a certificate from makeCertificate()), required AUTH, a refusing
 * greeting (e.g. 421), a SIZE limit, and hiding SMTPUTF8 or PIPELINING. It counts connections,
 * the peak of concurrent ones, and messages per connection, and records each connection's remote
 * address, so tests can check connection reuse, caps and source addresses at the receiving end.
 * `holdAll = true` holds every transaction like hold@…, and `held` counts the transactions
 * waiting there: a positive signal that a delivery is in progress (e.g. at a kill -9).
 *
 * Invariants: binds only the given loopback address, on an ephemeral port (port 0); close() ends
 * every open connection.
 */

import selfsigned from "selfsigned";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";

export interface ReceivedMessage {
  readonly from: string;
  readonly to: readonly string[];
  readonly content: Buffer;
  readonly remoteAddress: string;
  readonly heloName: string;
  readonly secure: boolean;
  readonly user: string | undefined;
  readonly connection: string;
  /** When the end of DATA arrived (Date.now()), for rates measured at the receiver. */
  readonly at: number;
}

export interface TestMxOptions {
  /** Loopback address to bind, default 127.0.0.2. */
  readonly address?: string;
  /** Offer STARTTLS with this certificate. */
  readonly tls?: { readonly key: string; readonly cert: string };
  /** Speak TLS from the first byte (port 465 style) with the `tls` certificate. */
  readonly implicitTls?: boolean;
  /** Require AUTH with these credentials. */
  readonly auth?: { readonly user: string; readonly pass: string };
  /** Refuse every connection at the greeting with this code (421, 554 …). */
  readonly refuse?: number;
  readonly size?: number;
  readonly smtputf8?: boolean;
  readonly pipelining?: boolean;
  /** Delay for slow@ recipients, default 300 ms. */
  readonly slowMs?: number;
}

export interface TestMxStats {
  connections: number;
  concurrent: number;
  peakConcurrent: number;
  /** Messages accepted per connection id. */
  readonly perConnection: Map<string, number>;
  readonly remoteAddresses: string[];
  /** Every RCPT TO address seen, in order (accepted or not). */
  readonly rcpts: string[];
}

export interface TestMx {
  readonly address: string;
  readonly port: number;
  readonly messages: ReceivedMessage[];
  readonly stats: TestMxStats;
  /** Hold the end of DATA of every transaction (as for hold@…) while true. */
  holdAll: boolean;
  /** Transactions whose content arrived and whose reply is held back. */
  readonly held: number;
  /** Resolves once `count` transactions are held (rejects after timeoutMs). */
  waitForHeld(count: number, timeoutMs?: number): Promise<void>;
  /** The content of each held transaction (latin1). */
  heldContents(): string[];
  /** The client address of each held transaction (which node is delivering it, in cluster tests). */
  heldFrom(): string[];
  /** Answers every held transaction (accepting it); holdAll decides about the ones to come. */
  release(): void;
  /** Resolves once `count` messages were accepted in all (rejects after timeoutMs). */
  waitForMessages(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

interface SmtpError extends Error {
  responseCode?: number;
}

function smtpError(code: number, text: string): SmtpError {
  const err: SmtpError = new Error(text);
  err.responseCode = code;
  return err;
}

function behaviour(address: string): string {
  const local = address.slice(0, address.lastIndexOf("@")).toLowerCase();
  return local.split("+")[0] ?? local;
}

export async function startTestMx(options: TestMxOptions = {}): Promise<TestMx> {
  const address = options.address ?? "127.0.0.2";
  const messages: ReceivedMessage[] = [];
  const stats: TestMxStats = {
    connections: 0,
    concurrent: 0,
    peakConcurrent: 0,
    perConnection: new Map(),
    remoteAddresses: [],
    rcpts: [],
  };
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  // Held transactions by session id: their content, and `accept` to answer them.
  const held = new Map<string, { content: Buffer; from: string; accept: () => void }>();
  const heldWaiters: Array<{ count: number; resolve: () => void }> = [];
  const control = { holdAll: false };
  let server: SMTPServer;
  const serverOptions: SMTPServerOptions = {
    logger: false,
    banner: `test MX ${address}`,
    hideENHANCEDSTATUSCODES: true,
    secure: options.implicitTls === true,
    hideSTARTTLS: !options.tls || options.implicitTls === true,
    disabledCommands: options.tls ? (options.auth ? [] : ["AUTH"]) : options.auth ? [] : ["STARTTLS", "AUTH"],
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
    authOptional: !options.auth,
    allowInsecureAuth: false,
    size: options.size,
    hideSMTPUTF8: options.smtputf8 === false,
    hidePIPELINING: options.pipelining === false,
    onConnect(session, callback) {
      stats.connections++;
      stats.concurrent++;
      stats.peakConcurrent = Math.max(stats.peakConcurrent, stats.concurrent);
      stats.remoteAddresses.push(session.remoteAddress);
      stats.perConnection.set(session.id, 0);
      if (options.refuse) return callback(smtpError(options.refuse, "Too busy, try later"));
      callback();
    },
    onClose(session) {
      stats.concurrent--;
      held.delete(session.id); // the client went away: nothing to answer
    },
    onAuth(auth, _session, callback) {
      if (options.auth && auth.username === options.auth.user && auth.password === options.auth.pass) {
        return callback(null, { user: auth.username });
      }
      callback(smtpError(535, "5.7.8 Authentication credentials invalid"));
    },
    onRcptTo(rcpt, _session, callback) {
      stats.rcpts.push(rcpt.address);
      switch (behaviour(rcpt.address)) {
        case "hang":
          return; // never answered: close() ends the connection
        case "tempfail":
          return callback(smtpError(451, "4.2.1 Mailbox busy, try again later"));
        case "permfail":
          return callback(smtpError(550, "5.1.1 No such user here"));
        case "blocked":
          return callback(
            smtpError(
              550,
              "5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org",
            ),
          );
        case "throttle":
          return callback(
            smtpError(
              421,
              "4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
            ),
          );
        case "slow":
          return void setTimeout(() => callback(), options.slowMs ?? 300);
        default:
          return callback();
      }
    },
    onData(stream, session, callback) {
      const kinds = session.envelope.rcptTo.map((r) => behaviour(r.address));
      if (kinds.includes("disconnect-in-data")) {
        stream.once("data", () => {
          for (const c of server.connections) if (c.session.id === session.id) c._socket.destroy();
        });
      }
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      const accept = () => {
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          content: Buffer.concat(chunks),
          remoteAddress: session.remoteAddress,
          heloName: session.hostNameAppearsAs,
          secure: session.secure,
          user: session.user as string | undefined,
          connection: session.id,
          at: Date.now(),
        });
        stats.perConnection.set(session.id, (stats.perConnection.get(session.id) ?? 0) + 1);
        for (const w of waiters.filter((x) => messages.length >= x.count)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
        callback(null, `2.0.0 Ok: queued as ${messages.length}`);
      };
      stream.on("end", () => {
        if (kinds.includes("disconnect-in-data")) return;
        if (kinds.includes("data-tempfail")) return callback(smtpError(451, "4.3.0 Try again later"));
        if (kinds.includes("data-permfail")) return callback(smtpError(554, "5.6.0 Message refused"));
        if (control.holdAll || kinds.includes("hold")) {
          held.set(session.id, { content: Buffer.concat(chunks), from: session.remoteAddress, accept });
          for (const w of heldWaiters.filter((x) => held.size >= x.count)) {
            heldWaiters.splice(heldWaiters.indexOf(w), 1);
            w.resolve();
          }
          return;
        }
        accept();
      });
    },
  };
  server = new SMTPServer(serverOptions);
  server.on("error", () => {
    // connection-level errors (resets in disconnect tests) are expected
  });
  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject);
    // Always port 0 on the exact address: a port found free elsewhere may be taken here by another
    // test file. Point delivery at it with `delivery.mxPorts` (see mxPorts() below).
    server.listen(0, address, () => resolve());
  });
  const port = (server.server.address() as { port: number }).port;
  return {
    address,
    port,
    messages,
    stats,
    get holdAll() {
      return control.holdAll;
    },
    set holdAll(on: boolean) {
      control.holdAll = on;
    },
    get held() {
      return held.size;
    },
    waitForHeld(count, timeoutMs = 30_000) {
      if (held.size >= count) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`test MX ${address}: ${held.size} of ${count} transactions held`)),
          timeoutMs,
        );
        heldWaiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    heldContents() {
      return [...held.values()].map((h) => h.content.toString("latin1"));
    },
    heldFrom() {
      return [...held.values()].map((h) => h.from);
    },

    release() {
      const transactions = [...held.values()];
      held.clear();
      for (const t of transactions) t.accept();
    },
    waitForMessages(count, timeoutMs = 10_000) {
      if (messages.length >= count) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`test MX ${address}: ${messages.length} of ${count} messages`)),
          timeoutMs,
        );
        waiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        for (const c of server.connections) c._socket.destroy();
        server.close(() => resolve());
      });
    },
  };
}

/**
 * `delivery.mxPorts` for several test MX hosts: each listens on its own ephemeral port, and
 * delivery connects to each address on that port.
 */
export function mxPorts(
  ...hosts: ReadonlyArray<{ readonly address: string; readonly port: number }>
): Record<string, number> {
  return Object.fromEntries(hosts.map((h) => [h.address, h.port]));
}

/** A self-signed certificate (its own CA) for these names, e.g. ["mx1.example.test"]. */
export async function makeCertificate(names: readonly string[]): Promise<{ key: string; cert: string }> {
  const pems = await selfsigned.generate([{ name: "commonName", value: names[0] ?? "localhost" }], {
    keySize: 2048,
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, keyCertSign: true },
      { name: "subjectAltName", altNames: names.map((value) => ({ type: 2 as const, value })) },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}

/**
 * A misbehaving receiving MX for delivery tests: a raw `net` server (not smtp-server, which
 * cannot misbehave) that speaks plain SMTP correctly except at one chosen step, where it does
 * what a broken or hostile server does:
 *
 *   { at: "rcpt", reply: "550 5.1.1 " + "x".repeat(5000) }   an oversized reply (> 512 bytes)
 *   { at: "rcpt", reply: lines(1000, "451", "4.2.1 busy") }   a 1,000-line multiline reply
 *   { at: "greeting", reply: "hello, I am not SMTP" }         a malformed reply
 *   { at: "dot", silent: true }                               never answers (the socket stays open)
 *   { at: "dot", cut: "250-2.0.0 Ok\r\n250-que" }             closes in the middle of a reply
 *   { at: "greeting", flood: true }                           bytes without end and no line break
 *
 * Steps: greeting, ehlo, mail, rcpt (every RCPT), data (the 354), dot (the reply after the
 * content). Everywhere else it answers as a plain RFC 5321 server without extensions (no
 * PIPELINING, so each command waits for its reply and the step is exact). It counts connections,
 * bytes it wrote, and the transactions it accepted, and notes when the client closed on it.
 *
 * Invariants: binds port 0 on the given loopback address only; close() ends every connection.
 */
import { createServer, type Socket } from "node:net";

export type RawMxStep = "greeting" | "ehlo" | "mail" | "rcpt" | "data" | "dot";

export interface Misbehaviour {
  readonly at: RawMxStep;
  /** Sent instead of the normal reply (CRLF appended unless it already ends with LF). */
  readonly reply?: string;
  /** Send nothing at all; keep reading (and ignoring) whatever comes. */
  readonly silent?: boolean;
  /** Send these bytes, then close the connection. */
  readonly cut?: string;
  /** Write 64 KiB chunks of "x" as fast as the client reads them, until it closes. */
  readonly flood?: boolean;
}

export interface RawMx {
  readonly address: string;
  readonly port: number;
  /** The misbehaviour of the connections to come (undefined = behave). */
  misbehaviour: Misbehaviour | undefined;
  readonly stats: {
    connections: number;
    open: number;
    /** Bytes written to clients, in all. */
    bytesWritten: number;
    /** Transactions answered 250 after the content. */
    accepted: number;
    /** Connections the client ended (FIN or reset) before the server did. */
    closedByClient: number;
  };
  /** Resolves once `count` connections have ended (rejects after timeoutMs). */
  waitForClosed(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** A multiline reply of `count` lines: "451-line 1" … "451 4.2.1 …" (RFC 5321 §4.2.1). */
export function multiline(count: number, code: string, last: string): string {
  const lines = Array.from({ length: count - 1 }, (_, i) => `${code}-line ${i + 1} of a very long reply`);
  return [...lines, `${code} ${last}`].join("\r\n");
}

const FLOOD_CHUNK = Buffer.alloc(64 * 1024, "x");

export async function startRawMx(
  options: { readonly address?: string; readonly misbehaviour?: Misbehaviour } = {},
): Promise<RawMx> {
  const address = options.address ?? "127.0.0.2";
  const sockets = new Set<Socket>();
  const closeWaiters: Array<{ count: number; resolve: () => void }> = [];
  let ended = 0;
  const mx = {
    address,
    port: 0,
    misbehaviour: options.misbehaviour,
    stats: { connections: 0, open: 0, bytesWritten: 0, accepted: 0, closedByClient: 0 },
  } as RawMx & { port: number };

  const server = createServer((socket) => {
    const plan = mx.misbehaviour;
    sockets.add(socket);
    mx.stats.connections++;
    mx.stats.open++;
    let closedByUs = false;
    let buffered = "";
    let inData = false;
    let gone = false;
    socket.on("error", () => {});
    socket.on("close", () => {
      gone = true;
      sockets.delete(socket);
      mx.stats.open--;
      if (!closedByUs) mx.stats.closedByClient++;
      ended++;
      for (const w of closeWaiters.filter((x) => ended >= x.count)) {
        closeWaiters.splice(closeWaiters.indexOf(w), 1);
        w.resolve();
      }
    });
    const write = (data: string | Buffer) => {
      if (gone) return true;
      mx.stats.bytesWritten += data.length;
      return socket.write(data);
    };
    const hangUp = () => {
      closedByUs = true;
      socket.end();
    };
    const flood = () => {
      while (!gone && write(FLOOD_CHUNK)) {
        // keep writing while the kernel takes it
      }
      if (!gone) socket.once("drain", flood);
    };
    /** Answers one step: normally, or as planned. Returns false when the step ended the dialogue. */
    const answer = (step: RawMxStep, normal: string): boolean => {
      if (plan?.at !== step) {
        write(`${normal}\r\n`);
        return true;
      }
      if (plan.silent) return false;
      if (plan.flood) {
        flood();
        return false;
      }
      if (plan.cut !== undefined) {
        write(plan.cut);
        closedByUs = true;
        socket.destroy();
        return false;
      }
      const reply = plan.reply ?? normal;
      write(reply.endsWith("\n") ? reply : `${reply}\r\n`);
      // A misbehaving reply that is not a positive one ends the step here; the client decides.
      return true;
    };

    let stopped = !answer("greeting", `220 ${address} ESMTP raw test MX`);
    socket.on("data", (chunk: Buffer) => {
      if (stopped) return; // silent or flooding: ignore everything
      buffered += chunk.toString("latin1");
      for (;;) {
        if (inData) {
          const end = buffered.indexOf("\r\n.\r\n");
          if (end < 0) {
            // keep only what could start the terminator
            if (buffered.length > 4) buffered = buffered.slice(-4);
            return;
          }
          buffered = buffered.slice(end + 5);
          inData = false;
          const reply = plan?.at === "dot" ? plan.reply : "250";
          if (!answer("dot", "250 2.0.0 Ok: queued")) {
            stopped = true;
            return;
          }
          if (reply?.startsWith("2")) mx.stats.accepted++;
          continue;
        }
        const eol = buffered.indexOf("\r\n");
        if (eol < 0) return;
        const line = buffered.slice(0, eol);
        buffered = buffered.slice(eol + 2);
        const verb = line.slice(0, 4).toUpperCase();
        let ok = true;
        switch (verb) {
          case "EHLO":
          case "HELO":
            ok = answer("ehlo", `250 ${address}`);
            break;
          case "MAIL":
            ok = answer("mail", "250 2.1.0 Ok");
            break;
          case "RCPT":
            ok = answer("rcpt", "250 2.1.5 Ok");
            break;
          case "DATA":
            ok = answer("data", "354 End data with <CR><LF>.<CR><LF>");
            if (ok && (plan?.at !== "data" || plan.reply?.startsWith("354"))) inData = true;
            break;
          case "RSET":
          case "NOOP":
            write("250 2.0.0 Ok\r\n");
            break;
          case "QUIT":
            write("221 2.0.0 Bye\r\n");
            hangUp();
            return;
          default:
            write("500 5.5.2 Command unrecognized\r\n");
        }
        if (!ok) {
          stopped = true;
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, address, () => resolve());
  });
  mx.port = (server.address() as { port: number }).port;
  return Object.assign(mx, {
    waitForClosed(count: number, timeoutMs = 30_000) {
      if (ended >= count) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`raw MX ${address}: ${ended} of ${count} connections ended`)),
          timeoutMs,
        );
        closeWaiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}

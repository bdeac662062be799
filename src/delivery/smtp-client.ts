/**
 * The outbound SMTP session: Nodemailer's SMTPConnection (well kept, PIPELINING, setNoDelay,
 * STARTTLS response-injection safe) behind a small promise API that speaks in per-recipient
 * replies, which is what delivery records.
 *
 * TLS policies: none (never STARTTLS), opportunistic (STARTTLS when offered, any certificate, and
 * when the handshake itself fails, one more try in plaintext, as Postfix's "may" level does),
 * required (TLS or fail, any certificate), verify (TLS with a certificate valid for the MX name).
 *
 * Invariants: send() resolves with one reply per recipient and never throws for a remote answer;
 * a lost connection yields temporary replies for every recipient of the transaction in flight
 * (whether the server had it is unknown: at most one duplicate later). A session that failed a
 * transaction is RSET before its next one.
 * Security: every reply is untrusted text: replies are parsed for their codes only, and the
 * whole reply is truncated before it is stored or logged. Relay passwords go out only after TLS
 * unless the route's policy is `none`.
 */
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import tls from "node:tls";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import type { TlsPolicy } from "../config/delivery-schema.js";

export interface Reply {
  readonly code: number;
  readonly enhanced: string;
  /** The reply as received (continuation lines joined by spaces), at most 512 characters. */
  readonly text: string;
}

export interface SessionOptions {
  /** MX or relay host name: SNI and certificate name for `verify`. */
  readonly host: string;
  readonly ip: string;
  readonly port: number;
  readonly implicitTls: boolean;
  readonly tlsPolicy: TlsPolicy;
  /** Extra trusted CA certificates (PEM), added to Node's root store for `verify`. */
  readonly ca?: string | undefined;
  readonly localAddress?: string | undefined;
  readonly ehloName: string;
  readonly auth?: { readonly user: string; readonly pass: string } | null;
  readonly connectTimeoutMs: number;
  readonly greetingTimeoutMs: number;
  readonly commandTimeoutMs: number;
}

export interface SessionInfo {
  readonly host: string;
  readonly ip: string;
  readonly port: number;
  readonly sourceIp: string | null;
  /** "TLSv1.3 TLS_AES_256_GCM_SHA384", or null for plaintext. */
  readonly tls: string | null;
  /** SIZE limit advertised, 0 = none. */
  readonly maxSize: number;
  readonly smtputf8: boolean;
  readonly pipelining: boolean;
}

/** A session could not be set up: connect, greeting, EHLO, STARTTLS or AUTH failed. */
export class SessionError extends Error {
  readonly reply: Reply;
  /** The server itself answered the greeting with this reply (4xx/5xx instead of 220). */
  readonly atGreeting: boolean;
  constructor(reply: Reply, atGreeting = false) {
    super(reply.text);
    this.name = "SessionError";
    this.reply = reply;
    this.atGreeting = atGreeting;
  }
}

export interface Envelope {
  readonly from: string;
  readonly to: readonly string[];
}

export interface TransactionResult {
  /** Reply per recipient address (each address of the envelope appears once). */
  readonly replies: ReadonlyMap<string, Reply>;
}

/** What Nodemailer keeps about the server's extensions (not in its public types). */
interface ConnectionInternals {
  _supportedExtensions: string[];
  _maxAllowedSize: number;
}

interface NodemailerError extends Error {
  code?: string;
  response?: string;
  responseCode?: number;
  command?: string;
  recipient?: string;
  rejectedErrors?: NodemailerError[];
}

const MAX_REPLY = 512;
/** The start of an SMTP reply: a code with a first digit 2-5, then a space, a hyphen or the end. */
const SMTP_REPLY = /^[2-5]\d\d(?:[ -]|\r?\n|$)/;

export class SmtpSession {
  readonly info: SessionInfo;
  private readonly connection: SMTPConnection;
  private closed = false;
  private closing = false;
  /** A transaction failed and the server may still hold its state: RSET before the next. */
  private dirty = false;
  messagesSent = 0;

  private constructor(connection: SMTPConnection, info: SessionInfo) {
    this.connection = connection;
    this.info = info;
    connection.on("end", () => {
      this.closed = true;
    });
  }

  /** Opens a session; with `opportunistic`, a failed TLS handshake is retried once in plaintext. */
  static async open(options: SessionOptions): Promise<SmtpSession> {
    try {
      return await SmtpSession.connect(options, false);
    } catch (err) {
      if (options.tlsPolicy === "opportunistic" && !options.implicitTls && isTlsFailure(err)) {
        return SmtpSession.connect(options, true);
      }
      throw err;
    }
  }

  private static connect(options: SessionOptions, plaintext: boolean): Promise<SmtpSession> {
    const policy = plaintext ? "none" : options.tlsPolicy;
    const verify = policy === "verify";
    const tlsOptions: tls.ConnectionOptions = {
      rejectUnauthorized: verify,
      minVersion: "TLSv1.2",
      ...(verify && options.ca ? { ca: [...tls.rootCertificates, options.ca] } : {}),
    };
    const connection = new SMTPConnection({
      host: options.ip,
      port: options.port,
      secure: options.implicitTls,
      // SNI carries a name, never an address (RFC 6066 §3).
      servername: isIP(options.host) === 0 ? options.host : undefined,
      ignoreTLS: policy === "none",
      requireTLS: policy === "required" || policy === "verify",
      opportunisticTLS: policy === "opportunistic",
      name: options.ehloName,
      localAddress: options.localAddress,
      connectionTimeout: options.connectTimeoutMs,
      greetingTimeout: options.greetingTimeoutMs,
      socketTimeout: options.commandTimeoutMs,
      socketCloseTimeout: 1000,
      tls: tlsOptions,
      logger: false,
    });
    return new Promise<SmtpSession>((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        connection.close();
        const e = err as NodemailerError;
        const atGreeting =
          e.command === "CONN" && typeof e.response === "string" && /^[45]\d\d/.test(e.response);
        reject(new SessionError(sessionReply(err, options), atGreeting));
      };
      // Without a listener an 'error' event would throw; failures arrive through callbacks too.
      connection.on("error", fail);
      connection.connect((err) => {
        if (err) return fail(err);
        const done = () => {
          if (settled) return;
          settled = true;
          connection.removeListener("error", fail);
          connection.on("error", () => {});
          resolve(new SmtpSession(connection, describe(connection, options)));
        };
        if (!options.auth) return done();
        connection.login({ user: options.auth.user, pass: options.auth.pass }, (loginErr) =>
          loginErr ? fail(loginErr) : done(),
        );
      });
    });
  }

  get usable(): boolean {
    return !this.closed && !this.connection.destroyed;
  }

  /** One transaction: MAIL, RCPT per recipient, DATA (pipelined where offered). */
  async send(envelope: Envelope, content: Buffer): Promise<TransactionResult> {
    if (this.dirty) await this.reset();
    const replies = new Map<string, Reply>();
    const all = (reply: Reply) => {
      for (const to of envelope.to) replies.set(to, reply);
      return { replies };
    };
    if (!this.usable) return all(local(421, "4.4.2", `connection to ${this.describePeer()} was closed`));
    return new Promise<TransactionResult>((resolve) => {
      this.connection.send(
        { from: envelope.from, to: [...envelope.to], size: content.length },
        this.corkedContent(content),
        (err, info) => {
          this.messagesSent++;
          if (!err) {
            const reply = parseReply(info.response);
            for (const to of info.accepted) replies.set(to, reply);
            for (const rejected of info.rejectedErrors ?? []) {
              replies.set(rejected.recipient ?? "", parseReply(rejected.response ?? ""));
            }
            return resolve({ replies });
          }
          const e = err as NodemailerError;
          this.dirty = true;
          if (e.command === "RCPT TO" && e.rejectedErrors) {
            // Every recipient was refused, each with its own reply.
            for (const r of e.rejectedErrors) replies.set(r.recipient ?? "", parseReply(r.response ?? ""));
            for (const to of envelope.to) if (!replies.has(to)) replies.set(to, parseReply(e.response ?? ""));
            return resolve({ replies });
          }
          if (e.response && /^[45]\d\d/.test(e.response)) {
            // MAIL FROM, DATA or the message itself refused: one reply for all; recipients the
            // server refused at RCPT keep their own.
            const refused = new Map<string, Reply>();
            for (const r of (
              this.connection as unknown as { _envelope?: { rejectedErrors?: NodemailerError[] } }
            )._envelope?.rejectedErrors ?? []) {
              refused.set(r.recipient ?? "", parseReply(r.response ?? ""));
            }
            const reply = parseReply(e.response);
            for (const to of envelope.to) replies.set(to, refused.get(to) ?? reply);
            return resolve({ replies });
          }
          if (e.code === "EENVELOPE" && !e.response) {
            // Refused by the client before sending (an address with <, > or a line break).
            return resolve(all(local(553, "5.1.3", `cannot send to this address: ${e.message}`)));
          }
          if (e.code === "EMESSAGE" && /larger than allowed/.test(e.message)) {
            return resolve(
              all(local(552, "5.3.4", `message size exceeds the limit of ${this.describePeer()}`)),
            );
          }
          this.closed = true;
          if (e.response && !SMTP_REPLY.test(e.response)) {
            // A reply that is not SMTP ended the transaction (parseReply says why).
            return resolve(all(parseReply(e.response)));
          }
          return resolve(
            all(local(451, "4.4.2", `lost connection with ${this.describePeer()}: ${e.message}`)),
          );
        },
      );
    });
  }

  /**
   * The content as a source Nodemailer pipes into its dot-stuffing stream once DATA is answered
   * 354, with the socket corked meanwhile. Given a Buffer, Nodemailer writes the stuffed content
   * and the final "<CRLF>.<CRLF>" as two writes, and with Nagle off (setNoDelay) as two TCP
   * segments, the second of 3–5 bytes, for every message. Corked they leave as one: strace of
   * one connection to smtp-sink, 2,500 messages of 2 KB: 5,035 writes + 2,500 writevs → 5,000
   * writevs (two per message: the MAIL/RCPT/DATA batch and the content). The socket is read when
   * the content is piped, so after STARTTLS it is the TLS socket. Without one (a Nodemailer that
   * no longer has `_socket`) it is piped uncorked, as before. Typed as a Readable because send()
   * asks for one; Nodemailer only calls its pipe() (it tells streams by `typeof pipe`/`on`).
   */
  private corkedContent(content: Buffer): Readable {
    const connection = this.connection as unknown as { _socket?: { cork(): void; uncork(): void } };
    const source = {
      pipe(dest: NodeJS.WritableStream): NodeJS.WritableStream {
        const socket = connection._socket;
        socket?.cork();
        dest.end(content);
        socket?.uncork();
        return dest;
      },
    };
    return source as unknown as Readable;
  }

  /** RSET (RFC 5321 §4.1.1.5) so a reused session starts clean; a failure closes the session. */
  async reset(): Promise<void> {
    if (!this.usable) return;
    await new Promise<void>((resolve) =>
      this.connection.reset((err) => {
        if (err) void this.close();
        else this.dirty = false;
        resolve();
      }),
    );
  }

  /**
   * QUIT and close; idempotent. Resolves once the connection is gone (or after a second), so a
   * caller that frees a connection slot only then keeps its caps true at the receiving end too.
   */
  close(): Promise<void> {
    const gone = this.connection.destroyed
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            this.connection.close();
            resolve();
          }, 1000);
          this.connection.once("end", () => {
            clearTimeout(timer);
            resolve();
          });
        });
    if (!this.closing) {
      this.closing = true;
      this.closed = true;
      try {
        this.connection.quit();
      } catch {
        this.connection.close();
      }
    }
    return gone;
  }

  private describePeer(): string {
    return `${this.info.host}[${this.info.ip}]:${this.info.port}`;
  }
}

function describe(connection: SMTPConnection, options: SessionOptions): SessionInfo {
  const internals = connection as unknown as ConnectionInternals;
  const socket = connection._socket;
  let tlsText: string | null = null;
  if (connection.secure && socket instanceof tls.TLSSocket) {
    tlsText = `${socket.getProtocol() ?? "TLS"} ${socket.getCipher()?.name ?? ""}`.trim();
  }
  return {
    host: options.host,
    ip: options.ip,
    port: options.port,
    sourceIp: socket ? (socket.localAddress ?? null) : null,
    tls: tlsText,
    maxSize: internals._maxAllowedSize || 0,
    smtputf8: internals._supportedExtensions.includes("SMTPUTF8"),
    pipelining: internals._supportedExtensions.includes("PIPELINING"),
  };
}

function isTlsFailure(err: unknown): boolean {
  return err instanceof SessionError && err.reply.enhanced === "4.7.5";
}

/**
 * A reply from a remote server: "550 5.1.1 <x@y>: Recipient address rejected". One whose code
 * is not 2xx-5xx is not SMTP (RFC 5321 §4.2.1: servers MUST NOT send other first digits; clients
 * SHOULD treat them as fatal for the transaction): a temporary 451 4.5.0 with the text kept, never a
 * bounce, since nothing says the recipient is refused.
 */
export function parseReply(response: string): Reply {
  const text = response
    .slice(0, MAX_REPLY * 2)
    .replace(/\r?\n/g, " ")
    .slice(0, MAX_REPLY);
  if (!SMTP_REPLY.test(text)) {
    return local(451, "4.5.0", `malformed reply: ${text}`);
  }
  const code = Number(text.slice(0, 3));
  const enhanced = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(text)?.[1] ?? `${String(code)[0]}.0.0`;
  return { code, enhanced, text };
}

/** A reply we make up for a local decision or failure, in the same shape. */
export function local(code: number, enhanced: string, message: string): Reply {
  return { code, enhanced, text: `${code} ${enhanced} ${message}`.slice(0, MAX_REPLY) };
}

/** Why a session could not be set up, as a reply: the server's if it gave one, else ours. */
function sessionReply(err: unknown, options: SessionOptions): Reply {
  const e = err as NodemailerError;
  const peer = `${options.host}[${options.ip}]:${options.port}`;
  const why = (e.message ?? String(err)).replace(/\s+/g, " ");
  // TLS and AUTH failures are ours to report as temporary: policy or credentials, not the mail.
  if (
    e.code === "ETLS" ||
    e.command === "STARTTLS" ||
    /STARTTLS|certificate|self.signed|SSL|TLS/i.test(why)
  ) {
    return local(451, "4.7.5", `TLS with ${peer} failed: ${why}`);
  }
  if (e.code === "EAUTH") return local(451, "4.7.8", `authentication with ${peer} failed: ${why}`);
  if (e.response && (/^[45]\d\d/.test(e.response) || !SMTP_REPLY.test(e.response))) {
    const reply = parseReply(e.response);
    const stage = e.command === "CONN" ? "greeting" : (e.command ?? "session");
    return { ...reply, text: `${reply.text} (${stage} from ${peer})`.slice(0, MAX_REPLY) };
  }
  return local(451, "4.4.1", `connect to ${peer}: ${why}`);
}

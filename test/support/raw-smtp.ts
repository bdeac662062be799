/**
 * A minimal, fast SMTP submission client over raw sockets, for load and crash tests where
 * Nodemailer's per-message overhead would measure the client instead of the server. It speaks
 * plain RFC 5321: EHLO, optional STARTTLS and AUTH PLAIN, then MAIL/RCPT/DATA per message with
 * dot-stuffing, reading one reply per command (no pipelining, to keep it obviously correct).
 */
import net from "node:net";
import { performance } from "node:perf_hooks";
import tls from "node:tls";

export interface RawSessionOptions {
  readonly host?: string;
  readonly port: number;
  /** Upgrade with STARTTLS after EHLO. */
  readonly starttls?: boolean;
  /** Connect with implicit TLS. */
  readonly implicitTls?: boolean;
  readonly ca?: Buffer;
  /** AUTH PLAIN with username apikey and this key. */
  readonly apiKey?: string;
  readonly ehloName?: string;
  /** Local address to connect from (a loopback address such as 127.0.0.58: a client of its own). */
  readonly localAddress?: string;
}

export interface RawMessage {
  readonly from: string;
  readonly to: readonly string[];
  /** Content with CRLF line endings, ending in CRLF. */
  readonly content: Buffer;
}

export interface Reply {
  readonly code: number;
  readonly text: string;
  /** For the reply to DATA's content: milliseconds from sending the final dot to the reply. */
  readonly afterDataMs?: number;
}

const REPLY_TIMEOUT_MS = 120_000;

export class RawSmtpSession {
  private socket: net.Socket;
  private buffer = "";
  private waiters: Array<{ resolve: (reply: Reply) => void; reject: (err: Error) => void }> = [];
  private closed = false;
  private closeError: Error | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  static async open(options: RawSessionOptions): Promise<RawSmtpSession> {
    const host = options.host ?? "127.0.0.1";
    const socket = options.implicitTls
      ? tls.connect({
          socket: net.connect({ host, port: options.port, localAddress: options.localAddress }),
          ca: options.ca,
          servername: "localhost",
        })
      : net.connect({ host, port: options.port, localAddress: options.localAddress });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once(options.implicitTls ? "secureConnect" : "connect", resolve);
      socket.once("error", reject);
    });
    const session = new RawSmtpSession(socket);
    await session.expect(220);
    const ehlo = `EHLO ${options.ehloName ?? "client.test"}`;
    await session.command(ehlo, 250);
    if (options.starttls) {
      await session.command("STARTTLS", 220);
      await session.upgrade(options.ca);
      await session.command(ehlo, 250);
    }
    if (options.apiKey !== undefined) {
      const token = Buffer.from(`\0apikey\0${options.apiKey}`).toString("base64");
      await session.command(`AUTH PLAIN ${token}`, 235);
    }
    return session;
  }

  /** Sends one message; resolves with the final reply to DATA (any code). */
  async send(message: RawMessage): Promise<Reply> {
    const mail = await this.command(`MAIL FROM:<${message.from}>`);
    if (mail.code !== 250) return mail;
    let accepted = 0;
    for (const rcpt of message.to) {
      const reply = await this.command(`RCPT TO:<${rcpt}>`);
      if (reply.code === 250) accepted++;
    }
    if (accepted === 0) {
      await this.command("RSET");
      return { code: 554, text: "no recipient accepted (client side)" };
    }
    const data = await this.command("DATA");
    if (data.code !== 354) return data;
    this.socket.write(Buffer.concat([dotStuff(message.content), Buffer.from(".\r\n")]));
    const t0 = performance.now();
    const reply = await this.next();
    return { ...reply, afterDataMs: performance.now() - t0 };
  }

  /** Writes bytes exactly as given (no dot-stuffing, no line-end repair) and reads one reply. */
  async writeRaw(bytes: Buffer): Promise<Reply> {
    this.socket.write(bytes);
    return this.next();
  }

  /**
   * DATA with content that is already dot-stuffed and ends in CRLF, written as given (no copy:
   * many sessions can share one big buffer); resolves with the reply to DATA or to the content.
   */
  async sendStuffed(stuffed: Buffer): Promise<Reply> {
    const data = await this.command("DATA");
    if (data.code !== 354) return data;
    this.socket.write(stuffed);
    this.socket.write(".\r\n");
    const t0 = performance.now();
    const reply = await this.next();
    return { ...reply, afterDataMs: performance.now() - t0 };
  }

  async command(line: string, expectCode?: number): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    return expectCode === undefined ? this.next() : this.expect(expectCode);
  }

  /** The next reply without sending anything (e.g. a server's unsolicited 421 at shutdown). */
  readReply(): Promise<Reply> {
    return this.next();
  }

  async quit(): Promise<void> {
    if (this.closed) return;
    try {
      await this.command("QUIT");
    } catch {
      // already gone
    }
    this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private async expect(code: number): Promise<Reply> {
    const reply = await this.next();
    if (reply.code !== code) throw new Error(`expected ${code}, got ${reply.code} ${reply.text}`);
    return reply;
  }

  private next(): Promise<Reply> {
    const parsed = this.takeReply();
    if (parsed) return Promise.resolve(parsed);
    if (this.closed) return Promise.reject(this.closeError ?? new Error("connection closed"));
    // A deadline on every reply, so a server that never answers fails the test instead of
    // hanging the suite (generous: it bounds a hang, it does not measure speed).
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (reply: Reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no reply within ${REPLY_TIMEOUT_MS} ms`));
      }, REPLY_TIMEOUT_MS);
      this.waiters.push(waiter);
    });
  }

  private takeReply(): Reply | undefined {
    // A reply ends with a line whose fourth character is a space (RFC 5321 §4.2.1).
    const lines = this.buffer.split("\r\n");
    for (let i = 0; i < lines.length - 1; i++) {
      const line = lines[i]!;
      if (line.length >= 4 && line[3] === " ") {
        const replyLines = lines.slice(0, i + 1);
        this.buffer = lines.slice(i + 1).join("\r\n");
        return { code: Number(line.slice(0, 3)), text: replyLines.map((l) => l.slice(4)).join("\n") };
      }
      if (line.length === 3) {
        this.buffer = lines.slice(i + 1).join("\r\n");
        return { code: Number(line), text: "" };
      }
    }
    return undefined;
  }

  private attach(socket: net.Socket): void {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      while (this.waiters.length > 0) {
        const reply = this.takeReply();
        if (!reply) break;
        this.waiters.shift()!.resolve(reply);
      }
    });
    socket.on("error", (err) => {
      this.closeError = err;
    });
    socket.on("close", () => {
      this.closed = true;
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w.reject(this.closeError ?? new Error("connection closed"));
    });
  }

  private async upgrade(ca: Buffer | undefined): Promise<void> {
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    plain.removeAllListeners("error");
    const secure = tls.connect({ socket: plain, ca, servername: "localhost" });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
    secure.setNoDelay(true);
    this.socket = secure;
    this.buffer = "";
    this.attach(secure);
  }
}

/** RFC 5321 §4.5.2: a line starting with "." gets one more. */
export function dotStuff(content: Buffer): Buffer {
  const text = content.toString("latin1");
  const stuffed = (text.startsWith(".") ? "." : "") + text.replace(/\r\n\./g, "\r\n..");
  return Buffer.from(stuffed, "latin1");
}

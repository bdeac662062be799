/**
 * A tiny raw SMTP client for dialogue tests (design convention 8): a test is a script of
 * client lines and expected server replies, run over a real TCP or TLS socket.
 *
 *   await runDialogue(port, [
 *     ["C", "EHLO x"], ["S", /^250-/],
 *     ["C", "MAIL FROM:<a@b.c>"], ["S", "530 5.7.0 Authentication required"],
 *   ]);
 *
 * A reply is matched whole: its lines joined with "\n", without CRLFs ("250-a\n250 b"). A string
 * must be equal; a RegExp is tested against that text (use the `m` flag to anchor on any line).
 * The greeting is read (and checked against options.greeting, default /^220 /) before the steps.
 * Invariants: replies are read strictly in order; a mismatch or a timeout throws an
 * AssertionError whose message carries the whole transcript.
 * Security: test-only code; it trusts exactly the CA given in `tls`.
 */

import { AssertionError } from "node:assert";
import { connect as netConnect, type Socket } from "node:net";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";
import { generate } from "selfsigned";

export interface Reply {
  code: number;
  lines: string[];
  /** Lines joined by "\n", without CRLFs. */
  text: string;
}

export type DialogueStep =
  /** Send a command line; CRLF is appended. */
  | readonly ["C", string]
  /** Expect the next reply: exact text or a RegExp tested against the text. */
  | readonly ["S", string | RegExp]
  /** Send bytes exactly as given (no CRLF added): smuggling payloads, split writes. */
  | readonly ["RAW", string | Buffer]
  /** Upgrade this connection to TLS (send it after the server's 220 reply to STARTTLS). */
  | readonly ["STARTTLS"]
  /** Expect the server to close the connection with no further reply. */
  | readonly ["CLOSED"]
  /** Pause, e.g. to let a write arrive as its own TCP segment. */
  | readonly ["WAIT", number];

export interface DialogueOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Bind the client to this local address (e.g. 127.0.0.2 to appear as another IP). */
  localAddress?: string;
  /** TLS from the first byte (port 465 style). */
  implicitTls?: boolean;
  /** Used for implicit TLS and STARTTLS; `servername` defaults to "localhost". */
  tls?: ConnectionOptions;
  /** Expected greeting; false to read nothing (then the first step should be an "S"). */
  greeting?: string | RegExp | false;
  /** Per reply, default 3000 ms. */
  timeoutMs?: number;
}

export class SmtpTestClient {
  readonly transcript: string[] = [];
  closed = false;
  private socket: Socket;
  private partial = "";
  private lines: string[] = [];
  private replies: Reply[] = [];
  private waiter: (() => void) | undefined;

  private constructor(
    socket: Socket,
    private readonly opts: DialogueOptions,
  ) {
    this.socket = socket;
    this.attach(socket);
  }

  static async connect(port: number, opts: DialogueOptions = {}): Promise<SmtpTestClient> {
    const raw = netConnect({ host: opts.host ?? "127.0.0.1", port, localAddress: opts.localAddress });
    raw.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      raw.once("connect", resolve);
      raw.once("error", reject);
    });
    if (!opts.implicitTls) return new SmtpTestClient(raw, opts);
    const socket = tlsConnect({ socket: raw, servername: "localhost", ...opts.tls });
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    return new SmtpTestClient(socket, opts);
  }

  /** Sends a command line (CRLF appended). */
  send(line: string): void {
    this.transcript.push(`C: ${line}`);
    this.socket.write(`${line}\r\n`);
  }

  /** Sends bytes exactly as given. */
  sendRaw(data: string | Buffer): void {
    this.transcript.push(`C(raw): ${JSON.stringify(data.toString())}`);
    this.socket.write(data);
  }

  /** The next complete reply; rejects on timeout or when the connection closes first. */
  async readReply(timeoutMs = this.opts.timeoutMs ?? 3000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length === 0) {
      if (this.closed) this.fail("connection closed while waiting for a reply");
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.wait(left))) this.fail(`no reply within ${timeoutMs} ms`);
    }
    return this.replies.shift()!;
  }

  /** Reads the next reply and checks it. */
  async expect(expected: string | RegExp): Promise<Reply> {
    const reply = await this.readReply();
    const ok = typeof expected === "string" ? reply.text === expected : expected.test(reply.text);
    if (!ok) this.fail(`expected ${String(expected)}, got ${JSON.stringify(reply.text)}`);
    return reply;
  }

  /** Waits until the server closes the connection; fails if a reply comes first. */
  async expectClosed(timeoutMs = this.opts.timeoutMs ?? 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (this.replies.length > 0) this.fail(`expected close, got ${JSON.stringify(this.replies[0]!.text)}`);
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.wait(left))) this.fail(`connection still open after ${timeoutMs} ms`);
    }
    if (this.replies.length > 0) this.fail(`expected close, got ${JSON.stringify(this.replies[0]!.text)}`);
    this.transcript.push("S: <closed>");
  }

  /** Upgrades to TLS on this connection (after the server's 220 to STARTTLS). */
  async startTls(tls: ConnectionOptions = this.opts.tls ?? {}): Promise<void> {
    if (this.replies.length > 0 || this.partial !== "") this.fail("unread server data before TLS upgrade");
    const raw = this.socket;
    raw.removeAllListeners("data");
    raw.removeAllListeners("close");
    const secure = tlsConnect({ socket: raw, servername: "localhost", ...tls });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
    this.transcript.push(`-- TLS ${secure.getProtocol()}`);
    this.socket = secure;
    this.attach(secure);
  }

  /** Closes from the client side and waits for the socket to go. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.socket.destroy();
    await new Promise((r) => setImmediate(r));
  }

  fail(message: string): never {
    throw new AssertionError({ message: `${message}\n--- transcript ---\n${this.transcript.join("\n")}` });
  }

  private attach(socket: Socket): void {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    socket.on("error", () => {}); // a reset shows up as "closed"
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
  }

  private onData(chunk: string): void {
    const parts = (this.partial + chunk).split("\r\n");
    this.partial = parts.pop()!;
    for (const line of parts) {
      this.lines.push(line);
      // The last line of a reply has a space (or nothing) after the code (RFC 5321 §4.2.1).
      if (/^\d{3}(?: |$)/.test(line)) {
        const reply = { code: Number(line.slice(0, 3)), lines: this.lines, text: this.lines.join("\n") };
        this.lines = [];
        this.replies.push(reply);
        this.transcript.push(`S: ${reply.text.replaceAll("\n", "\n   ")}`);
      }
    }
    this.wake();
  }

  private wait(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(false);
      }, ms);
      this.waiter = () => {
        clearTimeout(timer);
        this.waiter = undefined;
        resolve(true);
      };
    });
  }

  private wake(): void {
    this.waiter?.();
  }
}

/** Runs the steps on a new connection, then closes it; returns the client (transcript, state). */
export async function runDialogue(
  port: number,
  steps: readonly DialogueStep[],
  opts: DialogueOptions = {},
): Promise<SmtpTestClient> {
  const client = await SmtpTestClient.connect(port, opts);
  try {
    const greeting = opts.greeting ?? /^220 /;
    if (greeting !== false) await client.expect(greeting);
    for (const step of steps) {
      switch (step[0]) {
        case "C":
          client.send(step[1]);
          break;
        case "S":
          await client.expect(step[1]);
          break;
        case "RAW":
          client.sendRaw(step[1]);
          break;
        case "STARTTLS":
          await client.startTls();
          break;
        case "CLOSED":
          await client.expectClosed();
          break;
        case "WAIT":
          await new Promise((r) => setTimeout(r, step[1]));
          break;
      }
    }
  } finally {
    await client.close();
  }
  return client;
}

/** A self-signed EC certificate for localhost and 127.0.0.1; trust it with `tls: { ca: cert }`. */
export async function generateTestCertificate(): Promise<{ key: string; cert: string }> {
  const pems = await generate([{ name: "commonName", value: "localhost" }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          { type: 2, value: "localhost" },
          { type: 7, ip: "127.0.0.1" },
        ],
      },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}

/**
 * One inbound SMTP connection: input buffering, the in-order command loop, reply batching,
 * TLS (implicit and STARTTLS), timeouts and closing. Command semantics live in commands.ts.
 *
 * Invariants:
 *  - Commands are processed strictly one at a time and in order; input that arrives while a
 *    hook is pending is queued (RFC 2920 §3.1), and the socket is paused past READ_HIGH_WATER.
 *  - Replies are collected and written once per processed input chunk (or before a close or a
 *    TLS upgrade), so a pipelined group costs one write system call.
 *  - After STARTTLS every byte received before the handshake is discarded (CVE-2011-0411).
 *  - Once `ended`, nothing more is read or written except the socket teardown.
 * Security: every byte here comes from an untrusted peer; line lengths are capped (512 octets,
 * 12,288 for AUTH) before any string is built, and memory held is bounded.
 */

import type { Socket } from "node:net";
import { type SecureContext, TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { BudgetHolder, BufferBudget } from "./buffer-budget.js";
import { dispatch, finishData } from "./commands.js";
import { DataReader } from "./data-reader.js";
import { BAD_UTF8, InputQueue, TOO_LONG } from "./input-queue.js";
import { noteBytesRead } from "./read-chunks.js";
import { REPLY, renderHookReply } from "./replies.js";
import type { Envelope, ListenerSpec, SessionHooks, SessionInfo, SmtpLimits } from "./types.js";

/** What a session needs from its server; the server implements it. */
export interface SessionHost<User> {
  readonly hostname: string;
  readonly limits: SmtpLimits;
  readonly hooks: SessionHooks<User>;
  readonly logger: Logger;
  readonly secureContext: SecureContext;
  readonly allowInsecureAuth: boolean;
  /** False on a listener that offers no AUTH at all (an MX, such as the bounce listener). */
  readonly authEnabled: boolean;
  readonly greeting: string;
  readonly shuttingDown: boolean;
  /** A TLS handshake not finished within this long ends the connection. */
  readonly handshakeTimeoutMs: number;
  /** Bytes of DATA held across all sessions (smtp.limits.maxBufferedBytes). */
  readonly buffers: BufferBudget;
  ehlo(startTls: boolean, auth: boolean): string;
  sessionClosed(session: Session<User>): void;
}

export type Mode = "handshake" | "connect" | "command" | "auth" | "data" | "tls" | "ended";

export type AuthExchange = { method: "PLAIN" } | { method: "LOGIN"; username?: string };

const COMMAND_LINE_MAX = 512; // RFC 5321 §4.5.3.1.4, including CRLF
const AUTH_LINE_MAX = 12288; // RFC 4954 §4
const READ_HIGH_WATER = 64 * 1024;
const READ_LOW_WATER = 16 * 1024;
/** Replies queued for a client that does not read them; past this its input is not read. */
const WRITE_HIGH_WATER = 64 * 1024;
/** How long a closed-by-us socket may wait for the peer's FIN before it is destroyed. */
const LINGER_MS = 2000;

export class Session<User> {
  readonly info: SessionInfo<User>;
  mode: Mode = "connect";
  envelope: Envelope | null = null;
  /** RCPT commands seen in this transaction, accepted or not (for 554 No valid recipients). */
  rcptAttempts = 0;
  /** From 354 until the DATA reply is queued: shutdown lets such a session finish. */
  inData = false;
  auth: AuthExchange | null = null;
  linesSeen = 0;
  ended = false;
  reason = "";
  private socket: Socket;
  private trustedUser: User | undefined;
  private data: DataReader | null = null;
  private invalid = 0;
  private busy = false;
  private closed = false;
  private eof = false;
  private paused = false;
  /** Waiting for the client to read its replies: not busy for the idle timeout. */
  private waitingForReader = false;
  /** Waiting for bytes of the memory budget (the socket is paused meanwhile). */
  private waitingForBudget = false;
  /** A finished transaction waiting for the budget to hold its contiguous copy (see finish()). */
  private budgetWait: (() => void) | null = null;
  private finishing: DataReader | null = null;
  private readonly budget: BudgetHolder;
  private handshakeStartedAt = 0;
  private lastInput: number;
  private endedAt = 0;
  private readonly input = new InputQueue();
  private out: string[] = [];

  constructor(
    readonly host: SessionHost<User>,
    readonly listener: ListenerSpec,
    socket: Socket,
    id: string,
    remoteAddress: string,
    remotePort: number,
  ) {
    this.socket = socket;
    this.budget = {
      held: 0,
      wake: () => {
        if (!this.waitingForBudget) return;
        // Deferred: a wake comes from inside another session's take() or release().
        setImmediate(() => {
          if (!this.waitingForBudget || this.ended) return;
          this.waitingForBudget = false;
          this.lastInput = Date.now();
          const waiter = this.budgetWait;
          this.budgetWait = null;
          if (waiter) waiter();
          else this.run();
        });
      },
      evict: () => {
        (this.data ?? this.finishing)?.drop();
        this.budget.wake();
      },
    };
    const now = Date.now();
    this.lastInput = now;
    this.info = {
      id,
      listener: listener.name,
      remoteAddress,
      remotePort,
      localAddress: stripMapped(socket.localAddress ?? ""),
      localPort: socket.localPort ?? 0,
      secure: false,
      esmtp: false,
      messageCount: 0,
      openedAt: now,
    };
    socket.on("error", this.onSocketError);
    this.attach(socket);
  }

  start(): void {
    if (this.listener.mode === "implicit") {
      this.mode = "handshake";
      this.wrapTls(() => this.begin().catch(this.fail));
    } else {
      this.socket.resume(); // a PROXY header reader leaves the socket paused
      this.begin().catch(this.fail);
    }
  }

  // ---- replies ---------------------------------------------------------------------------

  /** Queues a reply that neither counts as an error nor resets the error counter. */
  send(reply: string): undefined {
    if (!this.ended) this.out.push(reply);
  }

  /** Queues the reply to a valid command: the invalid-command streak ends. */
  ok(reply: string): undefined {
    this.invalid = 0;
    this.send(reply);
  }

  /** Queues the reply to an invalid, unknown or out-of-sequence command; closes at the limit. */
  reject(reply: string): undefined {
    this.send(reply);
    const max = this.host.limits.maxInvalidCommands;
    if (max > 0 && ++this.invalid >= max) this.close(REPLY.tooManyErrors, "too-many-errors");
  }

  flush(): void {
    if (this.out.length === 0 || this.ended) return;
    this.socket.write(this.out.length === 1 ? this.out[0]! : this.out.join(""));
    this.out.length = 0;
  }

  /**
   * Sends a last reply (if any) and half-closes. Input is still read but discarded, so the
   * peer's FIN is seen; the session ends on the socket's 'close' (or after LINGER_MS).
   */
  close(reply: string | null, reason: string): undefined {
    if (this.ended) return;
    this.endWith(reply, reason);
    // Keep reading (and discarding) so the peer's FIN is seen and the socket can finish.
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    this.socket.end();
  }

  /**
   * The reply to QUIT, then a full close once it is written, as Postfix's smtpd does: RFC 5321
   * §4.1.1.10 lets the server close once it has replied. Nothing more is read. Many clients
   * close right after sending QUIT without waiting for the 221 (Postfix's own smtp client by
   * default, smtp_skip_quit_response = yes; smtp-source), so the 221 meets a closed socket and
   * the client's kernel answers it with a reset: read on, that reset came back as an ECONNRESET
   * error (an Error with its stack, an 'error' event, the socket torn down on the error path)
   * for every such connection.
   */
  quit(reply: string): undefined {
    if (this.ended) return;
    this.endWith(reply, "quit");
    const socket = this.socket;
    socket.pause();
    socket.end(() => socket.destroy());
  }

  private endWith(reply: string | null, reason: string): void {
    if (reply !== null) this.out.push(reply);
    this.flush();
    this.ended = true;
    this.mode = "ended";
    if (this.reason === "") this.reason = reason;
    this.endedAt = Date.now();
    this.input.clear();
    this.auth = null;
  }

  destroy(reason: string): void {
    if (this.reason === "") this.reason = reason;
    this.ended = true;
    this.mode = "ended";
    this.socket.destroy();
  }

  hookFailed(hook: string, err: unknown): void {
    this.host.logger.error({ err, session: this.info.id, hook }, "smtp hook failed");
  }

  // ---- state changes used by commands.ts ----------------------------------------------------

  startData(): undefined {
    // The memory budget is used up: no new transaction until some finish (issue 13).
    if (!this.host.buffers.admitsNewData()) return this.send(REPLY.insufficientStorage);
    this.send(REPLY.startData);
    this.inData = true;
    this.mode = "data";
    const { maxMessageSize, maxLineLength, nulBytes } = this.host.limits;
    this.data = new DataReader(maxMessageSize, maxLineLength, nulBytes);
  }

  /** Queues the final reply of a DATA transaction; a shutdown waiting on it proceeds. */
  dataDone(reply: string, accepted: boolean): undefined {
    this.inData = false;
    this.host.buffers.release(this.budget);
    if (accepted) this.info.messageCount++;
    this.ok(reply);
    if (this.host.shuttingDown) this.close(REPLY.shuttingDown, "shutdown");
  }

  startTls(): undefined {
    this.send(REPLY.startTls);
    this.flush();
    // CVE-2011-0411: anything pipelined after STARTTLS was sent in plaintext; drop it.
    this.input.clear();
    this.mode = "tls";
    this.wrapTls(() => {
      // RFC 3207 §4.2: forget everything learnt from the client, except a trusted-network user.
      const info = this.info;
      info.heloName = undefined;
      info.esmtp = false;
      info.user = this.trustedUser;
      info.authMethod = undefined;
      this.envelope = null;
      this.rcptAttempts = 0;
      this.mode = "command";
      this.run();
    });
  }

  setTrustedUser(user: User): void {
    this.trustedUser = user;
    this.info.user = user;
  }

  // ---- timeouts and shutdown (called by the server) ---------------------------------------

  tick(now: number): void {
    if (this.closed) return;
    if (this.ended) {
      if (now - this.endedAt >= LINGER_MS) this.socket.destroy();
      return;
    }
    const { idleTimeoutMs, sessionTimeoutMs } = this.host.limits;
    const handshakeMs = this.host.handshakeTimeoutMs;
    const inHandshake = this.mode === "handshake" || this.mode === "tls";
    if (inHandshake && handshakeMs > 0 && now - this.handshakeStartedAt >= handshakeMs) {
      this.destroy("tls-handshake-timeout");
    } else if (sessionTimeoutMs > 0 && now - this.info.openedAt >= sessionTimeoutMs) {
      this.timeout(REPLY.sessionTimeout, "session-timeout");
    } else if (
      idleTimeoutMs > 0 &&
      // Waiting for the client to read: idle. Waiting for the memory budget: our doing, not idle.
      (!this.busy || this.waitingForReader) &&
      !this.waitingForBudget &&
      now - this.lastInput >= idleTimeoutMs
    ) {
      this.timeout(REPLY.idleTimeout, "idle-timeout");
    }
  }

  /** Server shutdown: close now unless a DATA transaction is under way (dataDone closes it). */
  shutdown(): void {
    if (this.ended || this.inData) return;
    if (this.mode === "handshake" || this.mode === "tls") this.destroy("shutdown");
    else this.close(REPLY.shuttingDown, "shutdown");
  }

  /** Grace period over: a last 421 where possible, then destroy. */
  forceClose(): void {
    if (this.closed) return;
    if (!this.ended && this.mode !== "handshake" && this.mode !== "tls") {
      this.out.push(REPLY.shuttingDown);
      this.flush();
    }
    this.destroy("shutdown");
  }

  private timeout(reply: string, reason: string): void {
    // Mid-handshake there is no channel a reply could be sent on.
    if (this.mode === "handshake" || this.mode === "tls") this.destroy(reason);
    else this.close(reply, reason);
  }

  // ---- connection start ------------------------------------------------------------------

  private async begin(): Promise<void> {
    if (this.host.shuttingDown) return this.close(REPLY.shuttingDown, "shutdown");
    this.mode = "connect";
    this.busy = true; // input that arrives now waits for the greeting
    let verdict: Awaited<ReturnType<SessionHooks<User>["onConnect"]>>;
    try {
      verdict = await this.host.hooks.onConnect(this.info);
    } catch (err) {
      this.hookFailed("onConnect", err);
      this.busy = false;
      return this.close(REPLY.localErrorClosing, "hook-error");
    }
    this.busy = false;
    if (this.ended) return;
    if (!verdict.ok) return this.close(renderHookReply(verdict.reply), "rejected");
    if (verdict.user !== undefined) this.setTrustedUser(verdict.user);
    this.out.push(this.host.greeting);
    this.mode = "command";
    this.lastInput = Date.now();
    this.run();
  }

  private wrapTls(onSecure: () => void): void {
    const raw = this.socket;
    raw.removeListener("data", this.onSocketData);
    raw.removeListener("end", this.onSocketEnd);
    raw.removeListener("close", this.onSocketClose);
    if (this.paused) {
      this.paused = false;
      raw.resume(); // buffered plaintext, if any, is emitted to no listener: discarded
    }
    this.handshakeStartedAt = Date.now();
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.host.secureContext });
    this.socket = secure;
    secure.on("error", this.onSocketError);
    this.attach(secure);
    secure.once("secure", () => {
      if (this.ended) return;
      this.info.secure = true;
      this.info.tlsProtocol = secure.getProtocol() ?? undefined;
      this.info.tlsCipher = secure.getCipher()?.name;
      this.lastInput = Date.now();
      onSecure();
    });
  }

  private attach(socket: Socket): void {
    socket.on("data", this.onSocketData);
    socket.on("end", this.onSocketEnd);
    socket.on("close", this.onSocketClose);
  }

  // ---- socket events -------------------------------------------------------------------------

  private readonly onSocketData = (chunk: Buffer): void => {
    if (this.ended) return;
    this.lastInput = Date.now();
    this.input.push(chunk);
    noteBytesRead(chunk.length);
    if (!this.busy) this.run();
    if (!this.paused && this.input.size > READ_HIGH_WATER && !this.ended) {
      this.paused = true;
      this.socket.pause();
    }
  };

  private readonly onSocketEnd = (): void => {
    this.eof = true;
    if (!this.busy && !this.ended) this.close(null, this.inData ? "client-closed-in-data" : "client-closed");
  };

  private readonly onSocketError = (err: NodeJS.ErrnoException): void => {
    const tls = this.mode === "handshake" || this.mode === "tls";
    if (this.reason === "") this.reason = tls ? "tls-error" : `socket-error:${err.code ?? "unknown"}`;
    this.host.logger.debug({ session: this.info.id, err: err.message, code: err.code }, "smtp socket error");
  };

  private readonly onSocketClose = (): void => {
    if (this.closed) return;
    this.closed = true;
    this.ended = true;
    if (this.reason === "") {
      this.reason =
        this.mode === "handshake" || this.mode === "tls"
          ? "tls-error"
          : this.inData
            ? "client-closed-in-data"
            : "client-closed";
    }
    this.mode = "ended";
    this.waitingForBudget = false;
    this.host.buffers.release(this.budget);
    // What a transaction in DATA held goes back to the block pool (data-reader.ts).
    this.data?.dispose();
    this.finishing?.dispose();
    const waiter = this.budgetWait;
    this.budgetWait = null;
    waiter?.(); // a finish waiting for the budget ends (the session has)
    this.host.sessionClosed(this);
  };

  // ---- the command loop ------------------------------------------------------------------

  private run(): void {
    if (this.busy || this.ended) return;
    this.busy = true;
    this.loop().catch(this.fail);
  }

  /** A bug or a malformed hook result, not the client's doing: 421 4.3.0 and close, never a crash. */
  private readonly fail = (err: unknown): void => {
    this.host.logger.error({ err, session: this.info.id }, "smtp session failed");
    this.busy = false;
    this.close(REPLY.localErrorClosing, "internal-error");
  };

  private async loop(): Promise<void> {
    while (!this.ended) {
      const r = this.step();
      if (r === false) break;
      if (r !== true) await r;
      if (this.out.length >= 256) this.flush();
      // A client that pipelines without reading replies: stop reading until it catches up; its
      // idle timeout runs meanwhile (no input is read, so none arrives).
      if (this.socket.writableLength > WRITE_HIGH_WATER) {
        if (!this.paused) {
          this.paused = true;
          this.socket.pause();
        }
        this.waitingForReader = true;
        await drained(this.socket);
        this.waitingForReader = false;
      }
    }
    this.busy = false;
    if (this.ended) return;
    this.flush();
    this.lastInput = Date.now();
    if (this.eof) return this.close(null, this.inData ? "client-closed-in-data" : "client-closed");
    if (this.paused && !this.waitingForBudget && this.input.size <= READ_LOW_WATER) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Handles one unit of input: true (progress), false (need more input) or a pending hook. */
  private step(): boolean | Promise<void> {
    if (this.mode === "data") return this.stepData();
    if (this.mode !== "command" && this.mode !== "auth") return false;
    const line = this.input.nextLine(this.lineLimit);
    if (line === null) return false;
    if (line === TOO_LONG) {
      this.auth = null;
      if (this.mode === "auth") this.mode = "command";
      this.reject(REPLY.lineTooLong);
      return true;
    }
    if (line === BAD_UTF8) {
      this.reject(REPLY.badUtf8);
      return true;
    }
    return dispatch(this, line) ?? true;
  }

  private stepData(): boolean | Promise<void> {
    const head = this.input.head();
    if (head === undefined) return false;
    const reader = this.data!;
    // Kept content takes its bytes from the memory budget until the DATA reply. A transaction
    // given up by the budget (overBudget) takes each chunk only while it is read and dropped:
    // every chunk read is memory until the garbage collector frees it, so such a session reads
    // only when the budget has room, instead of at full speed beside the ones that hold bytes.
    const metered = !reader.discarding || reader.overBudget;
    if (metered) {
      const n = head.buf.length - head.pos;
      const wasOver = reader.overBudget;
      // Set first: a wake() may come from inside take() (after an eviction elsewhere).
      this.waitingForBudget = true;
      let taken = this.host.buffers.take(this.budget, n);
      // Given up inside take(): wait again, now as a session that only drops what it reads.
      if (!taken && !wasOver && reader.overBudget) taken = this.host.buffers.take(this.budget, n);
      if (taken) this.waitingForBudget = false;
      else {
        // No budget left: read no more until another transaction releases some (or this one
        // is evicted); the idle timeout runs meanwhile.
        if (!this.paused) {
          this.paused = true;
          this.socket.pause();
        }
        return false;
      }
    }
    const end = reader.feed(head.buf, head.pos);
    if (reader.overBudget) this.host.buffers.release(this.budget);
    if (end === -1) {
      this.input.consume(head.buf.length - head.pos);
      return true;
    }
    this.input.consume(end - head.pos);
    this.data = null;
    this.mode = "command";
    if (reader.discarding) return finishData(this, reader) ?? true;
    return this.finish(reader);
  }

  /**
   * Finishing a small message makes one contiguous copy of the blocks received (a large one was
   * copied into one buffer as it arrived: DataReader.content; trace fields and signatures go
   * into room reserved before it, message/headroom.ts, and the content moves to the commit thread
   * without another copy, freed there once committed). That copy and the store's own while it
   * writes are taken from the budget like the received bytes were, waiting for room if need be,
   * so messages finishing at once cannot together overshoot it; a finish that the budget gives
   * up answers 452 4.3.1.
   */
  private finish(reader: DataReader): boolean | Promise<void> {
    // The joined copy, and the one the store makes while it writes it (better-sqlite3 binds a
    // BLOB with SQLITE_TRANSIENT); never more than the budget leaves this holder, so a message
    // that fitted while it was received is not refused for the finish alone.
    const budget = this.host.buffers;
    const copies = (reader.contentCopies ? 2 : 1) * reader.size;
    const n = Math.min(copies, Math.max(0, budget.limit - this.budget.held));
    this.waitingForBudget = true;
    // Set before the take: the take may give this very transaction up (evict() drops it).
    this.finishing = reader;
    if (budget.take(this.budget, n) || reader.overBudget) {
      this.finishing = null;
      this.waitingForBudget = false;
      return finishData(this, reader) ?? true;
    }
    return (async () => {
      while (!this.ended && !reader.overBudget) {
        await new Promise<void>((resolve) => {
          this.budgetWait = resolve;
        });
        if (this.ended || reader.overBudget) break;
        this.waitingForBudget = true;
        if (this.host.buffers.take(this.budget, n)) {
          this.waitingForBudget = false;
          break;
        }
      }
      this.finishing = null;
      this.waitingForBudget = false;
      if (this.ended) return;
      await finishData(this, reader);
    })();
  }

  private readonly lineLimit = (buf: Buffer, pos: number): number => {
    if (this.mode === "auth") return AUTH_LINE_MAX;
    if (
      buf.length - pos >= 5 &&
      (buf[pos]! | 0x20) === 0x61 &&
      (buf[pos + 1]! | 0x20) === 0x75 &&
      (buf[pos + 2]! | 0x20) === 0x74 &&
      (buf[pos + 3]! | 0x20) === 0x68 &&
      buf[pos + 4] === 0x20
    ) {
      return AUTH_LINE_MAX;
    }
    return COMMAND_LINE_MAX;
  };
}

/** "::ffff:1.2.3.4" → "1.2.3.4"; other addresses unchanged. */
export function stripMapped(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    socket.on("drain", done);
    socket.on("close", done);
  });
}

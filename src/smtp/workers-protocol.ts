/**
 * The messages between the SMTP server's main process and its session processes (smtp.workers,
 * workers-pool.ts and workers-child.ts), over Node's IPC channel with advanced serialization
 * (Buffers cross as bytes, `undefined` survives).
 *
 * The main process accepts, applies the caps, reads a PROXY header, and sends the socket with a
 * `session` message; the child runs the protocol and asks the main process for every hook
 * verdict (`hook` → `verdict`), so the hooks — AUTH lockout, key lookups, availability, metrics,
 * the commit — run in one place, exactly as with one process.
 */
import type { Envelope, ListenerSpec, SessionInfo, SmtpLimits } from "./types.js";

/** What a child needs to run sessions: sent once, first. */
export interface ChildInit {
  readonly t: "init";
  readonly hostname: string;
  readonly listeners: readonly ListenerSpec[];
  readonly tls: { key: string | Buffer; cert: string | Buffer; minVersion: "TLSv1.2" | "TLSv1.3" };
  readonly allowInsecureAuth: boolean;
  readonly auth: boolean;
  /** maxBufferedBytes here is this child's share of the server's budget. */
  readonly limits: SmtpLimits;
  readonly logLevel: string;
  /** Whether the main process has an onRcptTo hook; without one the child accepts RCPTs itself. */
  readonly rcptHook: boolean;
}

/** A connection admitted by the main process; the socket travels as the message's handle. */
export interface ChildSession {
  readonly t: "session";
  readonly sid: string;
  readonly listener: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Bytes read past a PROXY header, to be read before the socket's own. */
  readonly leftover?: Uint8Array;
}

export type HookName = "onConnect" | "onAuth" | "onMailFrom" | "onRcptTo" | "onData";

/** The parts of SessionInfo a session changes (the rest is fixed at accept, in the main process). */
export type InfoState = Pick<
  SessionInfo<unknown>,
  "secure" | "tlsProtocol" | "tlsCipher" | "heloName" | "esmtp" | "user" | "authMethod" | "messageCount"
>;

export interface ChildHook {
  readonly t: "hook";
  readonly rid: number;
  readonly sid: string;
  readonly hook: HookName;
  readonly info: InfoState;
  /** A new number for each transaction's envelope object (the hooks key state on its identity). */
  readonly eid?: number;
  readonly envelope?: Envelope;
  /** onAuth: credentials; onRcptTo: the recipient; onData: the content. */
  readonly arg?: unknown;
}

export interface ChildClosed {
  readonly t: "closed";
  readonly sid: string;
  readonly reason: string;
  readonly info: InfoState;
}

/** A log line of the child, written by the main process's logger. */
export interface ChildLog {
  readonly t: "log";
  readonly line: string;
}

export type FromChild = { readonly t: "ready" } | ChildHook | ChildClosed | ChildLog | Batch<FromChild>;

/** Messages sent in one event-loop turn, in order, as one IPC write (see CorkedChannel). */
export interface Batch<M> {
  readonly t: "batch";
  readonly msgs: readonly M[];
}

export type ToChild =
  | ChildInit
  | ChildSession
  | { readonly t: "verdict"; readonly rid: number; readonly ok: true; readonly value: unknown }
  | { readonly t: "verdict"; readonly rid: number; readonly ok: false; readonly error: string }
  | { readonly t: "shutdown"; readonly graceMs: number }
  | Batch<ToChild>;

/**
 * Queues the messages of one event-loop turn and sends them as one (a Batch when more than one).
 * Every IPC message is a serialisation and a write(2) of its own; with 20 pipelined sessions a turn
 * carries several hooks and verdicts, and these writes were the main process's largest self time
 * (writeBuffer 12.6% of its profile under bench:accept (b) with 2 workers). setImmediate runs after
 * the poll phase, so everything the turn's I/O callbacks produced leaves together.
 */
export class CorkedChannel<M> {
  private queue: M[] = [];
  private scheduled = false;

  constructor(private readonly write: (m: M | Batch<M>) => void) {}

  send(m: M): void {
    this.queue.push(m);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.scheduled = false;
    const msgs = this.queue;
    if (msgs.length === 0) return;
    this.queue = [];
    this.write(msgs.length === 1 ? msgs[0]! : { t: "batch", msgs });
  }
}

export function infoState(info: SessionInfo<unknown>): InfoState {
  return {
    secure: info.secure,
    tlsProtocol: info.tlsProtocol,
    tlsCipher: info.tlsCipher,
    heloName: info.heloName,
    esmtp: info.esmtp,
    user: info.user,
    authMethod: info.authMethod,
    messageCount: info.messageCount,
  };
}

export function applyInfoState(info: SessionInfo<unknown>, s: InfoState): void {
  info.secure = s.secure;
  info.tlsProtocol = s.tlsProtocol;
  info.tlsCipher = s.tlsCipher;
  info.heloName = s.heloName;
  info.esmtp = s.esmtp;
  info.user = s.user;
  info.authMethod = s.authMethod;
  info.messageCount = s.messageCount;
}

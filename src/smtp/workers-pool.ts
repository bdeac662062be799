/**
 * The session processes of smtp.workers, seen from the main process: forks them, hands each
 * admitted socket to the least loaded one, answers their hook requests with the server's own
 * hooks, and starts another when one dies.
 *
 * Why child processes with `send(msg, socket)` and not `cluster` (whose round-robin or shared
 * accept hands connections out in the children): admission stays here, at TCP accept and before
 * any TLS byte, so the per-IP and total caps are exact and counted in one place; and the hooks
 * (AUTH lockout, API-key lookups and revocation, availability, metrics, the group commit) keep
 * one instance, so they hold across workers exactly as with one process.
 *
 * Invariants: a socket is counted against the caps from accept until its child reports it
 * closed (or the child is gone); a child that dies takes its sockets with it (they are only
 * open there) and none of its sessions had a 250 that the commit here did not back.
 */
import { type ChildProcess, fork } from "node:child_process";
import type { Socket } from "node:net";
import type { Logger } from "pino";
import type { Envelope, SessionHooks, SessionInfo } from "./types.js";
import {
  applyInfoState,
  type ChildClosed,
  type ChildHook,
  type ChildInit,
  CorkedChannel,
  type FromChild,
  type ToChild,
} from "./workers-protocol.js";

const CHILD_ENTRY = new URL("./workers-child.js", import.meta.url);
/** A child that does not exit this long after its channel closed is killed. */
const EXIT_WAIT_MS = 5000;

export interface RemoteSession<User> {
  readonly info: SessionInfo<User>;
  reason: string;
  child: Child | undefined;
  /** The envelope of the transaction under way, as the hooks here see it (their state is keyed on it). */
  envelope: { eid: number; value: Envelope } | undefined;
}

interface Child {
  readonly index: number;
  readonly proc: ChildProcess;
  readonly sessions: Set<string>;
  ready: boolean;
  /** Hook verdicts, one IPC write per event-loop turn. */
  readonly verdicts: CorkedChannel<ToChild>;
}

export interface PoolEvents<User> {
  /** A remote session ended (reported by its child, or its child died). */
  closed(remote: RemoteSession<User>): void;
}

export class WorkerPool<User> {
  private readonly children: (Child | undefined)[];
  private readonly remotes = new Map<string, RemoteSession<User>>();
  private stopping = false;
  /** Children started after a death, for the log and the tests. */
  restarts = 0;

  constructor(
    count: number,
    private readonly init: ChildInit,
    private readonly hooks: SessionHooks<User>,
    private readonly logger: Logger,
    private readonly events: PoolEvents<User>,
  ) {
    this.children = new Array<Child | undefined>(count).fill(undefined);
  }

  /** Forks every child and waits until each has its TLS context and is ready for sockets. */
  async start(): Promise<void> {
    await Promise.all(this.children.map((_, i) => this.spawn(i)));
  }

  get size(): number {
    return this.remotes.size;
  }

  /** Process ids of the children, in order (for the tests and the log). */
  get pids(): number[] {
    return this.children.flatMap((c) => (c?.proc.pid === undefined ? [] : [c.proc.pid]));
  }

  /** Hands an admitted socket to the least loaded child; `remote` is already counted. */
  handoff(socket: Socket, remote: RemoteSession<User>, leftover: Buffer | undefined): void {
    let best: Child | undefined;
    for (const c of this.children) {
      if (c?.ready && c.proc.connected && (best === undefined || c.sessions.size < best.sessions.size))
        best = c;
    }
    this.remotes.set(remote.info.id, remote);
    if (best === undefined) {
      socket.destroy();
      this.end(remote, "worker-unavailable");
      return;
    }
    const child = best;
    remote.child = child;
    child.sessions.add(remote.info.id);
    const msg: ToChild = {
      t: "session",
      sid: remote.info.id,
      listener: remote.info.listener,
      remoteAddress: remote.info.remoteAddress,
      remotePort: remote.info.remotePort,
      ...(leftover === undefined || leftover.length === 0 ? {} : { leftover }),
    };
    child.proc.send(msg, socket, { keepOpen: false }, (err) => {
      if (err === null || err === undefined) return;
      socket.destroy();
      this.end(remote, "worker-unavailable");
    });
  }

  /** Server shutdown: each child closes its sessions as SmtpServer.close does (graceMs for DATA). */
  shutdown(graceMs: number): void {
    this.stopping = true;
    for (const c of this.children)
      if (c?.proc.connected) c.proc.send({ t: "shutdown", graceMs } satisfies ToChild);
  }

  /** After the sessions have ended: close the channels and wait for the children to exit. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.children.map(async (c) => {
        if (c === undefined || c.proc.exitCode !== null || c.proc.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => c.proc.once("exit", () => resolve()));
        if (c.proc.connected) c.proc.disconnect();
        const timer = setTimeout(() => c.proc.kill("SIGKILL"), EXIT_WAIT_MS);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  private spawn(index: number): Promise<void> {
    const proc = fork(CHILD_ENTRY, [], {
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // The child's own flags (e.g. --cpu-prof) are not the worker's business.
      execArgv: [],
    });
    const verdicts = new CorkedChannel<ToChild>((m) => {
      if (proc.connected) proc.send(m);
    });
    const child: Child = { index, proc, sessions: new Set(), ready: false, verdicts };
    this.children[index] = child;
    return new Promise<void>((resolve, reject) => {
      const onEarlyExit = (code: number | null, signal: string | null): void =>
        reject(new Error(`SMTP worker ${index} exited (${code ?? signal}) before it was ready`));
      proc.once("exit", onEarlyExit);
      proc.on("message", (msg: FromChild) => {
        if (msg.t === "ready") {
          child.ready = true;
          proc.off("exit", onEarlyExit);
          proc.once("exit", (code, signal) => this.died(child, code, signal));
          resolve();
          return;
        }
        this.fromChild(child, msg);
      });
      proc.on("error", (err) => this.logger.error({ err, worker: index }, "smtp worker error"));
      proc.send(this.init satisfies ToChild);
    });
  }

  private died(child: Child, code: number | null, signal: string | null): void {
    child.ready = false;
    for (const sid of child.sessions) {
      const remote = this.remotes.get(sid);
      if (remote !== undefined) this.end(remote, "worker-exited");
    }
    child.sessions.clear();
    if (this.stopping) return;
    this.logger.error({ worker: child.index, code, signal }, "smtp worker exited; starting another");
    this.restarts++;
    this.spawn(child.index).catch((err: unknown) =>
      this.logger.error({ err, worker: child.index }, "could not start an smtp worker"),
    );
  }

  private end(remote: RemoteSession<User>, reason: string): void {
    if (!this.remotes.delete(remote.info.id)) return;
    remote.child?.sessions.delete(remote.info.id);
    if (remote.reason === "") remote.reason = reason;
    this.events.closed(remote);
  }

  private fromChild(child: Child, msg: FromChild): void {
    switch (msg.t) {
      case "hook":
        this.hook(child, msg);
        return;
      case "closed":
        this.closed(msg);
        return;
      case "log":
        this.log(child, msg.line);
        return;
      case "batch":
        for (const m of msg.msgs) this.fromChild(child, m);
        return;
    }
  }

  private closed(msg: ChildClosed): void {
    const remote = this.remotes.get(msg.sid);
    if (remote === undefined) return;
    applyInfoState(remote.info as SessionInfo<unknown>, msg.info);
    remote.reason = msg.reason;
    this.end(remote, msg.reason);
  }

  private hook(child: Child, msg: ChildHook): void {
    const reply = (m: ToChild): void => child.verdicts.send(m);
    const remote = this.remotes.get(msg.sid);
    if (remote === undefined) {
      reply({ t: "verdict", rid: msg.rid, ok: false, error: "session not known to the main process" });
      return;
    }
    applyInfoState(remote.info as SessionInfo<unknown>, msg.info);
    let envelope: Envelope | undefined;
    if (msg.envelope !== undefined && msg.eid !== undefined) {
      if (remote.envelope?.eid !== msg.eid) remote.envelope = { eid: msg.eid, value: { ...msg.envelope } };
      else Object.assign(remote.envelope.value, msg.envelope);
      envelope = remote.envelope.value;
    }
    const info = remote.info;
    const h = this.hooks;
    let result: Promise<unknown>;
    try {
      switch (msg.hook) {
        case "onConnect":
          result = h.onConnect(info);
          break;
        case "onAuth":
          result = h.onAuth(info, msg.arg as Parameters<SessionHooks<User>["onAuth"]>[1]);
          break;
        case "onMailFrom":
          result = h.onMailFrom(info, envelope!);
          break;
        case "onRcptTo":
          // Asked only when the hook exists (ChildInit.rcptHook).
          result = h.onRcptTo
            ? h.onRcptTo(info, envelope!, msg.arg as string)
            : Promise.resolve({ ok: true });
          break;
        case "onData": {
          const bytes = msg.arg as Uint8Array;
          const content = Buffer.isBuffer(bytes)
            ? bytes
            : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
          result = h.onData(info, envelope!, content);
          break;
        }
      }
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (value) => reply({ t: "verdict", rid: msg.rid, ok: true, value }),
      (err: unknown) => reply({ t: "verdict", rid: msg.rid, ok: false, error: String(err) }),
    );
  }

  /** A child's JSON log line, written by this process's logger (its sink, its counters). */
  private log(child: Child, line: string): void {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const { level, time: _time, msg, ...rest } = record;
    const label = this.logger.levels.labels[Number(level)] ?? "info";
    const write = this.logger[label as "info"];
    if (typeof write === "function")
      write.call(this.logger, { ...rest, worker: child.index }, String(msg ?? ""));
  }
}

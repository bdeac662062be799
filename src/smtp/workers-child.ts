/**
 * A session process of smtp.workers (forked by workers-pool.ts): runs the SMTP sessions of the
 * sockets the main process hands it — TLS, command parsing, AUTH decoding, DATA — on its own
 * event loop, and asks the main process for every hook verdict.
 *
 * Invariants: nothing here decides who may send or makes anything durable; a 250 after DATA is
 * the main process's reply, sent after its commit. When the main process goes away (its IPC
 * channel closes, e.g. it was killed) every session is destroyed and this process exits: no
 * session may outlive the process that holds its caps and its commit.
 */
import type { Socket } from "node:net";
import { createSecureContext } from "node:tls";
import pino from "pino";
import { BufferBudget } from "./buffer-budget.js";
import { ehloReply } from "./replies.js";
import { Session, type SessionHost } from "./session.js";
import type { Envelope, ListenerSpec, SessionHooks } from "./types.js";
import {
  type ChildInit,
  type ChildSession,
  CorkedChannel,
  type FromChild,
  type HookName,
  infoState,
  type ToChild,
} from "./workers-protocol.js";

const channel = new CorkedChannel<FromChild>((msg) => {
  if (process.connected) process.send!(msg);
});
const send = (msg: FromChild): void => channel.send(msg);

const sessions = new Map<string, Session<unknown>>();
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
const envelopeIds = new WeakMap<Envelope, number>();
let nextRid = 0;
let nextEid = 0;
let host: (SessionHost<unknown> & { shuttingDown: boolean }) | undefined;
let listeners = new Map<string, ListenerSpec>();

function ask(session: Session<unknown>, hook: HookName, envelope?: Envelope, arg?: unknown): Promise<never> {
  const rid = nextRid++;
  let eid: number | undefined;
  if (envelope !== undefined) {
    eid = envelopeIds.get(envelope);
    if (eid === undefined) {
      eid = nextEid++;
      envelopeIds.set(envelope, eid);
    }
  }
  return new Promise((resolve, reject) => {
    pending.set(rid, { resolve: resolve as (v: unknown) => void, reject });
    send({ t: "hook", rid, sid: session.info.id, hook, info: infoState(session.info), eid, envelope, arg });
  });
}

/** Hooks that ask the main process; the SessionInfo passed is this process's copy. */
const askingHooks: SessionHooks<unknown> = {
  onConnect: (info) => ask(sessions.get(info.id)!, "onConnect"),
  onAuth: (info, credentials) => ask(sessions.get(info.id)!, "onAuth", undefined, credentials),
  onMailFrom: (info, envelope) => ask(sessions.get(info.id)!, "onMailFrom", envelope),
  onRcptTo: (info, envelope, rcpt) => ask(sessions.get(info.id)!, "onRcptTo", envelope, rcpt),
  onData: (info, envelope, content) => ask(sessions.get(info.id)!, "onData", envelope, content),
};

const { onRcptTo: _asked, ...withoutRcpt } = askingHooks;

function init(msg: ChildInit): void {
  const logger = pino({ level: msg.logLevel, base: undefined }, {
    write: (line: string) => send({ t: "log", line }),
  } as pino.DestinationStream);
  listeners = new Map(msg.listeners.map((l) => [l.name, l]));
  const size = msg.limits.maxMessageSize;
  const ehloVariants = [
    ehloReply(msg.hostname, size, false, false),
    ehloReply(msg.hostname, size, false, true),
    ehloReply(msg.hostname, size, true, false),
    ehloReply(msg.hostname, size, true, true),
  ];
  host = {
    hostname: msg.hostname,
    limits: msg.limits,
    // The main process has no RCPT hook: this process accepts RCPTs itself (commands.ts).
    hooks: msg.rcptHook ? askingHooks : withoutRcpt,
    logger,
    secureContext: createSecureContext({
      key: msg.tls.key,
      cert: msg.tls.cert,
      minVersion: msg.tls.minVersion,
    }),
    allowInsecureAuth: msg.allowInsecureAuth,
    authEnabled: msg.auth,
    handshakeTimeoutMs: msg.limits.tlsHandshakeTimeoutMs ?? 10_000,
    buffers: new BufferBudget(msg.limits.maxBufferedBytes ?? 0),
    greeting: `220 ${msg.hostname} ESMTP Petrel\r\n`,
    shuttingDown: false,
    ehlo: (startTls, auth) => ehloVariants[(startTls ? 2 : 0) + (auth ? 1 : 0)]!,
    sessionClosed: (session) => {
      sessions.delete(session.info.id);
      send({ t: "closed", sid: session.info.id, reason: session.reason, info: infoState(session.info) });
    },
  };
  startSweep(msg);
  send({ t: "ready" });
}

function startSession(msg: ChildSession, socket: Socket | undefined): void {
  const spec = listeners.get(msg.listener);
  if (host === undefined || spec === undefined || socket === undefined) {
    socket?.destroy();
    send({ t: "closed", sid: msg.sid, reason: "worker-refused", info: emptyState });
    return;
  }
  socket.setNoDelay(true);
  if (msg.leftover !== undefined && msg.leftover.length > 0) {
    // Paused first, as the primary's PROXY reader leaves a socket: a socket received over IPC
    // is not paused, the session's 'data' listener would set it flowing, and on implicit TLS
    // the flow (a tick later, after wrapTls took the listener off) emitted the unshifted
    // ClientHello to nobody: the handshake waited for bytes already gone and timed out. Paused,
    // the bytes stay buffered for the TLSSocket (which reads a wrapped socket's buffer) or for
    // the plaintext session's resume() in Session.start().
    socket.pause();
    socket.unshift(Buffer.from(msg.leftover));
  }
  const session = new Session<unknown>(host, spec, socket, msg.sid, msg.remoteAddress, msg.remotePort);
  sessions.set(msg.sid, session);
  if (host.shuttingDown) session.destroy("shutdown");
  else session.start();
}

const emptyState = { secure: false, esmtp: false, messageCount: 0 } as const;

function startSweep(msg: ChildInit): void {
  const { idleTimeoutMs, sessionTimeoutMs, tlsHandshakeTimeoutMs } = msg.limits;
  const timeouts = [idleTimeoutMs, sessionTimeoutMs, tlsHandshakeTimeoutMs ?? 10_000];
  const shortest = Math.min(...timeouts.filter((t) => t > 0), 4000);
  const period = Math.max(10, Math.min(1000, Math.floor(shortest / 4)));
  setInterval(() => {
    const now = Date.now();
    for (const s of sessions.values()) s.tick(now);
  }, period).unref();
}

function shutdown(graceMs: number): void {
  if (host === undefined || host.shuttingDown) return;
  host.shuttingDown = true;
  for (const s of [...sessions.values()]) s.shutdown();
  setTimeout(() => {
    for (const s of [...sessions.values()]) s.forceClose();
  }, graceMs).unref();
}

process.on("message", (msg: ToChild, handle?: Socket) => receive(msg, handle));

function receive(msg: ToChild, handle?: Socket): void {
  switch (msg.t) {
    case "batch":
      for (const m of msg.msgs) receive(m);
      return;
    case "init":
      init(msg);
      return;
    case "session":
      startSession(msg, handle);
      return;
    case "verdict": {
      const p = pending.get(msg.rid);
      pending.delete(msg.rid);
      if (msg.ok) p?.resolve(msg.value);
      else p?.reject(new Error(msg.error));
      return;
    }
    case "shutdown":
      shutdown(msg.graceMs);
      return;
  }
}

// The main process is gone: its caps and its commit with it. End every session now.
process.on("disconnect", () => {
  for (const s of sessions.values()) s.destroy("main-process-gone");
  setImmediate(() => process.exit(0));
});

// A terminal's Ctrl-C reaches the whole process group: the main process decides when sessions
// end (it drains them, as on SIGTERM), not the signal.
process.on("SIGINT", () => {});
process.on("SIGTERM", () => {});

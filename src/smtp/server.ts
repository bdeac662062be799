/**
 * Petrel's inbound SMTP server: listeners, connection caps, timeouts and graceful shutdown.
 * Sessions (session.ts) run the protocol; the application decides through hooks (types.ts).
 *
 * Why our own server and not the `smtp-server` npm package: it advertises AUTH before STARTTLS
 * and then answers 538 instead of `530 5.7.0`, has hard-coded easter-egg commands
 * (WIZ/SHELL/KILL), accepts 16 KB command lines instead of RFC 5321's 512 octets, has a fixed
 * limit of 10 unrecognised commands, and has no per-IP or total session limits.
 *
 * Invariants: connection caps are checked at TCP accept, before any TLS handshake, PROXY
 * header or onConnect, and count every connection held (a refused one is closed at once); a TLS
 * handshake or PROXY header must complete within tlsHandshakeTimeoutMs; one coarse timer sweeps all sessions for idle/session timeouts (no timer per
 * command); every socket gets TCP_NODELAY (Nagle + delayed ACK stalls pipelined replies).
 * Security: no reverse DNS, nothing from the client is trusted; a client can end its own
 * session but never throw out of here.
 */

import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { createSecureContext } from "node:tls";
import { BufferBudget } from "./buffer-budget.js";
import { parseProxyHeader } from "./proxy-protocol.js";
import { RefusalLog } from "./refusal-log.js";
import { ehloReply, REPLY } from "./replies.js";
import { Session, type SessionHost, stripMapped } from "./session.js";
import type { ListenerSpec, SessionInfo, SmtpServerOptions } from "./types.js";
import { type RemoteSession, WorkerPool } from "./workers-pool.js";

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const ignore = (): void => {};

/** A listener could not be bound; anything already bound has been closed. */
export class BindError extends Error {
  readonly listener: string;
  readonly host: string;
  readonly port: number;
  readonly code: string;

  constructor(listener: string, host: string, port: number, code: string, options?: { cause?: unknown }) {
    super(`cannot listen on ${host}:${port} for SMTP listener "${listener}": ${code}`, options);
    this.name = "BindError";
    this.listener = listener;
    this.host = host;
    this.port = port;
    this.code = code;
  }
}

interface Bound {
  readonly name: string;
  readonly server: Server;
}

export class SmtpServer<User> {
  private readonly opts: SmtpServerOptions<User>;
  /** What sessions see of the server; kept off the public surface. */
  private readonly host: SessionHost<User> & { shuttingDown: boolean };
  private readonly bound: Bound[] = [];
  private readonly sessions = new Set<Session<User>>();
  /** smtp.workers > 1: the session processes; sessions then run there (workers-pool.ts). */
  private readonly pool: WorkerPool<User> | undefined;
  private readonly perIp = new Map<string, number>();
  /** Connections counted in the total cap: sessions plus PROXY headers being read. */
  private open = 0;
  private readonly pendingProxy = new Set<Socket>();
  private readonly handshakeTimeoutMs: number;
  /** Refused connections, by reason (rate-limited log lines). */
  readonly refusals: RefusalLog;
  private readonly idPrefix = randomBytes(3).toString("hex");
  private nextId = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private allClosed: (() => void) | undefined;

  constructor(opts: SmtpServerOptions<User>) {
    const { limits } = opts;
    if (!(limits.maxMessageSize > 0) || !(limits.maxRecipients > 0)) {
      throw new RangeError("SMTP limits: maxMessageSize and maxRecipients must be positive");
    }
    this.opts = opts;
    this.refusals = new RefusalLog(opts.logger);
    this.handshakeTimeoutMs = limits.tlsHandshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    const size = limits.maxMessageSize;
    // Indexed by (startTls ? 2 : 0) + (auth ? 1 : 0): EHLO costs one array lookup.
    const ehloVariants = [
      ehloReply(opts.hostname, size, false, false),
      ehloReply(opts.hostname, size, false, true),
      ehloReply(opts.hostname, size, true, false),
      ehloReply(opts.hostname, size, true, true),
    ];
    this.host = {
      hostname: opts.hostname,
      limits,
      hooks: opts.hooks,
      logger: opts.logger,
      secureContext: createSecureContext({
        key: opts.tls.key,
        cert: opts.tls.cert,
        minVersion: opts.tls.minVersion ?? "TLSv1.2",
      }),
      allowInsecureAuth: opts.allowInsecureAuth ?? false,
      authEnabled: opts.auth ?? true,
      handshakeTimeoutMs: this.handshakeTimeoutMs,
      buffers: new BufferBudget(limits.maxBufferedBytes ?? 0),
      greeting: `220 ${opts.hostname} ESMTP Petrel\r\n`,
      shuttingDown: false,
      ehlo: (startTls, auth) => ehloVariants[(startTls ? 2 : 0) + (auth ? 1 : 0)]!,
      sessionClosed: (session) => this.sessionClosed(session),
    };
    const workers = opts.workers ?? 1;
    if (workers > 1) {
      this.pool = new WorkerPool<User>(
        workers,
        {
          t: "init",
          hostname: opts.hostname,
          listeners: opts.listeners,
          tls: { key: opts.tls.key, cert: opts.tls.cert, minVersion: opts.tls.minVersion ?? "TLSv1.2" },
          allowInsecureAuth: this.host.allowInsecureAuth,
          auth: this.host.authEnabled,
          // Each process holds its own DATA bytes: a share each keeps the sum within the limit.
          limits: {
            ...limits,
            maxBufferedBytes:
              (limits.maxBufferedBytes ?? 0) > 0 ? Math.ceil(limits.maxBufferedBytes! / workers) : 0,
          },
          logLevel: opts.logger.level,
          rcptHook: opts.hooks.onRcptTo !== undefined,
        },
        opts.hooks,
        opts.logger,
        { closed: (remote) => this.sessionClosed(remote) },
      );
    }
  }

  /** Process ids of the session processes (smtp.workers > 1), else empty. */
  get workerPids(): number[] {
    return this.pool?.pids ?? [];
  }

  /** Binds every listener; on the first failure closes what was bound and rejects with a BindError. */
  async listen(): Promise<void> {
    if (this.pool !== undefined) {
      await this.pool.start();
      this.opts.logger.info({ workers: this.pool.pids }, "smtp workers started");
    }
    for (const spec of this.opts.listeners) {
      // With workers, nothing is read here (but a PROXY header): the socket moves to a child.
      const server = createServer(
        { allowHalfOpen: true, noDelay: true, pauseOnConnect: this.pool !== undefined },
        (socket) => this.accept(socket, spec),
      );
      try {
        await new Promise<void>((resolve, reject) => {
          server.once("error", reject);
          server.listen({ host: spec.host, port: spec.port }, () => {
            server.off("error", reject);
            resolve();
          });
        });
      } catch (err) {
        await Promise.all(this.bound.map((b) => new Promise((r) => b.server.close(r))));
        this.bound.length = 0;
        await this.pool?.stop();
        const code = (err as NodeJS.ErrnoException).code ?? "UNKNOWN";
        throw new BindError(spec.name, spec.host, spec.port, code, { cause: err });
      }
      // After binding, errors are accept failures (e.g. EMFILE): log, keep serving.
      server.on("error", (err) =>
        this.opts.logger.error({ err, listener: spec.name }, "smtp listener error"),
      );
      this.bound.push({ name: spec.name, server });
    }
    this.startSweep();
  }

  /** Actual bound ports, in listener order (port 0 in the spec means an ephemeral port). */
  get addresses(): { name: string; port: number }[] {
    return this.bound.map((b) => {
      const addr = b.server.address();
      return { name: b.name, port: addr !== null && typeof addr === "object" ? addr.port : 0 };
    });
  }

  /** Open connections, including ones being refused or closed. */
  connectionCount(): number {
    return this.sessions.size + (this.pool?.size ?? 0);
  }

  /**
   * Stops listening at once. Sessions outside DATA get 421 4.3.2 and are closed; sessions in
   * DATA may finish (they get their DATA reply, then 421) until graceMs, when every remaining
   * session gets 421 and is destroyed. Resolves when every socket is closed.
   */
  close(graceMs: number): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.host.shuttingDown = true;
    const listenersClosed = Promise.all(
      this.bound.map((b) => new Promise<void>((resolve) => b.server.close(() => resolve()))),
    );
    const sessionsClosed = new Promise<void>((resolve) => {
      this.allClosed = resolve;
    });
    for (const s of [...this.sessions]) s.shutdown();
    for (const socket of [...this.pendingProxy]) socket.destroy();
    this.pool?.shutdown(graceMs);
    const deadline = setTimeout(() => {
      for (const s of [...this.sessions]) s.forceClose();
    }, graceMs);
    if (this.connectionCount() === 0) this.allClosed?.();
    this.closing = Promise.all([listenersClosed, sessionsClosed]).then(async () => {
      clearTimeout(deadline);
      if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
      await this.pool?.stop();
    });
    return this.closing;
  }

  private sessionClosed(session: Session<User> | RemoteSession<User>): void {
    if (session instanceof Session) this.sessions.delete(session);
    const info = session.info;
    this.open--;
    const n = (this.perIp.get(info.remoteAddress) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(info.remoteAddress);
    else this.perIp.set(info.remoteAddress, n);
    this.opts.logger.info(
      {
        session: info.id,
        listener: info.listener,
        remote: info.remoteAddress,
        tls: info.tlsProtocol,
        cipher: info.tlsCipher,
        auth: info.authMethod,
        messages: info.messageCount,
        durationMs: Date.now() - info.openedAt,
        reason: session.reason,
      },
      "smtp session closed",
    );
    if (this.opts.hooks.onClose !== undefined) {
      try {
        this.opts.hooks.onClose(info, session.reason);
      } catch (err) {
        this.opts.logger.error({ err, session: info.id, hook: "onClose" }, "smtp hook failed");
      }
    }
    if (this.host.shuttingDown && this.connectionCount() === 0) this.allClosed?.();
  }

  private accept(socket: Socket, spec: ListenerSpec): void {
    socket.setNoDelay(true);
    socket.on("error", ignore); // a reset before the session attaches its own handler
    const peer = socket.remoteAddress === undefined ? undefined : stripMapped(socket.remoteAddress);
    if (peer === undefined || this.host.shuttingDown) {
      // Already reset by the peer, or accepted in the instant before the listener closed.
      socket.destroy();
      return;
    }
    // Admission happens here, at TCP accept and before any TLS or PROXY bytes are read, so a
    // flood of stalled handshakes holds at most the caps' worth of descriptors (issue 13).
    const { maxConnections } = this.opts.limits;
    if (maxConnections > 0 && this.open >= maxConnections) {
      this.refuse(socket, spec, peer, "too-many-connections");
      return;
    }
    if (spec.proxyProtocol === true) {
      if (this.opts.proxyProtocol?.trusted(peer) !== true) {
        this.refuse(socket, spec, peer, "proxy-untrusted");
        return;
      }
      this.readProxy(socket, spec, peer);
      return;
    }
    this.admit(socket, spec, peer, socket.remotePort ?? 0, undefined);
  }

  /** Counts the connection against the per-IP cap of its client address and starts a session. */
  private admit(
    socket: Socket,
    spec: ListenerSpec,
    ip: string,
    port: number,
    leftover: Buffer | undefined,
  ): void {
    const { maxConnectionsPerIp } = this.opts.limits;
    const fromIp = this.perIp.get(ip) ?? 0;
    if (maxConnectionsPerIp > 0 && fromIp >= maxConnectionsPerIp) {
      this.refuse(socket, spec, ip, "too-many-connections-from-ip");
      return;
    }
    const id = this.idPrefix + (this.nextId++).toString(36);
    if (this.pool !== undefined) {
      this.open++;
      this.perIp.set(ip, fromIp + 1);
      const info: SessionInfo<User> = {
        id,
        listener: spec.name,
        remoteAddress: ip,
        remotePort: port,
        localAddress: stripMapped(socket.localAddress ?? ""),
        localPort: socket.localPort ?? 0,
        secure: false,
        esmtp: false,
        messageCount: 0,
        openedAt: Date.now(),
      };
      this.pool.handoff(socket, { info, reason: "", child: undefined, envelope: undefined }, leftover);
      return;
    }
    if (leftover !== undefined && leftover.length > 0) socket.unshift(leftover);
    socket.off("error", ignore);
    const session = new Session<User>(this.host, spec, socket, id, ip, port);
    this.open++;
    this.perIp.set(ip, fromIp + 1);
    this.sessions.add(session);
    session.start();
  }

  /**
   * Refuses a connection at accept: on a plaintext listener with one 421 line (RFC 5321
   * §3.8), on an implicit-TLS listener by closing at once (no reply is possible before a TLS
   * handshake, and finishing one would cost what the cap is there to save).
   */
  private refuse(socket: Socket, spec: ListenerSpec, ip: string, reason: string): void {
    this.refusals.refused(reason, spec.name, ip);
    if (spec.mode === "starttls" && reason !== "proxy-untrusted" && !spec.proxyProtocol) {
      socket.end(REPLY.tooManyConnections, () => socket.destroy());
    } else socket.destroy();
  }

  /** Reads the PROXY header of a connection from a trusted balancer, then admits its client. */
  private readProxy(socket: Socket, spec: ListenerSpec, peer: string): void {
    this.open++; // held while the header is awaited: it counts toward the total cap
    this.pendingProxy.add(socket);
    let received: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (): void => {
      settled = true;
      this.open--;
      this.pendingProxy.delete(socket);
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
    };
    const fail = (reason: string): void => {
      finish();
      this.refusals.refused(reason, spec.name, peer);
      socket.destroy();
      if (this.host.shuttingDown && this.connectionCount() === 0) this.allClosed?.();
    };
    const onClose = (): void => {
      if (!settled) fail("proxy-closed");
    };
    const onData = (chunk: Buffer): void => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const parsed = parseProxyHeader(received);
      if (parsed.kind === "more") return;
      if (parsed.kind === "error") {
        this.opts.logger.debug({ listener: spec.name, remote: peer, why: parsed.reason }, "bad PROXY header");
        fail("proxy-header-invalid");
        return;
      }
      finish();
      socket.pause();
      // What came after the header is the session's: handed on with the socket.
      const rest = [received.subarray(parsed.length)];
      for (let c = socket.read() as Buffer | null; c !== null; c = socket.read() as Buffer | null)
        rest.push(c);
      // A paused net.Socket still reads into its buffer, and a socket sent to a child loses
      // what its buffer holds (the send may wait for the child's ack of an earlier socket):
      // stop reading at the handle, as net.Socket.pause() itself does for sockets with `onread`.
      if (this.pool !== undefined) stopReading(socket);
      if (this.host.shuttingDown) {
        socket.destroy();
        return;
      }
      const source = parsed.source;
      const port = source?.port ?? socket.remotePort ?? 0;
      this.admit(socket, spec, source?.address ?? peer, port, Buffer.concat(rest));
    };
    const timer = setTimeout(() => fail("proxy-header-timeout"), this.handshakeTimeoutMs);
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.resume(); // paused at accept when sessions run in workers
  }

  /** One timer for all sessions; its period bounds how late a timeout can fire. */
  private startSweep(): void {
    const { idleTimeoutMs, sessionTimeoutMs } = this.opts.limits;
    const timeouts = [idleTimeoutMs, sessionTimeoutMs, this.handshakeTimeoutMs];
    const shortest = Math.min(...timeouts.filter((t) => t > 0), 4000);
    const period = Math.max(10, Math.min(1000, Math.floor(shortest / 4)));
    this.sweepTimer = setInterval(() => {
      const now = Date.now();
      for (const s of this.sessions) s.tick(now);
      this.refusals.tick(now);
    }, period);
    this.sweepTimer.unref();
  }
}

function stopReading(socket: Socket): void {
  const handle = (socket as unknown as { _handle?: { reading: boolean; readStop(): number } })._handle;
  if (handle !== undefined && handle !== null && typeof handle.readStop === "function") {
    handle.reading = false;
    handle.readStop();
  }
}

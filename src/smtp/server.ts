/**
 * Petrel's inbound SMTP server: listeners, connection caps, timeouts and graceful shutdown.
 * Sessions (session.ts) run the protocol; the application decides through hooks (types.ts).
 *
 * Why our own server and not the `smtp-server` npm package: it advertises AUTH before STARTTLS
 * and then answers 538 instead of `530 5.7.0`, has hard-coded easter-egg commands
 * (WIZ/SHELL/KILL), accepts 16 KB command lines instead of RFC 5321's 512 octets, has a fixed
 * limit of 10 unrecognised commands, and has no per-IP or total session limits.
 *
 * Invariants: connection caps are checked at accept, before onConnect, and count only admitted
 * sessions; one coarse timer sweeps all sessions for idle/session timeouts (no timer per
 * command); every socket gets TCP_NODELAY (Nagle + delayed ACK stalls pipelined replies).
 * Security: no reverse DNS, nothing from the client is trusted; a client can end its own
 * session but never throw out of here.
 */

import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { createSecureContext } from "node:tls";
import { ehloReply } from "./replies.js";
import { Session, type SessionHost, stripMapped } from "./session.js";
import type { SmtpServerOptions } from "./types.js";

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
  private readonly perIp = new Map<string, number>();
  private admitted = 0;
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
      greeting: `220 ${opts.hostname} ESMTP Petrel\r\n`,
      shuttingDown: false,
      ehlo: (startTls, auth) => ehloVariants[(startTls ? 2 : 0) + (auth ? 1 : 0)]!,
      sessionClosed: (session) => this.sessionClosed(session),
    };
  }

  /** Binds every listener; on the first failure closes what was bound and rejects with a BindError. */
  async listen(): Promise<void> {
    for (const spec of this.opts.listeners) {
      const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) =>
        this.accept(socket, spec),
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
    return this.sessions.size;
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
    const deadline = setTimeout(() => {
      for (const s of [...this.sessions]) s.forceClose();
    }, graceMs);
    if (this.sessions.size === 0) this.allClosed?.();
    this.closing = Promise.all([listenersClosed, sessionsClosed]).then(() => {
      clearTimeout(deadline);
      if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    });
    return this.closing;
  }

  private sessionClosed(session: Session<User>): void {
    this.sessions.delete(session);
    const info = session.info;
    if (session.admitted) {
      this.admitted--;
      const n = (this.perIp.get(info.remoteAddress) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(info.remoteAddress);
      else this.perIp.set(info.remoteAddress, n);
    }
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
        session.hookFailed("onClose", err);
      }
    }
    if (this.host.shuttingDown && this.sessions.size === 0) this.allClosed?.();
  }

  private accept(socket: Socket, spec: SmtpServerOptions<User>["listeners"][number]): void {
    socket.setNoDelay(true);
    const ip = socket.remoteAddress === undefined ? undefined : stripMapped(socket.remoteAddress);
    if (ip === undefined || this.host.shuttingDown) {
      // Already reset by the peer, or accepted in the instant before the listener closed.
      socket.on("error", () => {});
      socket.destroy();
      return;
    }
    const { maxConnections, maxConnectionsPerIp } = this.opts.limits;
    const fromIp = this.perIp.get(ip) ?? 0;
    const overCap =
      (maxConnections > 0 && this.admitted >= maxConnections) ||
      (maxConnectionsPerIp > 0 && fromIp >= maxConnectionsPerIp);
    const id = this.idPrefix + (this.nextId++).toString(36);
    const session = new Session<User>(this.host, spec, socket, id, ip, overCap);
    if (!overCap) {
      session.admitted = true;
      this.admitted++;
      this.perIp.set(ip, fromIp + 1);
    }
    this.sessions.add(session);
    session.start();
  }

  /** One timer for all sessions; its period bounds how late a timeout can fire. */
  private startSweep(): void {
    const { idleTimeoutMs, sessionTimeoutMs } = this.opts.limits;
    const shortest = Math.min(...[idleTimeoutMs, sessionTimeoutMs].filter((t) => t > 0), 4000);
    const period = Math.max(10, Math.min(1000, Math.floor(shortest / 4)));
    this.sweepTimer = setInterval(() => {
      const now = Date.now();
      for (const s of this.sessions) s.tick(now);
    }, period);
    this.sweepTimer.unref();
  }
}

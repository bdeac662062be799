/**
 * The dispatcher: turns delivery jobs (one message, one destination, some recipients) into SMTP
 * transactions over pooled connections, within the limits, and answers each job with a reply per
 * recipient. It knows routes, MX resolution and the SMTP client; it knows nothing of the store.
 *
 * Scheduling: one queue per destination (recipient domain, or the relay of a relay route). A
 * connection ("runner") takes jobs from its destination's queue one after another (connection
 * reuse, RSET after a failed transaction) until it has sent maxMessagesPerConnection, finds
 * nothing for idleTimeoutMs, or another destination needs its slot under the global cap.
 *
 * Invariants:
 * - Connections to a destination never exceed its cap; connections in total never exceed the
 *   global cap (counted from the moment a connection is being opened until it is closed).
 * - Every submitted job is answered exactly once: replies for all its recipients, or `released`
 *   when the dispatcher stops before the job started (its lease is given back, no attempt made).
 * - After `destinationFailureThreshold` consecutive connection-level failures (every address
 *   refused, timed out, answered 4xx/5xx to the greeting, or DNS failed temporarily) the whole
 *   destination is suspended: its waiting jobs are answered at once with a deferral, and
 *   onSuspend() lets the store hold back its queued mail, instead of hammering it message by message.
 */
import { performance } from "node:perf_hooks";
import type { DeliveryConfig } from "../config/delivery-schema.js";
import type { DnsResolver } from "../dns/types.js";
import type { Logger } from "../log.js";
import { destinationWait, type RetryPolicy } from "../queue/backoff.js";
import { type Candidate, resolveMx, resolveRelay } from "./mx.js";
import type { ResolvedRoute } from "./routes.js";
import { local, type Reply, SessionError, SmtpSession } from "./smtp-client.js";
import { SourcePool } from "./sources.js";

export interface DispatchJob {
  readonly messageId: string;
  readonly mailFrom: string;
  readonly content: Buffer;
  /** The recipients' domain (one per job). */
  readonly domain: string;
  readonly recipients: readonly string[];
  readonly route: ResolvedRoute;
  /**
   * Issue 5: the envelope sender per recipient (VERP, src/bounces/return-path.ts); recipients with
   * different senders go in transactions of their own. Absent: `mailFrom` for all.
   */
  readonly returnPaths?: ReadonlyMap<string, string> | undefined;
}

export interface AttemptInfo {
  readonly mxHost: string | null;
  readonly ip: string | null;
  readonly port: number | null;
  readonly sourceIp: string | null;
  readonly tls: string | null;
  readonly durationMs: number;
}

export type JobResult =
  | {
      readonly kind: "done";
      readonly replies: ReadonlyMap<string, Reply>;
      readonly attempt: AttemptInfo;
      /** Not before this time (the destination is suspended until then). */
      readonly notBefore: number | null;
    }
  | { readonly kind: "released" };

export interface DispatcherDeps {
  readonly config: DeliveryConfig;
  readonly resolver: DnsResolver;
  /** Default EHLO name (sources may have their own). */
  readonly hostname: string;
  readonly logger: Logger;
  /** Extra CA certificates for `verify` (PEM). */
  readonly ca?: string | undefined;
  readonly now: () => number;
  readonly random?: () => number;
  /** A destination is suspended until `until`: persist it for these recipient domains. */
  readonly onSuspend?: (
    domains: readonly string[],
    until: number,
    failures: number,
    lastError: string,
  ) => void;
  /** A destination that was failing took mail again. */
  readonly onRecover?: (domains: readonly string[]) => void;
}

interface Pending {
  readonly job: DispatchJob;
  readonly resolve: (result: JobResult) => void;
}

interface Destination {
  readonly key: string;
  readonly route: ResolvedRoute;
  readonly queue: Pending[];
  /** Runners waiting idle for a job: call with the job, or undefined to close. */
  readonly idle: Array<(next: Pending | undefined) => void>;
  active: number;
  failures: number;
  lastError: string;
  suspendedUntil: number;
  /** Recipient domains seen for this destination (a relay serves many). */
  readonly domains: Set<string>;
}

export interface DispatcherStats {
  connectionsOpened: number;
  transactions: number;
  peakConnections: number;
}

export class Dispatcher {
  private readonly deps: DispatcherDeps;
  private readonly destinations = new Map<string, Destination>();
  private readonly sources: SourcePool;
  private readonly policy: RetryPolicy;
  private readonly sessions = new Set<SmtpSession>();
  private active = 0;
  private stopping = false;
  private idleWaiters: Array<() => void> = [];
  readonly stats: DispatcherStats = { connectionsOpened: 0, transactions: 0, peakConnections: 0 };

  constructor(deps: DispatcherDeps) {
    this.deps = deps;
    this.sources = new SourcePool(deps.config.sources, deps.hostname);
    this.policy = { schedule: deps.config.retrySchedule, jitter: deps.config.retryJitter };
  }

  /** Delivers one job; resolves once every recipient has a reply (or the job was released). */
  submit(job: DispatchJob): Promise<JobResult> {
    return new Promise((resolve) => {
      if (this.stopping) return resolve({ kind: "released" });
      const dest = this.destination(job.route);
      dest.domains.add(job.domain);
      const pending: Pending = { job, resolve };
      if (dest.suspendedUntil > this.deps.now()) return resolve(this.suspended(dest, job));
      const waiting = dest.idle.shift();
      if (waiting) return waiting(pending);
      dest.queue.push(pending);
      this.pump();
    });
  }

  /** Jobs waiting (not yet on a connection) for the destination of `route`. */
  backlog(route: ResolvedRoute): number {
    return this.destinations.get(route.destination)?.queue.length ?? 0;
  }

  /** Recipient domains whose destinations already have `threshold` or more jobs waiting. */
  saturatedDomains(threshold: (route: ResolvedRoute) => number): string[] {
    const out: string[] = [];
    for (const dest of this.destinations.values()) {
      if (dest.queue.length >= threshold(dest.route) || dest.suspendedUntil > this.deps.now()) {
        out.push(...dest.domains);
      }
    }
    return out;
  }

  get connections(): number {
    return this.active;
  }

  /** Stops taking jobs: waiting ones are released, idle connections closed; resolves when idle. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const dest of this.destinations.values()) {
      for (const p of dest.queue.splice(0)) p.resolve({ kind: "released" });
      for (const waiting of dest.idle.splice(0)) waiting(undefined);
    }
    if (this.active > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
    }
    // Past the grace period: close what is left; transactions in flight end as lost connections.
    await Promise.all([...this.sessions].map((session) => session.close()));
  }

  private destination(route: ResolvedRoute): Destination {
    let dest = this.destinations.get(route.destination);
    if (!dest) {
      dest = {
        key: route.destination,
        route,
        queue: [],
        idle: [],
        active: 0,
        failures: 0,
        lastError: "",
        suspendedUntil: 0,
        domains: new Set(),
      };
      this.destinations.set(route.destination, dest);
    }
    return dest;
  }

  /** Starts connections where jobs wait and the caps allow; frees idle slots for waiting destinations. */
  private pump(): void {
    const cap = this.deps.config.maxConnections;
    let starved = false;
    for (const dest of this.destinations.values()) {
      while (dest.queue.length > 0 && dest.active < dest.route.maxConnections) {
        if (this.active >= cap) {
          starved = true;
          break;
        }
        this.startRunner(dest, dest.queue.shift()!);
      }
    }
    if (starved) {
      // Under the global cap, an idle connection elsewhere gives its slot to waiting work.
      for (const dest of this.destinations.values()) {
        if (dest.queue.length === 0 && dest.idle.length > 0) dest.idle.shift()!(undefined);
      }
    }
  }

  private startRunner(dest: Destination, first: Pending): void {
    this.active++;
    dest.active++;
    if (this.active > this.stats.peakConnections) this.stats.peakConnections = this.active;
    const current: { job: Pending } = { job: first };
    void this.run(dest, current)
      .catch((err: unknown) => {
        // A bug, not a remote answer: the job in hand is deferred (its lease stays honest).
        this.deps.logger.error({ err, destination: dest.key }, "delivery connection failed unexpectedly");
        current.job.resolve({
          kind: "done",
          replies: everyone(current.job.job, local(451, "4.3.0", "local error during delivery")),
          attempt: { mxHost: null, ip: null, port: null, sourceIp: null, tls: null, durationMs: 0 },
          notBefore: null,
        });
      })
      .finally(() => {
        this.active--;
        dest.active--;
        // Forget a destination with nothing left to remember, so the map does not grow with every
        // domain ever seen (a failing one stays: its failure count and suspension matter).
        if (dest.active === 0 && dest.queue.length === 0 && dest.idle.length === 0 && dest.failures === 0) {
          this.destinations.delete(dest.key);
        }
        if (this.active === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
        if (!this.stopping) this.pump();
      });
  }

  /** One connection's life: connect for the first job, then reuse it for more. */
  private async run(dest: Destination, current: { job: Pending }): Promise<void> {
    const first = current.job;
    const started = performance.now();
    const opened = await this.open(dest, first.job);
    if (opened.kind !== "ok") {
      const attempt = { ...opened.attempt, durationMs: performance.now() - started };
      if (opened.kind === "temporary") this.failed(dest, opened.reply);
      first.resolve({
        kind: "done",
        replies: everyone(first.job, opened.reply),
        attempt,
        notBefore: dest.suspendedUntil > this.deps.now() ? dest.suspendedUntil : null,
      });
      if (dest.suspendedUntil > this.deps.now()) this.suspendWaiting(dest);
      return;
    }
    const session = opened.session;
    this.sessions.add(session);
    this.recovered(dest);
    let sent = 0;
    let next: Pending | undefined = first;
    try {
      while (next) {
        const t0 = next === first ? started : performance.now();
        current.job = next;
        next.resolve(await this.deliver(session, next.job, t0));
        sent++;
        if (sent >= dest.route.maxMessagesPerConnection || !session.usable || this.stopping) break;
        next = await this.nextJob(dest);
      }
    } finally {
      this.sessions.delete(session);
      await session.close();
    }
  }

  /** The next job for this connection, or undefined after idleTimeoutMs (or when told to close). */
  private nextJob(dest: Destination): Promise<Pending | undefined> {
    const queued = dest.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.deps.config.idleTimeoutMs === 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiting = (next: Pending | undefined) => {
        clearTimeout(timer);
        resolve(next);
      };
      const timer = setTimeout(() => {
        const i = dest.idle.indexOf(waiting);
        if (i >= 0) dest.idle.splice(i, 1);
        resolve(undefined);
      }, this.deps.config.idleTimeoutMs);
      dest.idle.push(waiting);
      // A destination starved by the global cap may be waiting for exactly this slot.
      if (this.active >= this.deps.config.maxConnections) this.pump();
    });
  }

  private async deliver(session: SmtpSession, job: DispatchJob, t0: number): Promise<JobResult> {
    const info = session.info;
    const replies = new Map<string, Reply>();
    const refuse = preflight(session, job);
    if (refuse) {
      for (const to of job.recipients) replies.set(to, refuse);
    } else {
      const chunk = this.deps.config.maxRecipientsPerTransaction;
      for (const [from, group] of bySender(job)) {
        for (let i = 0; i < group.length; i += chunk) {
          const to = group.slice(i, i + chunk);
          const result = await session.send({ from, to }, job.content);
          this.stats.transactions++;
          for (const address of to) {
            replies.set(
              address,
              result.replies.get(address) ?? local(451, "4.4.2", "no reply for recipient"),
            );
          }
        }
      }
    }
    return {
      kind: "done",
      replies,
      attempt: {
        mxHost: info.host,
        ip: info.ip,
        port: info.port,
        sourceIp: info.sourceIp,
        tls: info.tls,
        durationMs: performance.now() - t0,
      },
      notBefore: null,
    };
  }

  private async open(
    dest: Destination,
    job: DispatchJob,
  ): Promise<
    | { kind: "ok"; session: SmtpSession }
    | { kind: "permanent" | "temporary"; reply: Reply; attempt: Omit<AttemptInfo, "durationMs"> }
  > {
    const { config, resolver } = this.deps;
    const route = dest.route;
    const mxOptions = { forceIpv4: config.forceIpv4, random: this.deps.random };
    const outcome =
      route.transport === "relay"
        ? await resolveRelay(resolver, route.host!, mxOptions)
        : await resolveMx(resolver, job.domain, mxOptions);
    const none = { mxHost: null, ip: null, port: null, sourceIp: null, tls: null };
    if (outcome.kind === "permanent") {
      return {
        kind: "permanent",
        reply: local(outcome.code, outcome.enhanced, outcome.message),
        attempt: none,
      };
    }
    if (outcome.kind === "temporary") {
      return { kind: "temporary", reply: local(451, outcome.enhanced, outcome.message), attempt: none };
    }
    const candidates = this.sources.usable(outcome.candidates).slice(0, config.maxAddressesPerAttempt);
    if (candidates.length === 0) {
      return {
        kind: "temporary",
        reply: local(451, "4.4.4", "no address of a usable family (check delivery.sources / forceIpv4)"),
        attempt: none,
      };
    }
    const errors: string[] = [];
    let last: { candidate: Candidate; reply: Reply; source: string | null } | undefined;
    const portOf = (ip: string) =>
      route.transport === "mx" ? (config.mxPorts[ip] ?? route.port) : route.port;
    for (const candidate of candidates) {
      const source = this.sources.next(candidate.ip);
      try {
        const session = await SmtpSession.open({
          host: candidate.host,
          ip: candidate.ip,
          port: portOf(candidate.ip),
          implicitTls: route.implicitTls,
          tlsPolicy: route.tlsPolicy,
          ca: this.deps.ca,
          localAddress: source?.address,
          ehloName: source?.ehloName ?? this.deps.hostname,
          auth: route.auth,
          connectTimeoutMs: config.connectTimeoutMs,
          greetingTimeoutMs: config.greetingTimeoutMs,
          commandTimeoutMs: config.commandTimeoutMs,
        });
        this.stats.connectionsOpened++;
        return { kind: "ok", session };
      } catch (err) {
        if (!(err instanceof SessionError)) throw err;
        // RFC 5321 §5.1: on a connection failure or a 4xx greeting, go on to the next address.
        errors.push(err.reply.text);
        last = { candidate, reply: err.reply, source: source?.address ?? null };
        this.deps.logger.debug({ destination: dest.key, error: err.reply.text }, "connection attempt failed");
      }
    }
    const reply = last!.reply;
    const text = errors.length > 1 ? `${reply.text} (after ${errors.length} addresses)` : reply.text;
    return {
      kind: "temporary",
      reply: { ...reply, code: reply.code >= 500 ? 451 : reply.code, text },
      attempt: {
        mxHost: last!.candidate.host,
        ip: last!.candidate.ip,
        port: portOf(last!.candidate.ip),
        sourceIp: last!.source,
        tls: null,
      },
    };
  }

  private failed(dest: Destination, reply: Reply): void {
    dest.failures++;
    dest.lastError = reply.text;
    const { config, now, random } = this.deps;
    const wait = destinationWait(this.policy, dest.failures, config.destinationFailureThreshold, random);
    if (wait === null) return;
    dest.suspendedUntil = now() + wait;
    this.deps.logger.warn(
      { destination: dest.key, failures: dest.failures, until: new Date(dest.suspendedUntil).toISOString() },
      `destination ${dest.key} suspended: ${reply.text}`,
    );
    this.deps.onSuspend?.([...dest.domains], dest.suspendedUntil, dest.failures, reply.text);
  }

  private recovered(dest: Destination): void {
    if (dest.failures === 0) return;
    dest.failures = 0;
    dest.suspendedUntil = 0;
    this.deps.onRecover?.([...dest.domains]);
  }

  private suspendWaiting(dest: Destination): void {
    for (const p of dest.queue.splice(0)) p.resolve(this.suspended(dest, p.job));
  }

  private suspended(dest: Destination, job: DispatchJob): JobResult {
    const reason = dest.lastError.replace(/^\d{3} \d\.\d+\.\d+ /, "");
    return {
      kind: "done",
      replies: everyone(job, local(451, "4.4.1", `delivery temporarily suspended: ${reason}`)),
      attempt: { mxHost: null, ip: null, port: null, sourceIp: null, tls: null, durationMs: 0 },
      notBefore: dest.suspendedUntil,
    };
  }
}

/** The job's recipients grouped by envelope sender, in order (one group unless VERP applies). */
function bySender(job: DispatchJob): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const to of job.recipients) {
    const from = job.returnPaths?.get(to) ?? job.mailFrom;
    const group = groups.get(from);
    if (group) group.push(to);
    else groups.set(from, [to]);
  }
  return groups;
}

function everyone(job: DispatchJob, reply: Reply): Map<string, Reply> {
  return new Map(job.recipients.map((to) => [to, reply]));
}

/**
 * Checks before MAIL FROM: SIZE (RFC 1870: a message over the advertised limit would be refused
 * anyway) and SMTPUTF8 (RFC 6531 §3.2: a message that needs it cannot go to a server without it).
 */
function preflight(session: SmtpSession, job: DispatchJob): Reply | undefined {
  const { maxSize, smtputf8, host } = session.info;
  if (maxSize > 0 && job.content.length > maxSize) {
    return local(552, "5.3.4", `message size ${job.content.length} exceeds the limit ${maxSize} of ${host}`);
  }
  if (!smtputf8 && needsSmtpUtf8(job)) {
    return local(553, "5.6.7", `SMTPUTF8 is required but was not offered by ${host}`);
  }
  return undefined;
}

/** Non-ASCII in the envelope or the header section needs SMTPUTF8 (RFC 6531, RFC 6532). */
export function needsSmtpUtf8(job: Pick<DispatchJob, "mailFrom" | "recipients" | "content">): boolean {
  const nonAscii = /[^\x00-\x7f]/;
  if (nonAscii.test(job.mailFrom) || job.recipients.some((r) => nonAscii.test(r))) return true;
  const end = job.content.indexOf("\r\n\r\n");
  const header = job.content.subarray(0, end < 0 ? job.content.length : end);
  return header.some((byte) => byte > 0x7f);
}

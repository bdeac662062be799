/**
 * The dispatcher: turns delivery jobs (one message, one recipient domain, some recipients) into
 * SMTP transactions over pooled connections, within the limits, and answers each job with a reply
 * per recipient. It knows routes, MX resolution and the SMTP client; it knows nothing of the store.
 *
 * Scheduling (issue 11): one queue per destination. A destination is the MX site a job's domain
 * resolves to (providers.ts: a provider rule such as "google" by MX host suffix, else the MX host
 * set), so the thousands of domains hosted at one provider share its connections, limits and
 * backoff; a relay route's destination is the relay; a domain whose MX lookup fails temporarily
 * waits under its own name. A connection ("runner") takes jobs from its destination's queue one
 * after another (connection reuse, RSET after a failed transaction) until it has sent
 * maxMessagesPerConnection, finds nothing for idleTimeoutMs, or another destination needs its slot
 * under the global cap. A rate (messages per minute) is a token bucket per destination.
 *
 * Adaptive throttling (throttle.ts): a reply classed `reputation` lowers its destination's rate
 * and connections at once; clean deliveries raise them step by step; each change goes to
 * onThrottle() with the reply or delivery that caused it.
 *
 * Cluster (issue 8 item 4, slots.ts): with `slots` (the PostgreSQL store), every connection
 * also holds one of its destination's slots, shared by all nodes, taken before it is opened and
 * given back when it closes; a destination whose slots are all held elsewhere waits slotRetryMs
 * and asks again, its jobs waiting in its queue (the worker stops claiming for it meanwhile);
 * after SLOT_GIVE_BACK_TRIES such tries with no slot held here its jobs are given back, so that
 * the nodes holding the slots deliver them (giveBackForSlots).
 *
 * Invariants:
 * - With slots, connections to a destination from all nodes together never exceed its cap
 *   (the largest cap any node uses, when nodes are throttled differently); a connection whose
 *   slot lease is no longer sure closes after the transaction in hand.
 * - Connections to a destination never exceed its cap (the throttled one while throttled: runners
 *   above it close after their message); connections in total never exceed the global cap
 *   (counted from the moment a connection is being opened until it is closed).
 * - A job goes onto a connection only with a token of its destination's rate.
 * - Every submitted job is answered exactly once: replies for all its recipients, or `released`
 *   when the dispatcher stops before the job started (its lease is given back, no attempt made).
 * - After `destinationFailureThreshold` consecutive connection-level failures (every address
 *   refused, timed out, answered 4xx to the greeting, or DNS failed temporarily) the whole
 *   destination is suspended: its waiting jobs are answered at once with a deferral, and
 *   onSuspend() lets the store hold back its queued mail, instead of hammering it message by message.
 * - Every address answering the greeting with 5xx bounces the job's recipients with that reply.
 */
import { performance } from "node:perf_hooks";
import type { DeliveryConfig } from "../config/delivery-schema.js";
import type { DnsResolver } from "../dns/types.js";
import type { Logger } from "../log.js";
import { destinationWait, type RetryPolicy } from "../queue/backoff.js";
import { type ConnectDeps, openSession, resolveCandidates } from "./connect.js";
import type { DispatchJob, JobResult, ThrottleEvent, ThrottleSnapshot } from "./jobs.js";
import type { MxOutcome } from "./mx.js";
import { compileSites, type ShapingLimits, type SiteResolver } from "./providers.js";
import type { ResolvedRoute } from "./routes.js";
import type { ConnectionSlots, SlotHandle } from "./slots.js";
import { local, type Reply, type SmtpSession } from "./smtp-client.js";
import { SourcePool } from "./sources.js";
import { answer, bySender, everyone, preflight } from "./transaction.js";

export type { AttemptInfo, DispatchJob, JobResult, ThrottleEvent, ThrottleSnapshot } from "./jobs.js";
export { needsSmtpUtf8 } from "./transaction.js";

import { type CausedChange, Shaping } from "./shaping.js";
import { describeLimits } from "./throttle.js";

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
  /** Is this reply a throttle (bounce class `reputation`)? Default: never (no adaptive throttling). */
  readonly isThrottle?: (reply: Reply) => boolean;
  /** A destination's throttled limits changed (logged here already). */
  readonly onThrottle?: (event: ThrottleEvent) => void;
  /** Monotonic clock (ms) for rates, holds and idle timers; default performance.now. */
  readonly monotonic?: () => number;
  /** Cluster-wide connection slots (PostgreSQL store); absent: this node's counts are the cap. */
  readonly slots?: ConnectionSlots;
}

interface Pending {
  readonly job: DispatchJob;
  readonly resolve: (result: JobResult) => void;
  /** Candidates looked up when the job was placed (MX destinations). */
  readonly mx?: MxOutcome | undefined;
  /** When it joined its destination's queue (performance.now()). */
  readonly queuedAt: number;
}

/** A job that waited longer than this for its transaction to start is logged (starvation). */
const LONG_WAIT_MS = 5_000;

interface Destination {
  readonly key: string;
  readonly route: ResolvedRoute;
  readonly provider: string | null;
  readonly shaping: Shaping;
  /** Pump again when the next token is due (a rate-limited destination with jobs waiting). */
  wakeTimer: NodeJS.Timeout | undefined;
  readonly queue: Pending[];
  /** Runners waiting idle for a job: call with the job, or undefined to close. */
  readonly idle: Array<(next: Pending | undefined) => void>;
  active: number;
  failures: number;
  lastError: string;
  suspendedUntil: number;
  /** Cluster: every slot was held elsewhere; no new connection before this time (monotonic). */
  slotWaitUntil: number;
  /** Cluster: since when every try for a slot failed with none held here (0: not waiting). */
  slotWaitSince: number;
  /** Cluster: jobs were given back for want of a slot; claims skip it until then (monotonic). */
  slotSkipUntil: number;
  /** Connections of this node to it that hold a slot. */
  slotted: number;
  /**
   * Recipient domains seen lately for this destination (a relay or a provider serves many), the
   * most recent MAX_DOMAINS: what claims skip and backoff is written for, kept bounded.
   */
  readonly domains: Set<string>;
}

export interface DispatcherStats {
  connectionsOpened: number;
  transactions: number;
  peakConnections: number;
  /** Cluster: jobs given back because every slot of their destination stayed held elsewhere. */
  slotGiveBacks: number;
  /** Jobs whose transaction started more than LONG_WAIT_MS after they were queued (each logged). */
  longWaits: number;
}

/** Failed slot tries (slotRetryMs apart) before a destination's waiting jobs are given back. */
const SLOT_GIVE_BACK_TRIES = 8;

/** Most recipient domains a destination remembers (a provider hosts hundreds of thousands). */
const MAX_DOMAINS = 1000;

/** Adds or refreshes `domain`, forgetting the least recently seen beyond MAX_DOMAINS. */
function rememberDomain(domains: Set<string>, domain: string): void {
  domains.delete(domain);
  domains.add(domain);
  if (domains.size > MAX_DOMAINS) domains.delete(domains.values().next().value!);
}

export class Dispatcher {
  private readonly deps: DispatcherDeps;
  private readonly destinations = new Map<string, Destination>();
  private readonly sources: SourcePool;
  private readonly sites: SiteResolver;
  private readonly connect: ConnectDeps;
  private readonly policy: RetryPolicy;
  private readonly sessions = new Set<SmtpSession>();
  private readonly clock: () => number;
  private active = 0;
  private stopping = false;
  private idleWaiters: Array<() => void> = [];
  readonly stats: DispatcherStats = {
    connectionsOpened: 0,
    transactions: 0,
    peakConnections: 0,
    slotGiveBacks: 0,
    longWaits: 0,
  };

  constructor(deps: DispatcherDeps) {
    this.deps = deps;
    this.sources = new SourcePool(deps.config.sources, deps.hostname);
    this.sites = compileSites(deps.config);
    this.policy = { schedule: deps.config.retrySchedule, jitter: deps.config.retryJitter };
    this.clock = deps.monotonic ?? (() => performance.now());
    this.connect = {
      config: deps.config,
      resolver: deps.resolver,
      hostname: deps.hostname,
      logger: deps.logger,
      ca: deps.ca,
      random: deps.random,
      sources: this.sources,
    };
  }

  /** Delivers one job; resolves once every recipient has a reply (or the job was released). */
  submit(job: DispatchJob): Promise<JobResult> {
    return new Promise((resolve) => {
      if (this.stopping) return resolve({ kind: "released" });
      this.place(job).then(
        ({ dest, mx }) => {
          if (this.stopping) return resolve({ kind: "released" });
          if (!dest) {
            // The domain has no usable MX (NXDOMAIN, null MX): nothing to connect to.
            const reply = mx?.kind === "permanent" ? local(mx.code, mx.enhanced, mx.message) : undefined;
            return resolve(answer(job, reply ?? local(451, "4.4.3", "no destination")));
          }
          rememberDomain(dest.domains, job.domain);
          if (dest.suspendedUntil > this.deps.now()) return resolve(this.suspended(dest, job));
          if (mx?.kind === "temporary") {
            // The MX lookup failed: a deferral now, no connection (RFC 5321 §5.1: try again later).
            const reply = local(451, mx.enhanced, mx.message);
            this.failed(dest, reply);
            const notBefore = dest.suspendedUntil > this.deps.now() ? dest.suspendedUntil : null;
            return resolve(answer(job, reply, notBefore));
          }
          dest.queue.push({ job, resolve, mx, queuedAt: performance.now() });
          this.pump();
        },
        (err: unknown) => {
          this.deps.logger.error({ err, queueId: job.messageId }, "could not place delivery job");
          resolve(answer(job, local(451, "4.3.0", "local error during delivery")));
        },
      );
    });
  }

  /** The destination of a job: its MX site for MX routes (resolving the MX hosts), else the route's. */
  private async place(job: DispatchJob): Promise<{ dest: Destination | undefined; mx?: MxOutcome }> {
    const route = job.route;
    const routeLimits: ShapingLimits = {
      maxConnections: route.maxConnections,
      maxMessagesPerConnection: route.maxMessagesPerConnection,
      maxMessagesPerMinute: route.maxMessagesPerMinute,
    };
    if (route.transport === "relay") {
      return { dest: this.destination(route.destination, route, null, routeLimits) };
    }
    const mx = await resolveCandidates(this.connect, route, job.domain);
    if (mx.kind === "permanent") return { dest: undefined, mx };
    if (mx.kind === "temporary") {
      // No site to count it against: counted (and suspended) under the domain's own name.
      return { dest: this.destination(`domain:${job.domain}`, route, null, routeLimits), mx };
    }
    const hosts = [...new Set(mx.candidates.map((c) => c.host))];
    const site = this.sites(hosts, routeLimits);
    // A domain with a route of its own (port, TLS policy, limits) never shares connections with others.
    const key = route.match === "default" ? site.key : `${site.key}|route:${route.match}`;
    return { dest: this.destination(key, route, site.provider, site.limits), mx };
  }

  /** Recipient domains whose destinations already have `threshold` or more jobs waiting. */
  saturatedDomains(threshold: (route: ResolvedRoute) => number): string[] {
    const out: string[] = [];
    for (const dest of this.destinations.values()) {
      if (
        dest.queue.length >= threshold(dest.route) ||
        dest.suspendedUntil > this.deps.now() ||
        dest.slotSkipUntil > this.clock()
      ) {
        // A loop, not push(...spread): a provider rule can hold more domains than a call's arguments.
        for (const domain of dest.domains) out.push(domain);
      }
    }
    return out;
  }

  /** Destinations running under throttled limits now. */
  throttles(): ThrottleSnapshot[] {
    return [...this.destinations.values()].flatMap((d) => {
      const now = d.shaping.snapshot();
      return now ? [{ destination: d.key, provider: d.provider, domains: [...d.domains], ...now }] : [];
    });
  }

  get connections(): number {
    return this.active;
  }

  /** Jobs waiting for a connection, over every destination (tests and metrics). */
  get waitingJobs(): number {
    let n = 0;
    for (const dest of this.destinations.values()) n += dest.queue.length;
    return n;
  }

  /** Stops taking jobs: waiting ones are released, idle connections closed; resolves when idle. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const dest of this.destinations.values()) {
      clearTimeout(dest.wakeTimer);
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

  private destination(
    key: string,
    route: ResolvedRoute,
    provider: string | null,
    limits: ShapingLimits,
  ): Destination {
    let dest = this.destinations.get(key);
    if (!dest) {
      dest = {
        key,
        route,
        provider,
        shaping: new Shaping(limits, this.deps.config.throttle, this.clock),
        wakeTimer: undefined,
        queue: [],
        idle: [],
        active: 0,
        failures: 0,
        lastError: "",
        suspendedUntil: 0,
        slotWaitUntil: 0,
        slotWaitSince: 0,
        slotSkipUntil: 0,
        slotted: 0,
        domains: new Set(),
      };
      this.destinations.set(key, dest);
    }
    return dest;
  }

  /**
   * Hands waiting jobs to idle connections and starts connections where the caps allow, each job
   * with a token of its destination's rate; frees idle slots for waiting destinations.
   */
  private pump(): void {
    if (this.stopping) return;
    const globalCap = this.deps.config.maxConnections;
    let starved = false;
    for (const dest of this.destinations.values()) {
      while (dest.queue.length > 0) {
        const idle = dest.idle.length > 0;
        if (!idle && dest.active >= dest.shaping.cap) break;
        if (!idle && dest.slotWaitUntil > this.clock()) {
          this.wakeLater(dest, dest.slotWaitUntil - this.clock());
          break;
        }
        if (!idle && this.active >= globalCap) {
          starved = true;
          break;
        }
        const wait = dest.shaping.take();
        if (wait > 0) {
          this.wakeLater(dest, wait);
          break;
        }
        const next = dest.queue.shift()!;
        if (idle) dest.idle.shift()!(next);
        else this.startRunner(dest, next);
      }
    }
    if (starved) {
      // Under the global cap, an idle connection elsewhere gives its slot to waiting work.
      for (const dest of this.destinations.values()) {
        if (dest.queue.length === 0 && dest.idle.length > 0) dest.idle.shift()!(undefined);
      }
    }
  }

  private wakeLater(dest: Destination, ms: number): void {
    if (dest.wakeTimer) return;
    dest.wakeTimer = setTimeout(() => {
      dest.wakeTimer = undefined;
      this.pump();
    }, ms);
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
        current.job.resolve(answer(current.job.job, local(451, "4.3.0", "local error during delivery")));
      })
      .finally(() => {
        this.active--;
        dest.active--;
        // Forget a destination with nothing left to remember, so the map does not grow with every
        // domain ever seen (a failing or throttled one stays: its state matters).
        if (
          dest.active === 0 &&
          dest.queue.length === 0 &&
          dest.idle.length === 0 &&
          dest.failures === 0 &&
          dest.shaping.forgettable &&
          !dest.wakeTimer &&
          dest.slotSkipUntil <= this.clock()
        ) {
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

  /** One connection's life: a cluster slot (if any), connect for the first job, then reuse it for more. */
  private async run(dest: Destination, current: { job: Pending }): Promise<void> {
    const slots = this.deps.slots;
    if (!slots) return this.connection(dest, current, undefined);
    const slot = await slots.acquire(dest.key, dest.shaping.cap);
    if (!slot || this.stopping) {
      if (slot) slots.release(slot);
      if (this.stopping) current.job.resolve({ kind: "released" });
      else {
        // Every slot is held (by other nodes): the job waits at the front, its token given back.
        dest.queue.unshift(current.job);
        dest.shaping.untake();
        const now = this.clock();
        const retry = this.deps.config.slotRetryMs;
        dest.slotWaitUntil = now + retry;
        if (dest.slotted > 0) dest.slotWaitSince = 0;
        else if (dest.slotWaitSince === 0) dest.slotWaitSince = now;
        else if (now - dest.slotWaitSince >= SLOT_GIVE_BACK_TRIES * retry) this.giveBackForSlots(dest, now);
      }
      return;
    }
    dest.slotWaitSince = 0;
    dest.slotted++;
    try {
      await this.connection(dest, current, slot);
    } finally {
      dest.slotted--;
      slots.release(slot);
    }
  }

  /**
   * The nodes that hold this destination's slots keep them while they have its mail (connection
   * reuse), so jobs claimed here could wait for a slot until their load ends. Give them back
   * instead (due at once, the claim not counted as an attempt), and claim none for it for a
   * while (the destination is remembered until then): the slot holders then take them in due
   * order with everything else.
   */
  private giveBackForSlots(dest: Destination, now: number): void {
    dest.slotWaitSince = 0;
    dest.slotSkipUntil = now + SLOT_GIVE_BACK_TRIES * this.deps.config.slotRetryMs;
    const jobs = dest.queue.splice(0);
    this.stats.slotGiveBacks += jobs.length;
    for (const p of jobs) p.resolve({ kind: "released" });
  }

  private longWait(dest: Destination, job: Pending, now: number): void {
    this.stats.longWaits++;
    this.deps.logger.warn(
      {
        destination: dest.key,
        queueId: job.job.messageId,
        waitedMs: Math.round(now - job.queuedAt),
        queued: dest.queue.length,
        connections: dest.active,
        slotted: dest.slotted,
      },
      "a delivery job waited long for a connection",
    );
  }

  private async connection(
    dest: Destination,
    current: { job: Pending },
    slot: SlotHandle | undefined,
  ): Promise<void> {
    const first = current.job;
    const started = performance.now();
    const opened = await openSession(this.connect, dest.route, first.job.domain, first.mx, dest.key);
    if (opened.kind !== "ok") {
      const attempt = { ...opened.attempt, durationMs: performance.now() - started };
      if (opened.atGreeting && this.isThrottle(opened.reply)) {
        this.throttleChanged(
          dest,
          first.job,
          dest.shaping.throttle(opened.reply, first.job.recipients[0]!, this.deps.now()),
        );
      }
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
    this.stats.connectionsOpened++;
    const session = opened.session;
    this.sessions.add(session);
    this.recovered(dest);
    let sent = 0;
    let next: Pending | undefined = first;
    try {
      while (next) {
        const t0 = next === first ? started : performance.now();
        if (t0 - next.queuedAt > LONG_WAIT_MS) this.longWait(dest, next, t0);
        current.job = next;
        const result = await this.deliver(session, next.job, t0);
        if (result.kind === "done") {
          const isThrottle = (reply: Reply) => this.isThrottle(reply);
          this.throttleChanged(
            dest,
            next.job,
            dest.shaping.finished(result.replies, isThrottle, this.deps.now()),
          );
        }
        next.resolve(result);
        sent++;
        if (sent >= dest.shaping.limits.maxMessagesPerConnection || !session.usable || this.stopping) break;
        // Throttled to fewer connections: the ones above the cap close after their message.
        if (dest.active > dest.shaping.cap) break;
        if (slot && !this.deps.slots!.valid(slot)) break;
        next = await this.nextJob(dest);
        if (next && slot && !this.deps.slots!.valid(slot)) {
          // The slot's lease lapsed while idle: the job goes back for a connection with a slot.
          dest.queue.unshift(next);
          next = undefined;
        }
      }
    } finally {
      this.sessions.delete(session);
      await session.close();
    }
  }

  /** The next job for this connection (with a rate token), or undefined after idleTimeoutMs (or when told to close). */
  private nextJob(dest: Destination): Promise<Pending | undefined> {
    if (dest.queue.length > 0) {
      const wait = dest.shaping.take();
      if (wait === 0) return Promise.resolve(dest.queue.shift());
      this.wakeLater(dest, wait);
    }
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

  private isThrottle(reply: Reply): boolean {
    const { isThrottle } = this.deps;
    return reply.code >= 400 && reply.code < 500 && isThrottle?.(reply) === true;
  }

  /** Logs a throttle change, reports it, and lets more work start if the limits rose. */
  private throttleChanged(dest: Destination, job: DispatchJob, change: CausedChange | null): void {
    if (!change) return;
    const holdUntil = change.kind === "lowered" ? this.deps.now() + this.deps.config.throttle.holdMs : null;
    const what =
      change.kind === "restored"
        ? `back to its configured limits (${describeLimits(change.to)})`
        : `${change.kind} from ${describeLimits(change.from)} to ${describeLimits(change.to)}`;
    const cause = change.kind === "lowered" ? ` after "${change.reply}"` : "";
    this.deps.logger.warn(
      {
        destination: dest.key,
        provider: dest.provider,
        queueId: job.messageId,
        throttle: change.kind,
        reply: change.reply,
      },
      `destination ${dest.provider ?? dest.key} throttled: ${what}${cause}`,
    );
    this.deps.onThrottle?.({
      ...change,
      destination: dest.key,
      provider: dest.provider,
      domains: [...dest.domains],
      messageId: job.messageId,
      at: this.deps.now(),
      holdUntil,
      configured: dest.shaping.configured,
      throttleReply: dest.shaping.lastThrottle.reply,
      since: dest.shaping.lastThrottle.since,
    });
    this.pump();
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

/**
 * The delivery worker: claims due recipients from the store with a lease, groups them into jobs
 * (one message, one destination), hands the jobs to the dispatcher, and writes each recipient's
 * outcome back: 2xx delivered, 5xx bounced, anything else deferred by the retry schedule until
 * the message expires. It speaks no SMTP; the dispatcher (src/delivery) does.
 *
 * Invariants:
 * - Leases: every recipient this worker holds is leased to `owner` and renewed every leaseMs/3
 *   while held; a worker that dies simply stops renewing, and the work is due again at expiry.
 *   The owner is unique per process (node id, pid, random). At start on SQLite — where serve's
 *   exclusive lock proves the earlier holders dead — a node gives back the leases of its
 *   previous incarnations (owner prefix = node id), so a restart after kill -9 resumes at once.
 * - Outcomes are committed in groups (one transaction per turn of the event loop, like the
 *   spool's group commit) through Store.recordOutcomes, the one place a delivery changes state.
 *   The window between a remote 250 and that commit is where a crash can cause one duplicate.
 * - A recipient is held in memory once: claims skip ids already in flight, until their outcome
 *   is committed.
 * - Issue 11: a claim counts as an unfinished attempt in the store before the attempt starts; an
 *   outcome clears it, and a job the dispatcher releases unstarted is given back (giveBack) so it
 *   does not count. A message whose attempts crash or hang the worker is thus counted, and held
 *   after MAX_UNFINISHED_ATTEMPTS (src/store/sqlite/queue.ts) instead of crashing workers forever.
 * - Issue 11: the DSN to the sender (bounces.notifySender) is built here and committed with the
 *   bounce or expiry it reports, in the one recordOutcomes() transaction.
 */
import { randomBytes } from "node:crypto";
import { type Classifier, classifyBounce } from "../bounces/classify.js";
import type { FailedRecipient, OriginalMessage } from "../bounces/notify.js";
import type { ReturnPaths } from "../bounces/return-path.js";
import type { DeliveryConfig } from "../config/delivery-schema.js";
import { deliveryLogLine } from "../delivery/delivery-log.js";
import type { DispatchJob, JobResult } from "../delivery/dispatcher.js";
import type { ResolvedRoute, RouteResolver } from "../delivery/routes.js";
import type { Reply } from "../delivery/smtp-client.js";
import type { Logger } from "../log.js";
import type {
  ClaimedRecipient,
  NewMessage,
  OutcomeNotification,
  OutcomeState,
  RecipientOutcome,
  Store,
} from "../store/types.js";
import { deferral, type RetryPolicy } from "./backoff.js";

/** What the worker needs from the dispatcher (src/delivery/dispatcher.ts). */
export interface JobDispatcher {
  submit(job: DispatchJob): Promise<JobResult>;
  saturatedDomains(threshold: (route: ResolvedRoute) => number): string[];
  stop(graceMs: number): Promise<void>;
}

export interface WorkerDeps {
  readonly store: Store;
  readonly dispatcher: JobDispatcher;
  readonly routes: RouteResolver;
  readonly config: DeliveryConfig;
  /** Stable per node (the hostname): the prefix of this worker's lease owner. */
  readonly nodeId: string;
  /**
   * Set when the store wakes the worker as work becomes due (PostgreSQL's NOTIFY, via poke()):
   * claims that find nothing then space out, doubling from delivery.pollIntervalMs up to this,
   * since the wake-up, not the poll, brings new mail. Absent: poll at pollIntervalMs always.
   */
  readonly idlePollMaxMs?: number;
  readonly logger: Logger;
  readonly now?: () => number;
  readonly random?: () => number;
  // Issue 5 (bounces): classification of every reply that is not a delivery, VERP return paths,
  // and a hook for recipients that bounced or expired (DSNs to senders, bounces.notifySender).
  /** Default: the built-in table (src/bounces/rules.ts). */
  readonly classify?: Classifier;
  /** Absent: every delivery uses the submitted envelope sender. */
  readonly returnPaths?: ReturnPaths;
  /** Builds the DSN about recipients that bounced or expired (bounces.notifySender), committed with them. */
  readonly notification?: (
    original: OriginalMessage,
    failed: readonly FailedRecipient[],
  ) => NewMessage | null;
}

export interface WorkerStats {
  claimed: number;
  delivered: number;
  deferred: number;
  bounced: number;
  expired: number;
  commits: number;
}

/** Most recipients claimed in one query. */
const CLAIM_BATCH = 500;

export class DeliveryWorker {
  readonly owner: string;
  readonly stats: WorkerStats = { claimed: 0, delivered: 0, deferred: 0, bounced: 0, expired: 0, commits: 0 };
  private readonly deps: WorkerDeps;
  private readonly now: () => number;
  private readonly policy: RetryPolicy;
  private readonly classify: Classifier;
  private readonly inFlight = new Set<number>();
  private readonly jobs = new Set<Promise<void>>();
  private pendingOutcomes: RecipientOutcome[] = [];
  /** What the DSN needs about a pending bounced/expired outcome, by recipient id. */
  private readonly pendingFailures = new Map<
    number,
    { readonly failure: FailedRecipient; readonly original: OriginalMessage }
  >();
  private committing: Promise<void> | undefined;
  private running = false;
  private wake: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  /** Claims failed in a row (the store unreachable); logged once, then every 600th. */
  private claimFailures = 0;
  /** Called after each commit of outcomes (tests and benchmarks wait on it). */
  onCommit: ((outcomes: readonly RecipientOutcome[]) => void) | undefined;

  constructor(deps: WorkerDeps) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
    this.owner = `${deps.nodeId}:${process.pid}:${randomBytes(4).toString("hex")}`;
    this.policy = { schedule: deps.config.retrySchedule, jitter: deps.config.retryJitter };
    this.classify = deps.classify ?? classifyBounce;
  }

  async start(): Promise<void> {
    // Only a dead owner's leases may be given back (issue 13 item 5). On SQLite `serve` holds an
    // exclusive lock on the database (src/app/serve-lock.ts), so every lease of this node there
    // is from an earlier run. On PostgreSQL another live process may share the host name: its
    // leases are left to expire instead (at most leaseMs late, never a second delivery).
    if (this.deps.store.kind === "sqlite") {
      const recovered = await this.deps.store.releaseLeases(`${this.deps.nodeId}:`, this.now());
      if (recovered > 0) this.deps.logger.info({ recovered }, "recovered leases of a previous run");
    }
    this.running = true;
    const renewEvery = Math.max(50, Math.floor(this.deps.config.leaseMs / 3));
    this.renewTimer = setInterval(() => void this.renew(), renewEvery);
    this.renewTimer.unref();
    this.loopDone = this.loop();
  }

  /** Look for due work now rather than at the next poll. */
  poke(): void {
    this.wake?.();
  }

  /** Recipients claimed and not yet committed. */
  get held(): number {
    return this.inFlight.size;
  }

  /**
   * Stops claiming, lets transactions in flight finish within `graceMs`, commits their outcomes
   * and gives back every lease still held (those recipients are due again at once).
   */
  async stop(graceMs: number): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.wake?.();
    await this.loopDone;
    await this.deps.dispatcher.stop(graceMs);
    await Promise.all([...this.jobs]);
    await this.flush();
    clearInterval(this.renewTimer);
    await this.deps.store.releaseLeases(this.owner, this.now());
  }

  /** Resolves once every outcome handed over so far is committed. */
  async flush(): Promise<void> {
    while (this.committing || this.pendingOutcomes.length > 0) {
      if (this.committing) await this.committing;
      else this.scheduleCommit();
    }
  }

  private async loop(): Promise<void> {
    const { config, store, dispatcher } = this.deps;
    const threshold = (route: ResolvedRoute) => Math.max(100, route.maxConnections * 50);
    // Real time (not this.now(), which tests may fix): only the spacing of claims depends on it.
    let lastClaim = Number.NEGATIVE_INFINITY;
    let lastWasFull = false;
    let idlePoll = config.pollIntervalMs;
    while (this.running) {
      let claimed: ClaimedRecipient[] = [];
      // delivery.claimGapMs: a claim soon after a partial one waits out the gap (a full one means
      // more is due now, so the next claim goes at once).
      const gap = config.claimGapMs - (performance.now() - lastClaim);
      if (gap > 0 && !lastWasFull) await new Promise((resolve) => setTimeout(resolve, gap));
      if (!this.running) break;
      const limit = Math.min(CLAIM_BATCH, config.maxInFlight - this.inFlight.size);
      lastClaim = performance.now();
      if (limit > 0) {
        try {
          claimed = await store.claimDue({
            owner: this.owner,
            now: this.now(),
            leaseMs: config.leaseMs,
            limit,
            skipDomains: dispatcher.saturatedDomains(threshold),
          });
          if (this.claimFailures > 0) {
            this.deps.logger.info({ failures: this.claimFailures }, "claiming due mail again");
            this.claimFailures = 0;
          }
        } catch (err) {
          // Store unreachable (issue 8): one error line, then one per 600 failures (about a
          // minute), not one per poll; and a pause of at least 100 ms before the next try.
          if (this.claimFailures++ % 600 === 0)
            this.deps.logger.error({ err, failures: this.claimFailures }, "could not claim due mail");
          await this.sleep(Math.max(config.pollIntervalMs, 100));
        }
        claimed = claimed.filter((r) => !this.inFlight.has(r.id));
        if (claimed.length > 0) {
          try {
            await this.dispatch(claimed);
          } catch (err) {
            // Could not even start (the store failed reading content): forget them here; their
            // leases expire and they are claimed again.
            this.deps.logger.error({ err }, "could not dispatch claimed mail");
            for (const r of claimed) this.inFlight.delete(r.id);
          }
        }
      }
      lastWasFull = limit > 0 && claimed.length >= limit;
      // Idle backoff (idlePollMaxMs): what only polling finds (retries coming due, a dead
      // node's expired leases) is found at most that much later; a wake-up claims at once.
      const maxIdle = this.deps.idlePollMaxMs ?? config.pollIntervalMs;
      idlePoll = claimed.length === 0 && limit > 0 ? Math.min(idlePoll * 2, maxIdle) : config.pollIntervalMs;
      if (claimed.length < limit || limit <= 0) {
        const woken = await this.sleep(claimed.length === 0 ? idlePoll : config.pollIntervalMs);
        if (woken) idlePoll = config.pollIntervalMs;
      } else await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Sleeps `ms`, or less if woken (poke, stop): resolves true when woken. */
  private sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), ms);
      function done(woken: boolean) {
        clearTimeout(timer);
        resolve(woken);
      }
      this.wake = () => {
        this.wake = undefined;
        done(true);
      };
    });
  }

  private async dispatch(claimed: readonly ClaimedRecipient[]): Promise<void> {
    this.stats.claimed += claimed.length;
    for (const r of claimed) this.inFlight.add(r.id);
    // One job per message and destination; a repeated address goes into a job of its own, since
    // replies are matched to recipients by address.
    const groups = new Map<string, { route: ResolvedRoute; recipients: ClaimedRecipient[] }>();
    for (const r of claimed) {
      const route = this.deps.routes(r.domain);
      let key = `${r.messageId}\0${route.destination}\0${r.domain}`;
      while (groups.get(key)?.recipients.some((x) => x.address === r.address)) key += "+";
      const group = groups.get(key) ?? { route, recipients: [] };
      group.recipients.push(r);
      groups.set(key, group);
    }
    // Asked for together: the PostgreSQL store answers them in one statement, not one per message.
    const ids = [...new Set(claimed.map((r) => r.messageId))];
    const read = await Promise.all(ids.map((id) => this.deps.store.getMessageContent(id)));
    const contents = new Map(ids.map((id, i) => [id, read[i]]));
    for (const { route, recipients } of groups.values()) {
      const first = recipients[0]!;
      const content = contents.get(first.messageId);
      if (!content) {
        // Dropped by an operator meanwhile: nothing to deliver, and the store already ended it.
        for (const r of recipients) this.inFlight.delete(r.id);
        continue;
      }
      const job: DispatchJob = {
        messageId: first.messageId,
        mailFrom: first.mailFrom,
        content,
        domain: first.domain,
        recipients: recipients.map((r) => r.address),
        route,
        returnPaths: await this.returnPathsFor(first, content, recipients),
      };
      const startedAt = this.now();
      const done = this.deps.dispatcher
        .submit(job)
        .then((result) => this.settle(recipients, result, startedAt, content))
        .catch((err: unknown) => {
          // A bug, not a remote answer: keep the lease; the recipients come back when it expires.
          this.deps.logger.error({ err, queueId: job.messageId }, "delivery job failed");
        })
        .finally(() => this.jobs.delete(done));
      this.jobs.add(done);
    }
  }

  private settle(
    recipients: readonly ClaimedRecipient[],
    result: JobResult,
    startedAt: number,
    content: Buffer,
  ): void {
    if (result.kind === "released") {
      // Never started: the lease goes back and the claim does not count as an unfinished attempt.
      const ids = recipients.map((r) => r.id);
      this.deps.store
        .giveBack(ids, this.owner, this.now())
        .catch((err: unknown) => this.deps.logger.warn({ err }, "could not give back leases"))
        .finally(() => {
          for (const id of ids) this.inFlight.delete(id);
        });
      return;
    }
    const now = this.now();
    const a = result.attempt;
    for (const r of recipients) {
      const reply: Reply = result.replies.get(r.address) ?? {
        code: 451,
        enhanced: "4.3.0",
        text: "451 4.3.0 no reply recorded for this recipient",
      };
      let state: OutcomeState;
      let nextAttemptAt: number | null = null;
      if (reply.code >= 200 && reply.code < 300) state = "delivered";
      else if (reply.code >= 500) state = "bounced";
      else {
        const d = deferral(this.policy, r.attempts + 1, now, r.expiresAt, this.deps.random);
        state = d.state;
        nextAttemptAt = d.nextAttemptAt;
        if (nextAttemptAt !== null && result.notBefore !== null) {
          nextAttemptAt = Math.min(Math.max(nextAttemptAt, result.notBefore), r.expiresAt);
        }
      }
      this.stats[state]++;
      const bounce =
        state === "delivered"
          ? undefined
          : this.classify({ code: reply.code, enhanced: reply.enhanced, text: reply.text });
      if ((state === "bounced" || state === "expired") && this.deps.notification) {
        this.pendingFailures.set(r.id, {
          failure: {
            address: r.address,
            reply: reply.text,
            status: reply.enhanced,
            remoteMta: a.mxHost,
            at: now,
            expired: state === "expired",
          },
          original: {
            id: r.messageId,
            accountId: r.accountId,
            mailFrom: r.mailFrom,
            receivedAt: r.receivedAt,
            content,
          },
        });
      }
      this.pendingOutcomes.push({
        recipientId: r.id,
        owner: this.owner,
        state,
        nextAttemptAt,
        attempt: {
          at: startedAt,
          durationMs: a.durationMs,
          mxHost: a.mxHost,
          ip: a.ip,
          port: a.port,
          sourceIp: a.sourceIp,
          tls: a.tls,
          reply: reply.text,
        },
        bounceClass: bounce?.class ?? null,
        bounceHard: bounce ? state === "bounced" && bounce.hard : null,
      });
      const line = deliveryLogLine({
        queueId: r.messageId,
        to: r.address,
        mxHost: a.mxHost,
        ip: a.ip,
        port: a.port,
        delay: (now - r.receivedAt) / 1000,
        tls: a.tls,
        dsn: reply.enhanced,
        state,
        reply: reply.text,
      });
      const fields = {
        queueId: r.messageId,
        to: r.address,
        status: state,
        relay: a.mxHost,
        ip: a.ip,
        ...(bounce ? { bounceClass: bounce.class } : {}),
      };
      if (state === "delivered") this.deps.logger.info(fields, line);
      else this.deps.logger.warn(fields, line);
    }
    this.scheduleCommit();
  }

  /** Group commit: every outcome settled in this turn of the event loop shares one transaction. */
  private scheduleCommit(): void {
    if (this.committing || this.pendingOutcomes.length === 0) return;
    this.committing = new Promise<void>((resolve) => {
      setImmediate(() => {
        const batch = this.pendingOutcomes;
        this.pendingOutcomes = [];
        this.deps.store
          .recordOutcomes(batch, this.notifications(batch))
          .then(
            () => {
              this.stats.commits++;
              this.onCommit?.(batch);
            },
            (err: unknown) => {
              // The leases stay; the recipients are due again when they expire (maybe a duplicate).
              this.deps.logger.error({ err, outcomes: batch.length }, "could not record delivery outcomes");
            },
          )
          .finally(() => {
            for (const o of batch) {
              this.inFlight.delete(o.recipientId);
              this.pendingFailures.delete(o.recipientId);
            }
            this.committing = undefined;
            resolve();
            this.scheduleCommit();
          });
      });
    });
  }

  /** The VERP return paths of a job, or undefined (the submitted sender) when none apply or they cannot be read. */
  private async returnPathsFor(
    first: ClaimedRecipient,
    content: Buffer,
    recipients: readonly ClaimedRecipient[],
  ): Promise<ReadonlyMap<string, string> | undefined> {
    if (!this.deps.returnPaths) return undefined;
    try {
      return await this.deps.returnPaths.forMessage(first.messageId, first.mailFrom, content, recipients);
    } catch (err) {
      this.deps.logger.warn({ err, queueId: first.messageId }, "could not choose a VERP return path");
      return undefined;
    }
  }

  /** One DSN per message for the bounced/expired recipients of a batch (none for a sender <>). */
  private notifications(batch: readonly RecipientOutcome[]): OutcomeNotification[] {
    const build = this.deps.notification;
    if (!build) return [];
    const byMessage = new Map<
      string,
      { original: OriginalMessage; failed: FailedRecipient[]; ids: number[] }
    >();
    for (const o of batch) {
      const f = this.pendingFailures.get(o.recipientId);
      if (!f) continue;
      const group = byMessage.get(f.original.id) ?? { original: f.original, failed: [], ids: [] };
      group.failed.push(f.failure);
      group.ids.push(o.recipientId);
      byMessage.set(f.original.id, group);
    }
    const out: OutcomeNotification[] = [];
    for (const { original, failed, ids } of byMessage.values()) {
      try {
        const message = build(original, failed);
        if (message) out.push({ message, recipientIds: ids });
      } catch (err) {
        // A DSN we cannot build must not keep the outcomes from being recorded.
        this.deps.logger.error({ err, queueId: original.id }, "could not build the DSN to the sender");
      }
    }
    return out;
  }

  private async renew(): Promise<void> {
    if (this.inFlight.size === 0) return;
    try {
      await this.deps.store.renewLeases(this.owner, this.now() + this.deps.config.leaseMs);
    } catch (err) {
      this.deps.logger.warn({ err }, "could not renew leases");
    }
  }
}

/**
 * The webhook dispatcher: reads the event log after each active endpoint's cursor and POSTs the
 * events, signed, in batches (maxBatchEvents, or once the oldest has waited batchWindowMs).
 *
 * Invariants:
 * - At least once: the event log is the outbox (events are written in the transaction of their
 *   state change) and an endpoint's cursor moves only after a 2xx for the batch, so an event is
 *   sent after any crash, and a batch acknowledged but not yet recorded is sent again with the
 *   same event ids (receivers de-duplicate by id).
 * - Ordered per endpoint by event id: one POST in flight per endpoint, batches in id order, and a
 *   failed batch is retried before anything after it.
 * - Retries: a failed POST (non-2xx, timeout, refused) waits by `retrySchedule` (with jitter);
 *   an endpoint with no success for `disableAfterMs` (72 h) since its first failure is disabled,
 *   logged at warn and recorded in the store (webhooks.disabled_*, a `disabled` delivery record).
 * - One node at a time (issue 8 item 4): an endpoint is served under a lease in the store
 *   ("webhook:<id>", Store.takeLease), taken before its cursor is read and renewed before a POST
 *   whenever less than half of it is left; leaseMs is at least twice the POST's timeout, so the
 *   lease outlasts every POST, and while this node lives no other node sends the same batch. Only
 *   after a lease expiry (this node died or stalled between a POST and its record) is a batch sent
 *   again, by the next holder, with the same event ids.
 * - Lease writes are few (issue 12): a renewal at every POST and a take and a give-back at every
 *   poll were ~100 write transactions a second on the main thread under bench:relay, each waiting
 *   on SQLite's write lock (1 ms sleeps) while the commit and delivery threads held it. So the
 *   lease is renewed only when half of it is gone, and kept across polls while the endpoint has a
 *   batch due within half the lease (the next poll serves it anyway); it is given back when the
 *   endpoint is caught up, failing or waiting longer, and at stop().
 * - Endpoints are read from the store at every poll, so `petrel webhooks add|remove|enable`
 *   apply to a running server without a restart.
 * Security: secrets are used to sign only, never logged; URLs are logged without query or userinfo.
 */
import { randomBytes } from "node:crypto";
import type { WebhooksConfig } from "../config/events-schema.js";
import type { Logger } from "../log.js";
import { retryDelay } from "../queue/backoff.js";
import type { Store, WebhookWithSecret } from "../store/types.js";
import { ulidTime } from "./event-id.js";
import { displayUrl, postSigned } from "./webhook-post.js";

export interface WebhookDispatcherDeps {
  readonly store: Store;
  readonly config: WebhooksConfig;
  readonly logger: Logger;
  readonly now?: () => number;
  readonly random?: () => number;
  /** This node's name, the prefix of the lease owner (default "petrel"). */
  readonly node?: string;
}

export interface WebhookStats {
  posts: number;
  events: number;
  failures: number;
}

/** How many events a batch read may look at per event it can take (other accounts, other types). */
const SCAN_FACTOR = 20;
/** At most one "could not read webhooks" line per this long during a store outage. */
const READ_FAILURE_LOG_MS = 10_000;

export class WebhookDispatcher {
  readonly stats: WebhookStats = { posts: 0, events: 0, failures: 0 };
  private readonly deps: WebhookDispatcherDeps;
  private readonly now: () => number;
  private readonly inFlight = new Map<number, Promise<void>>();
  /**
   * Endpoints whose last read found a batch not yet full and not yet due: until new events come
   * or the batch is due, the next polls need not read the events again.
   */
  private readonly waiting = new Map<number, { cursor: string; scannedTo: string; dueAt: number }>();
  private readonly abort = new AbortController();
  private running = false;
  /** Reads of the webhook list failed since the last "could not read webhooks" line. */
  private readFailures = 0;
  private readFailureLoggedAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  /** The current poll interval: pollIntervalMs, or more while idle (schedule()). */
  private idleInterval = 0;
  private ticking: Promise<void> | undefined;

  /** The lease owner: unique per process. */
  readonly owner: string;
  private readonly leaseMs: number;
  /** Leases this process holds, with their expiry as written (this process's clock). */
  private readonly held = new Map<string, number>();

  constructor(deps: WebhookDispatcherDeps) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
    this.owner = `${deps.node ?? "petrel"}:${process.pid}:${randomBytes(4).toString("hex")}`;
    this.leaseMs = Math.max(deps.config.leaseMs, 2 * deps.config.timeoutMs);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops polling, lets POSTs in flight finish within graceMs, then aborts them (sent again later). */
  async stop(graceMs: number): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.timer);
    await this.ticking;
    const all = Promise.all(this.inFlight.values());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    this.abort.abort();
    await all;
    for (const lease of [...this.held.keys()]) await this.giveBack(lease);
  }

  /**
   * Takes or renews `lease` unless this process holds it for at least half of leaseMs more (then
   * no write is needed: no other node can take it before it expires). False: another node has it.
   */
  private async holdLease(lease: string): Promise<boolean> {
    const now = this.now();
    const until = this.held.get(lease);
    if (until !== undefined && until - now >= this.leaseMs / 2) return true;
    const taken = await this.deps.store.takeLease(lease, this.owner, now, this.leaseMs);
    if (taken) this.held.set(lease, now + this.leaseMs);
    else this.held.delete(lease);
    return taken;
  }

  private async giveBack(lease: string): Promise<void> {
    this.held.delete(lease);
    await this.deps.store.releaseLease(lease, this.owner).catch((err: unknown) => {
      this.deps.logger.warn({ err, lease }, "could not give back a webhook lease");
    });
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        if (!this.running) return;
        // Idle backoff: while a tick finds nothing to send and nothing waits (no endpoint, or
        // every cursor at the newest event), the interval doubles up to idlePollMaxMs; any work
        // brings it back. An idle node polled 20 times a second, two statements each.
        const { pollIntervalMs, idlePollMaxMs } = this.deps.config;
        const busy = this.inFlight.size > 0 || this.waiting.size > 0;
        this.idleInterval = busy
          ? pollIntervalMs
          : Math.min(
              Math.max(this.idleInterval * 2, pollIntervalMs),
              Math.max(idlePollMaxMs, pollIntervalMs),
            );
        this.schedule(this.idleInterval);
      });
    }, ms);
  }

  private async tick(): Promise<void> {
    let due: WebhookWithSecret[];
    let newest: string;
    try {
      due = await this.deps.store.dueWebhooks(this.now());
      // One read per tick tells which endpoints have anything after their cursor: only those
      // take their lease (a write), so idle endpoints cost the cluster no writes.
      newest =
        due.length === 0 ? "" : ((await this.deps.store.listEvents({ limit: 1, newest: true }))[0]?.id ?? "");
    } catch (err) {
      // A store outage fails every poll (every pollIntervalMs): log the first failure, then at
      // most once per 10 s with the count of failures since, not one line per poll.
      this.readFailures += 1;
      const at = this.now();
      if (at - this.readFailureLoggedAt >= READ_FAILURE_LOG_MS) {
        this.deps.logger.error({ err, failures: this.readFailures }, "could not read webhooks");
        this.readFailureLoggedAt = at;
        this.readFailures = 0;
      }
      return;
    }
    if (this.readFailureLoggedAt !== Number.NEGATIVE_INFINITY) {
      this.deps.logger.info({ unloggedFailures: this.readFailures }, "webhooks readable again");
      this.readFailureLoggedAt = Number.NEGATIVE_INFINITY;
      this.readFailures = 0;
    }
    for (const webhook of due) {
      if (this.inFlight.has(webhook.id) || !this.running) continue;
      if (webhook.cursor >= newest) continue;
      const wait = this.waiting.get(webhook.id);
      // A batch not yet full nor due, and nothing newer since it was read: nothing to do yet.
      if (wait && wait.cursor === webhook.cursor && this.now() < wait.dueAt && newest <= wait.scannedTo)
        continue;
      const run = this.serve(webhook)
        .catch((err: unknown) =>
          this.deps.logger.error(
            { err, webhook: webhook.id, url: displayUrl(webhook.url) },
            "webhook dispatch failed",
          ),
        )
        .finally(() => this.inFlight.delete(webhook.id));
      this.inFlight.set(webhook.id, run);
    }
  }

  /** Serves one endpoint under its lease, if no other node holds it. */
  private async serve(initial: WebhookWithSecret): Promise<void> {
    const lease = `webhook:${initial.id}`;
    if (!(await this.holdLease(lease))) return;
    try {
      await this.sendPending(initial, lease);
    } finally {
      // Kept while a batch of this endpoint is due soon: the next poll would take it again.
      const wait = this.waiting.get(initial.id);
      const soon = wait !== undefined && wait.dueAt - this.now() < this.leaseMs / 2;
      if (this.held.has(lease) && (!this.running || !soon)) await this.giveBack(lease);
    }
  }

  /** Sends what is pending for one endpoint, batch after batch, until caught up or failing. */
  private async sendPending(initial: WebhookWithSecret, lease: string): Promise<void> {
    const { store, config, logger } = this.deps;
    // The tick's list may predate the end of this endpoint's previous run (which moved its cursor
    // and failure state): read it again now that no other run of it can be going on, or a batch
    // already acknowledged would be sent twice.
    const fresh = (await store.dueWebhooks(this.now())).find((w) => w.id === initial.id);
    if (!fresh) return;
    let endpoint = fresh;
    const wait = this.waiting.get(endpoint.id);
    if (wait && wait.cursor === endpoint.cursor && this.now() < wait.dueAt) {
      const newest = (await store.listEvents({ limit: 1, newest: true }))[0]?.id ?? "";
      if (newest <= wait.scannedTo) return;
    }
    this.waiting.delete(endpoint.id);
    while (this.running) {
      const batch = await store.webhookBatch(
        endpoint,
        config.maxBatchEvents,
        config.maxBatchEvents * SCAN_FACTOR,
      );
      const first = batch.events[0];
      if (!first) {
        // Nothing for this endpoint, but maybe others' events to step over.
        if (batch.cursor === endpoint.cursor) return;
        await store.advanceWebhookCursor(endpoint.id, batch.cursor);
        endpoint = { ...endpoint, cursor: batch.cursor };
        continue;
      }
      const full = batch.events.length >= config.maxBatchEvents;
      // A batch that is not full waits (to the next poll) until its oldest event is old enough.
      const dueAt = ulidTime(first.id) + config.batchWindowMs;
      if (!full && endpoint.failures === 0 && this.now() < dueAt) {
        this.waiting.set(endpoint.id, { cursor: endpoint.cursor, scannedTo: batch.cursor, dueAt });
        return;
      }

      // Renewed before a POST if half of it is gone: it then outlasts the POST's timeout. Lost (this
      // node stalled past its expiry and another took over): stop; the other node sends from the
      // stored cursor.
      if (!(await this.holdLease(lease))) return;
      const body = JSON.stringify(batch.events);
      const at = this.now();
      const result = await postSigned(endpoint.url, endpoint.secret, body, {
        timeoutMs: config.timeoutMs,
        signal: this.abort.signal,
        webhookId: endpoint.id,
      });
      // Shutting down: not the receiver's failure; the batch is sent again after the restart.
      if (this.abort.signal.aborted) return;
      this.stats.posts++;
      const last = batch.events[batch.events.length - 1]!;
      const record = {
        webhookId: endpoint.id,
        kind: "events" as const,
        at,
        durationMs: result.durationMs,
        statusCode: result.statusCode,
        error: result.error,
        ok: result.ok,
        events: batch.events.length,
        firstEventId: first.id,
        lastEventId: last.id,
      };
      if (result.ok) {
        this.stats.events += batch.events.length;
        await store.recordWebhookAttempt({
          ...record,
          cursor: batch.cursor,
          failures: 0,
          failingSince: null,
          nextAttemptAt: 0,
        });
        if (endpoint.failures > 0) {
          logger.info({ webhook: endpoint.id, url: displayUrl(endpoint.url) }, "webhook endpoint recovered");
        }
        endpoint = { ...endpoint, cursor: batch.cursor, failures: 0, failingSince: null };
        continue;
      }

      this.stats.failures++;
      const failures = endpoint.failures + 1;
      const failingSince = endpoint.failingSince ?? at;
      const fields = {
        webhook: endpoint.id,
        url: displayUrl(endpoint.url),
        status: result.statusCode,
        error: result.error,
        failures,
      };
      if (at - failingSince >= config.disableAfterMs) {
        const hours = Math.round((at - failingSince) / 360_000) / 10;
        const reason = `no successful delivery for ${hours} h (last: ${result.error})`;
        await store.recordWebhookAttempt({ ...record, failures, failingSince });
        await store.recordWebhookAttempt({
          ...record,
          kind: "disabled",
          durationMs: 0,
          statusCode: null,
          ok: false,
          error: reason,
          events: 0,
          disable: reason,
        });
        logger.warn(fields, `webhook endpoint disabled: ${reason}; re-enable with petrel webhooks enable`);
        return;
      }
      const wait = retryDelay(
        { schedule: config.retrySchedule, jitter: config.retryJitter },
        failures,
        this.deps.random,
      );
      await store.recordWebhookAttempt({ ...record, failures, failingSince, nextAttemptAt: at + wait });
      logger.warn({ ...fields, retryInMs: wait }, "webhook delivery failed");
      return;
    }
  }
}

/**
 * The delivery queue in SQLite (Store part QueueStore; postgres/queue.ts is its twin): leases on
 * due recipients, outcomes with their attempt records, destination backoff, and the operator's
 * queue actions.
 *
 * Invariants:
 * - A leased recipient is `delivering` with lease_owner set and next_attempt_at = lease expiry, so
 *   "due" is one condition for all three pending states: an expired lease is due again by itself.
 * - recordOutcomes() is the only delivery write that changes a recipient's state; each call is one
 *   transaction that also appends the attempt rows and, for each recipient whose state moved, its
 *   event (issue 5: deferred with the attempt number and next attempt time, delivered, bounce,
 *   expired). An outcome that changes nothing (a lost lease, an already final recipient) writes no
 *   event, so there is exactly one `deferred` per attempt that deferred.
 * - dropMessage() writes a `dropped` event (reason `operator`) per recipient it drops;
 *   cancelMessage() (issue 9, queue-cancel.ts) one with reason `cancelled` per recipient not yet attempted.
 * - A deferral only applies while the writer still holds the lease; a final outcome (delivered,
 *   bounced, expired) applies to any recipient not yet final, because it states what happened.
 * SQLite has one writer at a time, so a claim's SELECT then UPDATE in one IMMEDIATE transaction is
 * what PostgreSQL's `FOR UPDATE SKIP LOCKED` gives there.
 *
 * Durability: delivery writes commit with synchronous=NORMAL (no fsync of their own; the next
 * spool commit, which is FULL, syncs them along). A process crash (kill -9) loses none of them:
 * the WAL is in the page cache. Only a power loss can undo the last ones, and undoing a claim or
 * an outcome means at most one more delivery attempt, never lost mail. Accepting mail keeps its
 * fsync before every "250" (the spool), which is the promise made to clients.
 */

import type Database from "better-sqlite3";
import { accountQueueOf } from "../account-queue-rows.js";
import { moveToScheduled } from "../scheduled-counts.js";
import {
  type AccountQueue,
  type ClaimedRecipient,
  type ClaimRequest,
  type DeliveryAttempt,
  type DestinationBackoff,
  type EventType,
  MAX_UNFINISHED_ATTEMPTS,
  type OutcomeNotification,
  type OutcomeState,
  type QueueCounts,
  type QueueStore,
  type QueueTarget,
  type RecipientOutcome,
  type RecipientState,
} from "../types.js";
import { relaxedWrites } from "./connection.js";
import { prepareEventWriter } from "./events.js";
import { prepareEnqueue } from "./messages.js";
import { createQueueCancel } from "./queue-cancel.js";
import { prepareSuppressionWriter } from "./suppressions.js";

type Row = Record<string, unknown>;

const PENDING = "r.state IN ('queued', 'deferred', 'delivering')";
const FINAL = "('delivered', 'bounced', 'expired', 'dropped')";

export function createQueueStore(db: Database.Database): QueueStore {
  const s = {
    // The state condition repeats the partial index's WHERE verbatim, so SQLite uses that index
    // and reads rows in due order without a sort; LIMIT then stops the scan early. `+@limit`:
    // not re-compiled at every claim (connection.ts, "A bound LIMIT"; 26 µs a claim).
    due: db.prepare(
      `SELECT r.id, r.message_id, r.address, r.domain, r.attempts, r.unfinished, m.mail_from, m.size,
              m.received_at, m.expires_at, m.account_id,
              EXISTS (SELECT 1 FROM suppressions x WHERE x.account_id = m.account_id
                AND x.address = lower(r.address)) AS suppressed
       FROM recipients r INDEXED BY recipients_pending JOIN messages m ON m.id = r.message_id
       WHERE ${PENDING} AND r.next_attempt_at <= @now
         AND NOT EXISTS (SELECT 1 FROM destination_backoff b WHERE b.domain = r.domain AND b.until > @now)
         AND r.domain NOT IN (SELECT value FROM json_each(@skip))
       ORDER BY r.next_attempt_at LIMIT +@limit`,
    ),
    // Issue 5: a recipient suppressed after its message was accepted is dropped when it comes due.
    dropSuppressed: db.prepare(
      `UPDATE recipients SET state = 'dropped', next_attempt_at = NULL, lease_owner = NULL,
         lease_expires_at = NULL, last_reply = @reply, updated_at = @now WHERE id = @id`,
    ),
    dropSuppressedAttempt: db.prepare(
      `INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
       VALUES (@id, @message, @now, 0, 'dropped', @reply)`,
    ),
    anyDue: db.prepare(
      `SELECT 1 FROM recipients r INDEXED BY recipients_pending WHERE ${PENDING} AND r.next_attempt_at <= @now LIMIT 1`,
    ),
    // Issue 11: the claim counts as unfinished until its outcome (recorded before the attempt starts).
    lease: db.prepare(
      `UPDATE recipients SET state = 'delivering', lease_owner = ?, lease_expires_at = ?, next_attempt_at = ?,
         unfinished = unfinished + 1, updated_at = ? WHERE id = ?`,
    ),
    // A claim that never reached an outcome is an attempt: counted, with an attempt record.
    unfinishedAttempt: db.prepare(
      `INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
       VALUES (@id, @message, @now, 0, @status, @reply)`,
    ),
    countUnfinished: db.prepare(
      "UPDATE recipients SET attempts = attempts + 1, last_reply = @reply WHERE id = @id",
    ),
    holdUnfinished: db.prepare(
      `UPDATE recipients SET state = 'held', lease_owner = NULL, lease_expires_at = NULL, unfinished = 0,
         updated_at = @now WHERE id = @id`,
    ),
    giveBack: db.prepare(
      `UPDATE recipients SET state = CASE WHEN attempts > 0 THEN 'deferred' ELSE 'queued' END,
         lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = @now,
         unfinished = MAX(unfinished - 1, 0), updated_at = @now
       WHERE state = 'delivering' AND lease_owner = @owner AND id IN (SELECT value FROM json_each(@ids))`,
    ),
    renew: db.prepare(
      `UPDATE recipients SET lease_expires_at = @until, next_attempt_at = @until
       WHERE state = 'delivering' AND lease_owner = @owner`,
    ),
    release: db.prepare(
      `UPDATE recipients SET state = CASE WHEN attempts > 0 THEN 'deferred' ELSE 'queued' END,
         lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = @now, updated_at = @now
       WHERE state = 'delivering' AND lease_owner LIKE @prefix ESCAPE '\\'`,
    ),
    defer: db.prepare(
      `UPDATE recipients SET state = 'deferred', attempts = attempts + 1, next_attempt_at = @next,
         lease_owner = NULL, lease_expires_at = NULL, last_reply = @reply, unfinished = 0, updated_at = @now
       WHERE id = @id AND state = 'delivering' AND lease_owner = @owner`,
    ),
    finish: db.prepare(
      `UPDATE recipients SET state = @state, attempts = attempts + 1, next_attempt_at = NULL,
         lease_owner = NULL, lease_expires_at = NULL, last_reply = @reply, unfinished = 0, updated_at = @now
       WHERE id = @id AND state NOT IN ${FINAL}`,
    ),
    attempt: db.prepare(
      `INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, mx_host, ip, port,
         source_ip, tls, reply)
       SELECT id, message_id, @at, @duration, @status, @mx, @ip, @port, @source, @tls, @reply
       FROM recipients WHERE id = @id`,
    ),
    attempts: db.prepare(
      `SELECT a.at, a.duration_ms, a.status, a.mx_host, a.ip, a.port, a.source_ip, a.tls, a.reply,
              r.address FROM delivery_attempts a JOIN recipients r ON r.id = a.recipient_id
       WHERE a.message_id = ? ORDER BY a.id`,
    ),
    // Through recipients_due (state first): only pending recipients are read, then their
    // messages, and at most @cap of them, so a huge backlog costs a bounded read.
    accountQueue: db.prepare(
      `SELECT state, domain, COUNT(*) AS n, MIN(id) AS oldest, MIN(received_at) AS oldest_at FROM (
         SELECT r.state, r.domain, m.id, m.received_at FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.state IN ('queued', 'deferred', 'delivering', 'held') AND m.account_id = @account
         LIMIT @cap)
       GROUP BY state, domain`,
    ),
    countsByState: db.prepare("SELECT state, COUNT(*) AS n FROM recipients GROUP BY state"),
    countsByStateDomain: db.prepare(
      "SELECT state, COUNT(*) AS n FROM recipients WHERE domain = ? GROUP BY state",
    ),
    // Issue 9: queued recipients of messages still scheduled (through the partial messages_send_at).
    countScheduled: db.prepare(
      // By destination, so the per-destination counts show them scheduled, not queued.
      `SELECT r.domain, COUNT(*) AS n FROM messages m JOIN recipients r ON r.message_id = m.id
       WHERE m.send_at > @now AND r.state = 'queued' AND r.attempts = 0
         AND (@domain IS NULL OR r.domain = @domain) GROUP BY r.domain`,
    ),
    countsByDestination: db.prepare(
      `SELECT domain, state, COUNT(*) AS n FROM recipients
       WHERE state NOT IN ${FINAL} GROUP BY domain, state ORDER BY domain`,
    ),
    retryMessage: db.prepare(
      `UPDATE recipients SET next_attempt_at = @now, updated_at = @now
       WHERE message_id = @id AND state IN ('queued', 'deferred')`,
    ),
    retryAll: db.prepare(
      // "Retry everything" is for mail that waits after failing: a scheduled message (issue 9)
      // keeps its send time (a retry of that one message sends it now).
      `UPDATE recipients SET next_attempt_at = @now, updated_at = @now
       WHERE state IN ('queued', 'deferred') AND next_attempt_at > @now
         AND NOT (attempts = 0 AND message_id IN (SELECT id FROM messages WHERE send_at > @now))`,
    ),
    unbackoffMessage: db.prepare(
      "DELETE FROM destination_backoff WHERE domain IN (SELECT domain FROM recipients WHERE message_id = ?)",
    ),
    unbackoffAll: db.prepare("DELETE FROM destination_backoff"),
    hold: db.prepare(
      `UPDATE recipients SET state = 'held', updated_at = @now
       WHERE message_id = @id AND state IN ('queued', 'deferred')`,
    ),
    releaseHeld: db.prepare(
      `UPDATE recipients SET state = CASE WHEN attempts > 0 THEN 'deferred' ELSE 'queued' END,
         next_attempt_at = MAX(@now, COALESCE((SELECT send_at FROM messages WHERE id = @id), 0)),
         unfinished = 0, updated_at = @now WHERE message_id = @id AND state = 'held'`,
    ),
    eventSource: db.prepare(
      `SELECT r.message_id, r.address, r.attempts, m.account_id FROM recipients r
       JOIN messages m ON m.id = r.message_id WHERE r.id = ?`,
    ),
    toDrop: db.prepare(
      `SELECT r.address, r.attempts, m.account_id FROM recipients r JOIN messages m ON m.id = r.message_id
       WHERE r.message_id = ? AND r.state NOT IN ${FINAL} ORDER BY r.id`,
    ),
    dropAttempts: db.prepare(
      `INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
       SELECT id, message_id, @now, 0, 'dropped', @reason FROM recipients
       WHERE message_id = @id AND state NOT IN ${FINAL}`,
    ),
    drop: db.prepare(
      `UPDATE recipients SET state = 'dropped', next_attempt_at = NULL, lease_owner = NULL,
         lease_expires_at = NULL, last_reply = @reason, updated_at = @now
       WHERE message_id = @id AND state NOT IN ${FINAL}`,
    ),
    setBackoff: db.prepare(
      `INSERT INTO destination_backoff (domain, until, failures, last_error) VALUES (?, ?, ?, ?)
       ON CONFLICT (domain) DO UPDATE SET until = excluded.until, failures = excluded.failures,
         last_error = excluded.last_error`,
    ),
    clearBackoff: db.prepare("DELETE FROM destination_backoff WHERE domain = ?"),
    backoffs: db.prepare(
      "SELECT domain, until, failures, last_error FROM destination_backoff WHERE until > ? ORDER BY domain",
    ),
  };

  /** Writes without their own fsync (see Durability above). */
  const relaxed = relaxedWrites(db);

  const claim = db.transaction((request: ClaimRequest): ClaimedRecipient[] => {
    const rows = s.due.all({
      now: request.now,
      skip: JSON.stringify(request.skipDomains ?? []),
      limit: request.limit,
    }) as Row[];
    const until = request.now + request.leaseMs;
    return rows.flatMap((row) => {
      if (row.suppressed) {
        // Suppressed since it was accepted (a hard bounce or complaint of another message):
        // never attempted, like a recipient suppressed at accept (src/app/submission.ts).
        const reply = "dropped: suppressed";
        s.dropSuppressed.run({ id: row.id, reply, now: request.now });
        s.dropSuppressedAttempt.run({ id: row.id, message: row.message_id, reply, now: request.now });
        claimEvents.insert([
          {
            type: "dropped",
            messageId: String(row.message_id),
            accountId: Number(row.account_id),
            recipient: String(row.address),
            at: request.now,
            attempt: Number(row.attempts),
            reason: "suppressed",
          },
        ]);
        return [];
      }
      const unfinished = Number(row.unfinished);
      let attempts = Number(row.attempts);
      if (unfinished > 0) {
        // Issue 11: the last claim never reached an outcome: its worker crashed or hung during
        // the attempt. It counts as an attempt; after MAX_UNFINISHED_ATTEMPTS the recipient is
        // held (a poison message must not crash every worker until it expires).
        const held = unfinished >= MAX_UNFINISHED_ATTEMPTS;
        const reply = held
          ? `held: the delivery worker stopped during ${unfinished} attempts in a row (crash or hang); release with petrel queue release`
          : "451 4.3.0 the delivery attempt did not finish (the delivery worker stopped: crash or hang)";
        attempts++;
        s.countUnfinished.run({ id: row.id, reply });
        s.unfinishedAttempt.run({
          id: row.id,
          message: row.message_id,
          now: request.now,
          status: "deferred",
          reply: "451 4.3.0 the delivery attempt did not finish (the delivery worker stopped: crash or hang)",
        });
        if (held) {
          s.holdUnfinished.run({ id: row.id, now: request.now });
          claimEvents.insert([
            {
              type: "held",
              messageId: String(row.message_id),
              accountId: Number(row.account_id),
              recipient: String(row.address),
              at: request.now,
              attempt: attempts,
              reply,
              reason: "worker-crashed",
            },
          ]);
          return [];
        }
      }
      s.lease.run(request.owner, until, until, request.now, row.id);
      return {
        id: Number(row.id),
        messageId: String(row.message_id),
        address: String(row.address),
        domain: String(row.domain),
        attempts,
        mailFrom: String(row.mail_from),
        size: Number(row.size),
        receivedAt: Number(row.received_at),
        expiresAt: Number(row.expires_at),
        accountId: Number(row.account_id),
      };
    });
  });
  const claimEvents = prepareEventWriter(db);

  const events = prepareEventWriter(db);
  // Issue 5: a hard bounce suppresses its recipient in the transaction of its event.
  const suppressions = prepareSuppressionWriter(db);
  const EVENT_OF: Record<OutcomeState, EventType> = {
    delivered: "delivered",
    deferred: "deferred",
    bounced: "bounce",
    expired: "expired",
  };

  const enqueue = prepareEnqueue(db);
  const record = db.transaction(
    (outcomes: readonly RecipientOutcome[], notifications: readonly OutcomeNotification[]) => {
      const now = Date.now();
      const nextId = events.ids(now);
      const movedIds = new Set<number>();
      for (const o of outcomes) {
        const a = o.attempt;
        const next = o.nextAttemptAt ?? now;
        const moved =
          o.state === "deferred"
            ? s.defer.run({ id: o.recipientId, owner: o.owner, next, reply: a.reply, now }).changes
            : s.finish.run({ id: o.recipientId, state: o.state, reply: a.reply, now }).changes;
        if (moved > 0) {
          movedIds.add(o.recipientId);
          const r = s.eventSource.get(o.recipientId) as Row;
          const [eventId] = events.insert(
            [
              {
                type: EVENT_OF[o.state],
                messageId: String(r.message_id),
                accountId: Number(r.account_id),
                recipient: String(r.address),
                at: now,
                attempt: Number(r.attempts),
                nextAttemptAt: o.state === "deferred" ? next : null,
                mxHost: a.mxHost,
                ip: a.ip,
                reply: a.reply,
                enhancedCode: o.enhancedCode ?? null,
                bounceClass: o.bounceClass ?? null,
                bounceHard: o.bounceHard ?? null,
              },
            ],
            nextId,
          );
          if (o.state === "bounced" && o.bounceHard === true) {
            suppressions.add({
              accountId: Number(r.account_id),
              address: String(r.address),
              reason: o.bounceClass ?? "hard-bounce",
              eventId,
              messageId: String(r.message_id),
              detail: a.reply,
            });
          }
        }
        // The attempt happened whether or not the state moved (a lost lease), so it is always recorded.
        s.attempt.run({
          id: o.recipientId,
          at: a.at,
          duration: Math.round(a.durationMs),
          status: o.state,
          mx: a.mxHost,
          ip: a.ip,
          port: a.port,
          source: a.sourceIp,
          tls: a.tls,
          reply: a.reply,
        });
      }
      // Issue 11: the DSNs in the transaction of the bounces and expiries they report (after the
      // outcome events: enqueue continues the event ids from the newest one written).
      const due = notifications.filter((n) => n.recipientIds.some((id) => movedIds.has(id)));
      if (due.length > 0) enqueue(due.map((n) => n.message));
    },
  );

  const retry = db.transaction((target: QueueTarget, now: number): number => {
    if ("all" in target) {
      s.unbackoffAll.run();
      return s.retryAll.run({ now }).changes;
    }
    s.unbackoffMessage.run(target.messageId);
    return s.retryMessage.run({ id: target.messageId, now }).changes;
  });

  const drop = db.transaction((messageId: string, now: number, reason: string): number => {
    const dropping = s.toDrop.all(messageId) as Row[];
    s.dropAttempts.run({ id: messageId, now, reason });
    const changes = s.drop.run({ id: messageId, now, reason }).changes;
    events.insert(
      dropping.map((r) => ({
        type: "dropped" as const,
        messageId,
        accountId: Number(r.account_id),
        recipient: String(r.address),
        at: now,
        attempt: Number(r.attempts),
        reply: reason,
        reason: "operator",
      })),
    );
    return changes;
  });

  const claimDue = relaxed((request: ClaimRequest): ClaimedRecipient[] => {
    // Idle polls stay readers: the write lock is taken only when something is due.
    if (!s.anyDue.get({ now: request.now })) return [];
    return claim.immediate(request);
  });
  const renew = relaxed((owner: string, until: number): number => s.renew.run({ owner, until }).changes);
  const recordOutcomes = relaxed(
    (outcomes: readonly RecipientOutcome[], notifications: readonly OutcomeNotification[]): void => {
      if (outcomes.length > 0 || notifications.length > 0) record.immediate(outcomes, notifications);
    },
  );

  return {
    async claimDue(request: ClaimRequest): Promise<ClaimedRecipient[]> {
      return claimDue(request);
    },
    async renewLeases(owner: string, until: number): Promise<number> {
      return renew(owner, until);
    },
    async releaseLeases(ownerPrefix: string, now: number): Promise<number> {
      return s.release.run({ prefix: `${ownerPrefix.replace(/[%_\\]/g, "\\$&")}%`, now }).changes;
    },
    async recordOutcomes(
      outcomes: readonly RecipientOutcome[],
      notifications: readonly OutcomeNotification[] = [],
    ): Promise<void> {
      recordOutcomes(outcomes, notifications);
    },
    async giveBack(recipientIds: readonly number[], owner: string, now: number): Promise<number> {
      if (recipientIds.length === 0) return 0;
      return s.giveBack.run({ ids: JSON.stringify(recipientIds), owner, now }).changes;
    },
    async listAttempts(messageId: string): Promise<DeliveryAttempt[]> {
      return (s.attempts.all(messageId) as Row[]).map((r) => ({
        recipient: String(r.address),
        status: r.status as OutcomeState | "dropped",
        at: Number(r.at),
        durationMs: Number(r.duration_ms),
        mxHost: (r.mx_host as string | null) ?? null,
        ip: (r.ip as string | null) ?? null,
        port: (r.port as number | null) ?? null,
        sourceIp: (r.source_ip as string | null) ?? null,
        tls: (r.tls as string | null) ?? null,
        reply: String(r.reply),
      }));
    },
    async queueCounts(
      filter: { readonly domain?: string; readonly now?: number } = {},
    ): Promise<QueueCounts> {
      const byState: Partial<Record<RecipientState, number>> = {};
      const stateRows = (
        filter.domain ? s.countsByStateDomain.all(filter.domain) : s.countsByState.all()
      ) as Row[];
      for (const r of stateRows) byState[r.state as RecipientState] = Number(r.n);
      const scheduledBy = new Map(
        (s.countScheduled.all({ now: filter.now ?? Date.now(), domain: filter.domain ?? null }) as Row[]).map(
          (r) => [String(r.domain), Number(r.n)],
        ),
      );
      const scheduled = [...scheduledBy.values()].reduce((a, b) => a + b, 0);
      if (scheduled > 0) {
        byState.scheduled = scheduled;
        byState.queued = (byState.queued ?? 0) - scheduled;
        if (byState.queued <= 0) delete byState.queued;
      }
      const backoff = new Map(
        (s.backoffs.all(Date.now()) as Row[]).map((r) => [String(r.domain), Number(r.until)]),
      );
      const destinations = new Map<string, Partial<Record<RecipientState, number>>>();
      for (const r of s.countsByDestination.all() as Row[]) {
        const domain = String(r.domain);
        if (filter.domain && domain !== filter.domain) continue;
        const states = destinations.get(domain) ?? {};
        states[r.state as RecipientState] = Number(r.n);
        destinations.set(domain, states);
      }
      for (const [domain, n] of scheduledBy) moveToScheduled(destinations.get(domain), n);
      return {
        byState,
        byDestination: [...destinations].map(([domain, states]) => ({
          domain,
          states,
          backoffUntil: backoff.get(domain) ?? null,
        })),
      };
    },
    async accountQueue(accountId: number, limit: number): Promise<AccountQueue> {
      return accountQueueOf(s.accountQueue.all({ account: accountId, cap: limit + 1 }) as Row[], limit);
    },
    async retryNow(target: QueueTarget, now: number): Promise<number> {
      return retry.immediate(target, now);
    },
    async holdMessage(messageId: string, now: number): Promise<number> {
      return s.hold.run({ id: messageId, now }).changes;
    },
    async releaseMessage(messageId: string, now: number): Promise<number> {
      return s.releaseHeld.run({ id: messageId, now }).changes;
    },
    async dropMessage(messageId: string, now: number, reason: string): Promise<number> {
      return drop.immediate(messageId, now, reason);
    },
    // Issue 9: queue-cancel.ts.
    ...createQueueCancel(db),
    async setDestinationBackoff(
      backoff: DestinationBackoff | { readonly domain: string; readonly until: null },
    ): Promise<void> {
      if (backoff.until === null) s.clearBackoff.run(backoff.domain);
      else s.setBackoff.run(backoff.domain, backoff.until, backoff.failures, backoff.lastError);
    },
    async listDestinationBackoffs(now: number): Promise<DestinationBackoff[]> {
      return (s.backoffs.all(now) as Row[]).map((r) => ({
        domain: String(r.domain),
        until: Number(r.until),
        failures: Number(r.failures),
        lastError: String(r.last_error),
      }));
    },
  };
}

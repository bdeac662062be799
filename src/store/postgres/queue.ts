/**
 * The delivery queue in PostgreSQL (Store part QueueStore; sqlite/queue.ts is its twin), shared by
 * every node: any node claims, any node delivers.
 *
 * Tables: `recipients` holds every recipient and its state (updated by primary key only); `queue`
 * holds only pending ones (queued, deferred, leased), so finished rows leave the hot table in the
 * transaction that finishes them, and claims read a small table through one index (queue_due:
 * next_attempt_at, covering domain). A lease lives in `queue` alone (lease_owner, and its expiry
 * as next_attempt_at): claims and renewals never write `recipients`, and reads show a leased
 * recipient as `delivering` (RECIPIENT_STATE).
 *
 * Invariants:
 * - A claim is one statement: `FOR UPDATE SKIP LOCKED` picks due rows no other node is claiming,
 *   and the same statement leases them (owner, expiry = next_attempt_at), so concurrent nodes never
 *   claim one recipient twice and a dead node's leases simply come due again at their expiry.
 * - Claims lock only queue rows, with SKIP LOCKED: they never wait, so they cannot deadlock with
 *   anything. A deferral locks its queue row first, then checks that its writer still holds it.
 * - recordOutcomes() is one transaction: states, queue rows, attempt records, events (last, in
 *   commit order: events.ts) and hard-bounce suppressions. A deferral applies only while its
 *   writer still holds the lease; a final outcome applies to any recipient not yet final.
 *
 * Durability: claims, renewals and outcomes commit with synchronous_commit off (the relaxed
 * pool, connection.ts): losing the last of them to a database crash means one more delivery
 * attempt, never lost mail. Accepting mail (messages.ts) keeps synchronous_commit on.
 */

import { accountQueueOf } from "../account-queue-rows.js";
import { moveToScheduled } from "../scheduled-counts.js";
import type {
  AccountQueue,
  ClaimedRecipient,
  ClaimRequest,
  DeliveryAttempt,
  DestinationBackoff,
  EventType,
  NewEvent,
  OutcomeNotification,
  OutcomeState,
  QueueCounts,
  QueueStore,
  QueueTarget,
  RecipientOutcome,
  RecipientState,
} from "../types.js";
import type { ClaimWatermark } from "./claim-watermark.js";
import { type Client, type Pool, type Row, transaction } from "./connection.js";
import { writeEvents } from "./events.js";
import { earliest, insertMessages } from "./messages.js";
import { notifyDue } from "./notify.js";
import { createQueueCancel } from "./queue-cancel.js";
import { insertSuppressions } from "./suppressions.js";
import { countUnfinished } from "./unfinished.js";

const FINAL = "('delivered', 'bounced', 'expired', 'dropped')";

/** A recipient's state as the Store shows it (r: recipients, q: its queue row, LEFT JOINed). */
export const RECIPIENT_STATE = "(CASE WHEN q.lease_owner IS NOT NULL THEN 'delivering' ELSE r.state END)";
/** Its next attempt: the lease expiry while leased. */
export const RECIPIENT_NEXT =
  "(CASE WHEN q.lease_owner IS NOT NULL THEN q.next_attempt_at ELSE r.next_attempt_at END)";

const EVENT_OF: Record<OutcomeState, EventType> = {
  delivered: "delivered",
  deferred: "deferred",
  bounced: "bounce",
  expired: "expired",
};

// The claim (see the invariants). queue_due gives the rows in due order from the low-water mark
// ($6, claim-watermark.ts); LIMIT stops the scan. Every other table is reached through its
// primary key with `= ANY(ARRAY(…))`, never a hash join: a join plan that scans a table would
// grow with the table's history (and its dead rows), which is what this design avoids.
const CLAIM = `
  WITH due AS (
    SELECT q.recipient_id, q.next_attempt_at FROM queue q
    WHERE q.next_attempt_at <= $1 AND q.next_attempt_at >= $6
      AND q.domain <> ALL($2::text[])
      AND NOT EXISTS (SELECT 1 FROM destination_backoff b WHERE b.domain = q.domain AND b.until > $1)
    ORDER BY q.next_attempt_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED),
  leased AS (
    UPDATE queue q SET lease_owner = $4, next_attempt_at = $5, unfinished = q.unfinished + 1
    WHERE q.recipient_id = ANY(ARRAY(SELECT recipient_id FROM due))
    RETURNING q.recipient_id, q.unfinished - 1 AS unfinished)
  SELECT r.id, r.message_id, r.address, r.domain, r.attempts, l.unfinished, d.next_attempt_at AS due_at,
    m.mail_from, m.size, m.received_at, m.expires_at, m.account_id,
    EXISTS (SELECT 1 FROM suppressions x WHERE x.account_id = m.account_id
      AND x.address = lower(r.address)) AS suppressed
  FROM due d JOIN leased l ON l.recipient_id = d.recipient_id
  JOIN recipients r ON r.id = d.recipient_id JOIN messages m ON m.id = r.message_id
  WHERE r.id = ANY(ARRAY(SELECT recipient_id FROM leased))
  ORDER BY d.next_attempt_at, r.id`;

// Outcomes in one statement: recipients, queue rows, attempt records; returns what moved. The
// redundant `= ANY($1)` conditions give the planner index lookups (see CLAIM).
const OUTCOMES = `
  WITH o AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[])
      WITH ORDINALITY AS o(id, owner, state, next, reply, n)),
  moved AS (
    UPDATE recipients r SET state = o.state, attempts = r.attempts + 1,
      next_attempt_at = CASE WHEN o.state = 'deferred' THEN o.next END,
      last_reply = o.reply, updated_at = $6
    FROM o
    WHERE r.id = o.id AND r.id = ANY($1::bigint[]) AND CASE WHEN o.state = 'deferred'
      THEN EXISTS (SELECT 1 FROM queue l WHERE l.recipient_id = r.id AND l.lease_owner = o.owner)
      ELSE r.state NOT IN ${FINAL} END
    RETURNING r.id, r.message_id, r.address, r.attempts, o.state, o.next, o.n),
  deferred AS (
    UPDATE queue q SET next_attempt_at = moved.next, lease_owner = NULL, unfinished = 0 FROM moved
    WHERE q.recipient_id = moved.id AND q.recipient_id = ANY($1::bigint[]) AND moved.state = 'deferred'
    RETURNING 1),
  finished AS (
    DELETE FROM queue q USING moved
    WHERE q.recipient_id = moved.id AND q.recipient_id = ANY($1::bigint[]) AND moved.state <> 'deferred'
    RETURNING 1),
  attempts AS (
    INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, mx_host, ip, port,
      source_ip, tls, reply)
    SELECT r.id, r.message_id, a.at, a.duration, a.status, a.mx, a.ip, a.port, a.source, a.tls, a.reply
    FROM unnest($1::bigint[], $7::bigint[], $8::int[], $3::text[], $9::text[], $10::text[], $11::int[],
      $12::text[], $13::text[], $5::text[]) WITH ORDINALITY
      AS a(id, at, duration, status, mx, ip, port, source, tls, reply, n)
    JOIN recipients r ON r.id = a.id AND r.id = ANY($1::bigint[])
    ORDER BY a.n
    RETURNING 1)
  SELECT moved.id, moved.message_id, moved.address, moved.attempts, moved.n,
    (SELECT m.account_id FROM messages m WHERE m.id = moved.message_id) AS account_id
  FROM moved
  ORDER BY moved.n`;

export function createQueueStore(pool: Pool, relaxedPool: Pool, watermark: ClaimWatermark): QueueStore {
  /** Locks the queue rows of these recipients (a deferral's lease check must hold until commit). */
  async function lockQueue(client: Client, ids: readonly number[]): Promise<void> {
    await client.query(
      "SELECT 1 FROM queue WHERE recipient_id = ANY($1::bigint[]) ORDER BY recipient_id FOR UPDATE",
      [ids],
    );
  }

  async function dropSuppressed(owner: string, rows: readonly Row[], now: number): Promise<void> {
    const ids = rows.map((r) => Number(r.id));
    const reply = "dropped: suppressed";
    await transaction(relaxedPool, async (client) => {
      const { rows: dropped } = await client.query(
        `WITH gone AS (DELETE FROM queue WHERE recipient_id = ANY($1::bigint[]) AND lease_owner = $2
           RETURNING recipient_id),
         r AS (UPDATE recipients r SET state = 'dropped', next_attempt_at = NULL, last_reply = $3,
           updated_at = $4 FROM gone WHERE r.id = gone.recipient_id RETURNING r.id, r.message_id)
         INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
         SELECT id, message_id, $4, 0, 'dropped', $3 FROM r RETURNING recipient_id`,
        [ids, owner, reply, now],
      );
      const kept = new Set(dropped.map((d) => Number(d.recipient_id)));
      await writeEvents(
        client,
        rows
          .filter((r) => kept.has(Number(r.id)))
          .map((r) => ({
            type: "dropped" as const,
            messageId: String(r.message_id),
            accountId: Number(r.account_id),
            recipient: String(r.address),
            at: now,
            attempt: Number(r.attempts),
            reason: "suppressed",
          })),
        now,
      );
    });
  }

  async function applyOutcomes(
    client: Client,
    outcomes: readonly RecipientOutcome[],
    now: number,
    moved: Set<number>,
  ): Promise<void> {
    const deferrals = outcomes.filter((o) => o.state === "deferred").map((o) => o.recipientId);
    if (deferrals.length > 0) await lockQueue(client, deferrals);
    const { rows } = await client.query({
      name: "petrel-outcomes",
      text: OUTCOMES,
      values: [
        outcomes.map((o) => o.recipientId),
        outcomes.map((o) => o.owner),
        outcomes.map((o) => o.state),
        outcomes.map((o) => o.nextAttemptAt ?? now),
        outcomes.map((o) => o.attempt.reply),
        now,
        outcomes.map((o) => o.attempt.at),
        outcomes.map((o) => Math.round(o.attempt.durationMs)),
        outcomes.map((o) => o.attempt.mxHost),
        outcomes.map((o) => o.attempt.ip),
        outcomes.map((o) => o.attempt.port),
        outcomes.map((o) => o.attempt.sourceIp),
        outcomes.map((o) => o.attempt.tls),
      ],
    });
    const events: NewEvent[] = [];
    const suppress: { row: Row; outcome: RecipientOutcome; index: number }[] = [];
    for (const r of rows as Row[]) {
      const o = outcomes[Number(r.n) - 1]!;
      moved.add(Number(r.id));
      if (o.state === "bounced" && o.bounceHard === true)
        suppress.push({ row: r, outcome: o, index: events.length });
      if (o.state === "deferred") watermark.lower(o.nextAttemptAt ?? now);
      events.push({
        type: EVENT_OF[o.state],
        messageId: String(r.message_id),
        accountId: Number(r.account_id),
        recipient: String(r.address),
        at: now,
        attempt: Number(r.attempts),
        nextAttemptAt: o.state === "deferred" ? (o.nextAttemptAt ?? now) : null,
        mxHost: o.attempt.mxHost,
        ip: o.attempt.ip,
        reply: o.attempt.reply,
        enhancedCode: o.enhancedCode ?? null,
        bounceClass: o.bounceClass ?? null,
        bounceHard: o.bounceHard ?? null,
      });
    }
    const ids = await writeEvents(client, events, now);
    if (suppress.length > 0) {
      await insertSuppressions(
        client,
        suppress.map(({ row, outcome, index }) => ({
          accountId: Number(row.account_id),
          address: String(row.address),
          reason: outcome.bounceClass ?? "hard-bounce",
          eventId: ids[index] ?? null,
          messageId: String(row.message_id),
          detail: outcome.attempt.reply,
        })),
      );
    }
  }

  /** This process is about to make work due at `at`: claims must look there again. */
  function dueAt(at: number): void {
    watermark.lower(at);
  }

  return {
    async claimDue(request: ClaimRequest): Promise<ClaimedRecipient[]> {
      const until = request.now + request.leaseMs;
      const from = watermark.scanFrom(request.now);
      const { rows } = await relaxedPool.query({
        name: "petrel-claim",
        text: CLAIM,
        values: [request.now, request.skipDomains ?? [], request.limit, request.owner, until, from],
      });
      watermark.claimed(
        from,
        request.now,
        rows.length > 0 ? Number(rows[0].due_at) : undefined,
        (request.skipDomains?.length ?? 0) > 0,
      );
      const suppressed = (rows as Row[]).filter((r) => r.suppressed === true);
      // Suppressed since it was accepted (a hard bounce or complaint of another message): never
      // attempted, like a recipient suppressed at accept (src/app/submission.ts).
      if (suppressed.length > 0) await dropSuppressed(request.owner, suppressed, request.now);
      const live = (rows as Row[]).filter((r) => r.suppressed !== true);
      const unfinished = live.filter((r) => Number(r.unfinished) > 0);
      const held =
        unfinished.length > 0
          ? await countUnfinished(relaxedPool, lockQueue, request.owner, unfinished, request.now)
          : new Set();
      return live
        .filter((r) => !held.has(Number(r.id)))
        .map((row) => ({
          id: Number(row.id),
          messageId: String(row.message_id),
          address: String(row.address),
          domain: String(row.domain),
          attempts: Number(row.attempts) + (Number(row.unfinished) > 0 ? 1 : 0),
          mailFrom: String(row.mail_from),
          size: Number(row.size),
          receivedAt: Number(row.received_at),
          expiresAt: Number(row.expires_at),
          accountId: Number(row.account_id),
        }));
    },

    async renewLeases(owner: string, until: number): Promise<number> {
      const result = await relaxedPool.query("UPDATE queue SET next_attempt_at = $2 WHERE lease_owner = $1", [
        owner,
        until,
      ]);
      return result.rowCount ?? 0;
    },

    async releaseLeases(ownerPrefix: string, now: number): Promise<number> {
      dueAt(now);
      return transaction(pool, async (client) => {
        const result = await client.query(
          `WITH q AS (UPDATE queue SET lease_owner = NULL, next_attempt_at = $2
             WHERE lease_owner IS NOT NULL AND starts_with(lease_owner, $1) RETURNING recipient_id)
           UPDATE recipients r SET next_attempt_at = $2, updated_at = $2 FROM q WHERE r.id = q.recipient_id`,
          [ownerPrefix, now],
        );
        if ((result.rowCount ?? 0) > 0) await notifyDue(client, now);
        return result.rowCount ?? 0;
      });
    },

    async recordOutcomes(
      outcomes: readonly RecipientOutcome[],
      notifications: readonly OutcomeNotification[] = [],
    ): Promise<void> {
      if (outcomes.length === 0 && notifications.length === 0) return;
      const now = Date.now();
      const moved = new Set<number>();
      await transaction(relaxedPool, async (client) => {
        // One statement per run of distinct recipients: a recipient twice in one statement would
        // be updated once; in sequence the second outcome sees the first (as in SQLite).
        let start = 0;
        while (start < outcomes.length) {
          const seen = new Set<number>();
          let end = start;
          while (end < outcomes.length && !seen.has(outcomes[end]!.recipientId)) {
            seen.add(outcomes[end]!.recipientId);
            end++;
          }
          await applyOutcomes(client, outcomes.slice(start, end), now, moved);
          start = end;
        }
        // Issue 11: the DSNs in the transaction of the bounces and expiries they report.
        const due = notifications.filter((n) => n.recipientIds.some((id) => moved.has(id)));
        if (due.length > 0) {
          dueAt(earliest(due, (n) => n.message.receivedAt));
          await insertMessages(
            client,
            due.map((n) => n.message),
          );
        }
      });
    },

    async giveBack(recipientIds: readonly number[], owner: string, now: number): Promise<number> {
      if (recipientIds.length === 0) return 0;
      dueAt(now);
      return transaction(relaxedPool, async (client) => {
        const result = await client.query(
          `WITH q AS (UPDATE queue SET lease_owner = NULL, next_attempt_at = $3,
               unfinished = GREATEST(unfinished - 1, 0)
             WHERE recipient_id = ANY($1::bigint[]) AND lease_owner = $2 RETURNING recipient_id)
           UPDATE recipients r SET next_attempt_at = $3, updated_at = $3 FROM q WHERE r.id = q.recipient_id`,
          [recipientIds, owner, now],
        );
        if ((result.rowCount ?? 0) > 0) await notifyDue(client, now);
        return result.rowCount ?? 0;
      });
    },

    async listAttempts(messageId: string): Promise<DeliveryAttempt[]> {
      const { rows } = await pool.query(
        `SELECT a.at, a.duration_ms, a.status, a.mx_host, a.ip, a.port, a.source_ip, a.tls, a.reply,
                r.address FROM delivery_attempts a JOIN recipients r ON r.id = a.recipient_id
         WHERE a.message_id = $1 ORDER BY a.id`,
        [messageId],
      );
      return rows.map((r) => ({
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
      const domain = filter.domain ?? null;
      const [states, destinations, backoffs, scheduled] = await Promise.all([
        pool.query(
          `SELECT ${RECIPIENT_STATE} AS state, count(*) AS n FROM recipients r
           LEFT JOIN queue q ON q.recipient_id = r.id WHERE $1::text IS NULL OR r.domain = $1 GROUP BY 1`,
          [domain],
        ),
        pool.query(
          `SELECT r.domain, ${RECIPIENT_STATE} AS state, count(*) AS n FROM recipients r
           LEFT JOIN queue q ON q.recipient_id = r.id
           WHERE r.state NOT IN ${FINAL} AND ($1::text IS NULL OR r.domain = $1)
           GROUP BY 1, 2 ORDER BY r.domain COLLATE "C"`,
          [domain],
        ),
        pool.query("SELECT domain, until FROM destination_backoff WHERE until > $1", [Date.now()]),
        // Issue 9: queued recipients of messages still scheduled (through messages_send_at).
        pool.query(
          `SELECT r.domain, count(*) AS n FROM messages m JOIN recipients r ON r.message_id = m.id
           LEFT JOIN queue q ON q.recipient_id = r.id
           WHERE m.send_at > $1 AND r.state = 'queued' AND r.attempts = 0 AND q.lease_owner IS NULL
             AND ($2::text IS NULL OR r.domain = $2) GROUP BY r.domain`,
          [filter.now ?? Date.now(), domain],
        ),
      ]);
      const byState: Partial<Record<RecipientState, number>> = {};
      for (const r of states.rows) byState[r.state as RecipientState] = Number(r.n);
      const nScheduled = scheduled.rows.reduce((sum, r) => sum + Number(r.n), 0);
      if (nScheduled > 0) {
        byState.scheduled = nScheduled;
        byState.queued = (byState.queued ?? 0) - nScheduled;
        if (byState.queued <= 0) delete byState.queued;
      }
      const backoff = new Map(backoffs.rows.map((r) => [String(r.domain), Number(r.until)]));
      const byDomain = new Map<string, Partial<Record<RecipientState, number>>>();
      for (const r of destinations.rows) {
        const d = String(r.domain);
        const entry = byDomain.get(d) ?? {};
        entry[r.state as RecipientState] = Number(r.n);
        byDomain.set(d, entry);
      }
      // Per destination too: scheduled recipients are not queued ones.
      for (const r of scheduled.rows) moveToScheduled(byDomain.get(String(r.domain)), Number(r.n));
      return {
        byState,
        byDestination: [...byDomain].map(([d, s]) => ({
          domain: d,
          states: s,
          backoffUntil: backoff.get(d) ?? null,
        })),
      };
    },

    async accountQueue(accountId: number, limit: number): Promise<AccountQueue> {
      const result = await pool.query(
        `SELECT state, domain, count(*) AS n, min(id) AS oldest, min(received_at) AS oldest_at FROM (
           SELECT ${RECIPIENT_STATE} AS state, r.domain, m.id, m.received_at
           FROM messages m JOIN recipients r ON r.message_id = m.id LEFT JOIN queue q ON q.recipient_id = r.id
           WHERE m.account_id = $1 AND r.state NOT IN ${FINAL} LIMIT $2) p
         GROUP BY 1, 2`,
        [accountId, limit + 1],
      );
      return accountQueueOf(result.rows, limit);
    },

    retryNow(target: QueueTarget, now: number): Promise<number> {
      dueAt(now);
      return transaction(pool, async (client) => {
        let changed: number;
        if ("all" in target) {
          await client.query("DELETE FROM destination_backoff");
          const result = await client.query(
            // Scheduled messages (issue 9) keep their send time, as in sqlite/queue.ts.
            `WITH q AS (UPDATE queue SET next_attempt_at = $1 WHERE lease_owner IS NULL AND next_attempt_at > $1
               AND recipient_id NOT IN (SELECT r.id FROM messages m JOIN recipients r ON r.message_id = m.id
                 WHERE m.send_at > $1 AND r.attempts = 0)
               RETURNING recipient_id)
             UPDATE recipients r SET next_attempt_at = $1, updated_at = $1 FROM q
             WHERE r.id = q.recipient_id AND r.state IN ('queued', 'deferred')`,
            [now],
          );
          changed = result.rowCount ?? 0;
        } else {
          await client.query(
            "DELETE FROM destination_backoff WHERE domain IN (SELECT domain FROM recipients WHERE message_id = $1)",
            [target.messageId],
          );
          const result = await client.query(
            `WITH q AS (UPDATE queue SET next_attempt_at = $2 WHERE lease_owner IS NULL
               AND recipient_id IN (SELECT id FROM recipients WHERE message_id = $1) RETURNING recipient_id)
             UPDATE recipients r SET next_attempt_at = $2, updated_at = $2 FROM q
             WHERE r.id = q.recipient_id AND r.state IN ('queued', 'deferred')`,
            [target.messageId, now],
          );
          changed = result.rowCount ?? 0;
        }
        await notifyDue(client, now);
        return changed;
      });
    },

    holdMessage(messageId: string, now: number): Promise<number> {
      return transaction(pool, async (client) => {
        const { rows } = await client.query(
          `DELETE FROM queue WHERE lease_owner IS NULL
           AND recipient_id IN (SELECT id FROM recipients WHERE message_id = $1) RETURNING recipient_id`,
          [messageId],
        );
        const result = await client.query(
          `UPDATE recipients SET state = 'held', updated_at = $2
           WHERE id = ANY($1::bigint[]) AND state IN ('queued', 'deferred')`,
          [rows.map((r) => r.recipient_id), now],
        );
        return result.rowCount ?? 0;
      });
    },

    releaseMessage(messageId: string, now: number): Promise<number> {
      dueAt(now);
      return transaction(pool, async (client) => {
        const result = await client.query(
          // Scheduled send: a message held before its send_at is due at send_at again.
          `WITH r AS (UPDATE recipients SET state = CASE WHEN attempts > 0 THEN 'deferred' ELSE 'queued' END,
             next_attempt_at = GREATEST($2, COALESCE((SELECT send_at FROM messages WHERE id = $1), 0)),
             updated_at = $2 WHERE message_id = $1 AND state = 'held'
             RETURNING id, domain, next_attempt_at)
           INSERT INTO queue (recipient_id, domain, next_attempt_at) SELECT id, domain, next_attempt_at FROM r`,
          [messageId, now],
        );
        if ((result.rowCount ?? 0) > 0) await notifyDue(client, now);
        return result.rowCount ?? 0;
      });
    },

    // Issue 9: queue-cancel.ts.
    ...createQueueCancel(pool),

    dropMessage(messageId: string, now: number, reason: string): Promise<number> {
      return transaction(pool, async (client) => {
        await client.query(
          `SELECT 1 FROM queue WHERE recipient_id IN (SELECT id FROM recipients WHERE message_id = $1)
           ORDER BY recipient_id FOR UPDATE`,
          [messageId],
        );
        const { rows } = await client.query(
          `WITH r AS (
             UPDATE recipients SET state = 'dropped', next_attempt_at = NULL, last_reply = $3, updated_at = $2
             WHERE message_id = $1 AND state NOT IN ${FINAL}
             RETURNING id, message_id, address, attempts),
           gone AS (DELETE FROM queue q USING r WHERE q.recipient_id = r.id RETURNING 1),
           a AS (INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
             SELECT id, message_id, $2, 0, 'dropped', $3 FROM r RETURNING 1)
           SELECT r.id, r.address, r.attempts, m.account_id FROM r JOIN messages m ON m.id = r.message_id
           ORDER BY r.id`,
          [messageId, now, reason],
        );
        await writeEvents(
          client,
          rows.map((r) => ({
            type: "dropped" as const,
            messageId,
            accountId: Number(r.account_id),
            recipient: String(r.address),
            at: now,
            attempt: Number(r.attempts),
            reply: reason,
            reason: "operator",
          })),
          now,
        );
        return rows.length;
      });
    },

    async setDestinationBackoff(
      backoff: DestinationBackoff | { readonly domain: string; readonly until: null },
    ): Promise<void> {
      if (backoff.until === null) {
        // Its recipients may be overdue, below the low-water mark: scan from the bottom again.
        watermark.lower(Number.MIN_SAFE_INTEGER);
        await pool.query("DELETE FROM destination_backoff WHERE domain = $1", [backoff.domain]);
        return;
      }
      watermark.backoff(backoff.until);
      await pool.query(
        `INSERT INTO destination_backoff (domain, until, failures, last_error) VALUES ($1, $2, $3, $4)
         ON CONFLICT (domain) DO UPDATE SET until = excluded.until, failures = excluded.failures,
           last_error = excluded.last_error`,
        [backoff.domain, backoff.until, backoff.failures, backoff.lastError],
      );
    },

    async listDestinationBackoffs(now: number): Promise<DestinationBackoff[]> {
      const { rows } = await pool.query(
        "SELECT domain, until, failures, last_error FROM destination_backoff WHERE until > $1 ORDER BY domain",
        [now],
      );
      return rows.map((r) => ({
        domain: String(r.domain),
        until: Number(r.until),
        failures: Number(r.failures),
        lastError: String(r.last_error),
      }));
    },
  };
}

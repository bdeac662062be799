/**
 * The event log in PostgreSQL (Store part EventStore; sqlite/events.ts is its twin).
 *
 * Commit order (issue 8): webhook cursors need ids that increase in the order events become
 * visible, across every node. A sequence does not give that: transaction A may draw id 5, B id 6,
 * B commits first, a reader sees 6 and moves its cursor past 5, then A commits 5 behind it.
 * So events are written last in their transaction, after `pg_advisory_xact_lock(events)`: the
 * lock is held until the commit is visible, so event-writing transactions pass this point one at
 * a time, and each reads the newest committed id (READ COMMITTED: a fresh snapshot per
 * statement, taken after the lock was granted) and continues from it (src/events/event-id.ts).
 * Everything before the lock (the message, recipient and queue rows) runs concurrently; only the
 * event insert, NOTIFY and COMMIT are serialised — and PostgreSQL serialises notifying commits
 * anyway. Group commit keeps the number of such transactions small.
 */

import type { QueryConfig } from "pg";
import { incrementUlid, randomUlid } from "../../events/event-id.js";
import { COUNT_COLUMNS, domainPattern, enhancedCodeOf, toEventCount, toEvents } from "../event-rows.js";
import type {
  EventCount,
  EventCountQuery,
  EventFilter,
  EventStore,
  NewEvent,
  PetrelEvent,
} from "../types.js";
import {
  type Client,
  LOCK_EVENTS,
  LOCK_NAMESPACE,
  type Pool,
  queryThenCommit,
  type Row,
  transaction,
} from "./connection.js";

export const EVENT_SELECT = `SELECT e.id, e.type, e.message_id, e.recipient, e.at, e.attempt, e.next_attempt_at,
    e.mx_host, e.ip, e.reply, e.enhanced_code, e.bounce_class, e.bounce_hard, e.reason, e.account_id,
    a.name AS account_name, m.metadata, m.categories
  FROM events e LEFT JOIN accounts a ON a.id = e.account_id LEFT JOIN messages m ON m.id = e.message_id`;

/**
 * Appends events at the end of the caller's transaction (see the header: nothing slow may follow
 * in that transaction); returns their ids in order. One statement (migration 10's
 * petrel_append_events): the lock, the newest id and the insert run server-side, so the lock is
 * held for one round trip less than the three statements took, and the transaction has two
 * statements fewer. The function takes the first id as eventIdsAfter would (a fresh ULID when it
 * sorts after the newest, else the newest plus one) and numbers the rest from it; the same ids are
 * computed here from the first.
 */
export async function writeEvents(
  client: Client,
  events: readonly NewEvent[],
  now = Date.now(),
  /** The transaction's last statement: its COMMIT goes out with it (connection.ts). */
  last = false,
): Promise<string[]> {
  if (events.length === 0) return [];
  const { rows } = await (last ? queryThenCommit : (c: Client, q: QueryConfig) => c.query(q))(client, {
    name: "petrel-append-events",
    text: `SELECT petrel_append_events($1, $2, $3, $4::text[], $5::text[], $6::bigint[], $7::text[],
       $8::bigint[], $9::int[], $10::bigint[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
       $16::boolean[], $17::text[]) AS first`,
    values: [
      LOCK_NAMESPACE,
      LOCK_EVENTS,
      randomUlid(now),
      events.map((e) => e.type),
      events.map((e) => e.messageId),
      events.map((e) => e.accountId ?? null),
      events.map((e) => e.recipient),
      events.map((e) => e.at),
      events.map((e) => e.attempt ?? null),
      events.map((e) => e.nextAttemptAt ?? null),
      events.map((e) => e.mxHost ?? null),
      events.map((e) => e.ip ?? null),
      events.map((e) => e.reply ?? null),
      events.map((e) => e.enhancedCode ?? enhancedCodeOf(e.reply)),
      events.map((e) => e.bounceClass ?? null),
      events.map((e) => (e.bounceHard === undefined ? null : e.bounceHard)),
      events.map((e) => e.reason ?? null),
    ],
  });
  const ids = [String(rows[0].first)];
  for (let i = 1; i < events.length; i++) ids.push(incrementUlid(ids[i - 1]!));
  return ids;
}

/** Events with an id greater than `after`, oldest first, at most `limit`. */
export async function eventsAfter(pool: Pool, after: string, limit: number): Promise<Row[]> {
  const { rows } = await pool.query(`${EVENT_SELECT} WHERE e.id > $1 ORDER BY e.id LIMIT $2`, [after, limit]);
  return rows as Row[];
}

export function createEventStore(pool: Pool): EventStore {
  return {
    async recordEvents(events: readonly NewEvent[]): Promise<string[]> {
      if (events.length === 0) return [];
      return transaction(pool, (client) => writeEvents(client, events, Date.now(), true));
    },

    async listEvents(filter: EventFilter = {}): Promise<PetrelEvent[]> {
      const where: string[] = [];
      const params: unknown[] = [];
      const param = (value: unknown) => {
        params.push(value);
        return `$${params.length}`;
      };
      if (filter.afterId !== undefined) where.push(`e.id > ${param(filter.afterId)}`);
      if (filter.upToId !== undefined) where.push(`e.id <= ${param(filter.upToId)}`);
      if (filter.messageId !== undefined) where.push(`e.message_id = ${param(filter.messageId)}`);
      if (filter.recipient !== undefined)
        where.push(`lower(e.recipient) = lower(${param(filter.recipient)})`);
      if (filter.accountId !== undefined) where.push(`e.account_id = ${param(filter.accountId)}`);
      if (filter.types !== undefined) where.push(`e.type = ANY(${param(filter.types)}::text[])`);
      const order = filter.newest ? "DESC" : "ASC";
      const sql = `${EVENT_SELECT}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY e.id ${order} LIMIT ${param(filter.limit ?? 1000)}`;
      const rows = (await pool.query(sql, params)).rows as Row[];
      if (filter.newest) rows.reverse();
      return toEvents(rows);
    },

    // GET /v1/stats: the range on events_account_at's leading columns bounds the read to the
    // account's events in [since, until); category and domain filter inside it.
    async countEvents(query: EventCountQuery): Promise<EventCount[]> {
      const params: unknown[] = [query.accountId, query.since, query.until, query.bucketMs];
      const where = ["e.account_id = $1", "e.at >= $2", "e.at < $3"];
      let from = "events e";
      if (query.category !== undefined) {
        from += " JOIN messages m ON m.id = e.message_id";
        params.push(query.category);
        where.push(`m.categories IS NOT NULL AND (m.categories::jsonb) ? $${params.length}`);
      }
      if (query.domain !== undefined) {
        params.push(domainPattern(query.domain));
        where.push(`lower(e.recipient) LIKE $${params.length} ESCAPE '\\'`);
      }
      const { rows } = await pool.query(
        `SELECT (e.at / $4::bigint) * $4::bigint AS bucket, ${COUNT_COLUMNS}
         FROM ${from} WHERE ${where.join(" AND ")}
         GROUP BY 1, 2, 3, 4, 5 ORDER BY 1`,
        params,
      );
      return (rows as Row[]).map(toEventCount);
    },
  };
}

/**
 * The suppression list in PostgreSQL (Store part SuppressionStore; sqlite/suppressions.ts is its
 * twin): per account, one row per lower-cased address; an address already suppressed keeps its
 * first row. insertSuppressions() runs inside the queue's and the bounces' transactions, so a hard
 * bounce and its suppression commit together.
 */
import type { NewSuppression, Suppression, SuppressionFilter, SuppressionStore } from "../types.js";
import { batchedReads } from "./batched-reads.js";
import { type Client, type Pool, type Row, transaction } from "./connection.js";

type Entry = NewSuppression & { readonly eventId?: string | null; readonly messageId?: string | null };

/** Adds suppressions in the caller's transaction; returns the keys ("account\0address") that were new. */
export async function insertSuppressions(
  client: Client | Pool,
  entries: readonly Entry[],
): Promise<Set<string>> {
  if (entries.length === 0) return new Set();
  const now = Date.now();
  const { rows } = await client.query(
    `INSERT INTO suppressions (account_id, address, reason, event_id, message_id, detail, created_at)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
     ON CONFLICT (account_id, address) DO NOTHING
     RETURNING account_id, address`,
    [
      entries.map((e) => e.accountId),
      entries.map((e) => e.address.trim().toLowerCase()),
      entries.map((e) => e.reason),
      entries.map((e) => e.eventId ?? null),
      entries.map((e) => e.messageId ?? null),
      entries.map((e) => e.detail?.slice(0, 1000) ?? null),
      entries.map((e) => e.createdAt ?? now),
    ],
  );
  return new Set(rows.map((r) => `${r.account_id}\0${r.address}`));
}

const SELECT = `SELECT s.account_id, a.name AS account_name, s.address, s.reason, s.event_id, s.message_id,
  s.detail, s.created_at FROM suppressions s JOIN accounts a ON a.id = s.account_id`;

export function createSuppressionStore(pool: Pool): SuppressionStore {
  // Every RCPT TO asks (src/app/accept.ts): the asks of one event-loop turn share a statement
  // (batched-reads.ts), keyed "account\0address" like insertSuppressions().
  const find = batchedReads<Suppression>(async (keys) => {
    const pairs = keys.map((k) => k.split("\0"));
    const { rows } =
      keys.length === 1
        ? await pool.query({
            name: "petrel-find-suppression",
            text: `${SELECT} WHERE s.account_id = $1 AND s.address = $2`,
            values: pairs[0],
          })
        : await pool.query({
            name: "petrel-find-suppressions",
            text: `${SELECT} WHERE (s.account_id, s.address) IN
              (SELECT * FROM unnest($1::bigint[], $2::text[]))`,
            values: [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
          });
    return new Map(rows.map((r) => [`${r.account_id}\0${r.address}`, toSuppression(r)]));
  });
  return {
    findSuppression(accountId: number, address: string): Promise<Suppression | undefined> {
      return find(`${accountId}\0${address.trim().toLowerCase()}`);
    },

    async listSuppressions(filter: SuppressionFilter = {}): Promise<Suppression[]> {
      const { rows } = await pool.query(
        `${SELECT} WHERE ($1::bigint IS NULL OR s.account_id = $1) AND ($2::text IS NULL OR s.reason = $2)
         ORDER BY a.name COLLATE "C", s.address COLLATE "C" LIMIT $3`,
        [filter.accountId ?? null, filter.reason ?? null, filter.limit ?? 1_000_000],
      );
      return rows.map(toSuppression);
    },

    async addSuppressions(entries: readonly NewSuppression[]): Promise<number> {
      if (entries.length === 0) return 0;
      // One statement cannot insert the same key twice (ON CONFLICT would see its own row):
      // the first of duplicates wins, as it does in SQLite.
      const unique = new Map<string, NewSuppression>();
      for (const e of entries) {
        const key = `${e.accountId}\0${e.address.trim().toLowerCase()}`;
        if (!unique.has(key)) unique.set(key, e);
      }
      return transaction(
        pool,
        async (client) => (await insertSuppressions(client, [...unique.values()])).size,
      );
    },

    async removeSuppression(accountId: number, address: string): Promise<boolean> {
      const result = await pool.query("DELETE FROM suppressions WHERE account_id = $1 AND address = $2", [
        accountId,
        address.trim().toLowerCase(),
      ]);
      return (result.rowCount ?? 0) > 0;
    },
  };
}

function toSuppression(row: Row): Suppression {
  return {
    accountId: Number(row.account_id),
    accountName: String(row.account_name),
    address: String(row.address),
    reason: String(row.reason),
    eventId: (row.event_id as string | null) ?? null,
    messageId: (row.message_id as string | null) ?? null,
    detail: (row.detail as string | null) ?? null,
    createdAt: Number(row.created_at),
  };
}

/**
 * The suppression list in SQLite (Store part SuppressionStore, issue 5; postgres/suppressions.ts
 * is its twin): per account, one row per address that Petrel must not attempt again (hard
 * bounces, spam complaints, operator additions and imports). The queue
 * and bounce writes use prepareSuppressionWriter() inside their own transactions, so a hard bounce
 * and its suppression commit together.
 *
 * Invariants: addresses are stored lower-cased and compared that way (providers treat local parts
 * case-insensitively in practice, and a suppression missed because of case would cost a second
 * bounce); an address already suppressed keeps its first row (the reason and event that caused
 * it), so a later duplicate never rewrites history.
 */
import type Database from "better-sqlite3";
import type { NewSuppression, Suppression, SuppressionFilter, SuppressionStore } from "../types.js";

type Row = Record<string, unknown>;

/** Adds suppressions inside a caller's transaction; returns whether the row is new. */
export interface SuppressionWriter {
  add(
    entry: NewSuppression & { readonly eventId?: string | null; readonly messageId?: string | null },
  ): boolean;
}

export function prepareSuppressionWriter(db: Database.Database): SuppressionWriter {
  const insert = db.prepare(
    `INSERT INTO suppressions (account_id, address, reason, event_id, message_id, detail, created_at)
     VALUES (@account, @address, @reason, @event, @message, @detail, @at)
     ON CONFLICT (account_id, address) DO NOTHING`,
  );
  return {
    add(entry) {
      return (
        insert.run({
          account: entry.accountId,
          address: entry.address.trim().toLowerCase(),
          reason: entry.reason,
          event: entry.eventId ?? null,
          message: entry.messageId ?? null,
          detail: entry.detail?.slice(0, 1000) ?? null,
          at: entry.createdAt ?? Date.now(),
        }).changes > 0
      );
    },
  };
}

const SELECT = `SELECT s.account_id, a.name AS account_name, s.address, s.reason, s.event_id, s.message_id,
  s.detail, s.created_at FROM suppressions s JOIN accounts a ON a.id = s.account_id`;

export function createSuppressionStore(db: Database.Database): SuppressionStore {
  const writer = prepareSuppressionWriter(db);
  const s = {
    find: db.prepare(`${SELECT} WHERE s.account_id = ? AND s.address = ?`),
    remove: db.prepare("DELETE FROM suppressions WHERE account_id = ? AND address = ?"),
  };
  const addMany = db.transaction((entries: readonly NewSuppression[]) => {
    let added = 0;
    for (const e of entries) if (writer.add(e)) added++;
    return added;
  });

  return {
    async findSuppression(accountId: number, address: string): Promise<Suppression | undefined> {
      const row = s.find.get(accountId, address.trim().toLowerCase()) as Row | undefined;
      return row && toSuppression(row);
    },
    async listSuppressions(filter: SuppressionFilter = {}): Promise<Suppression[]> {
      const where: string[] = [];
      const params: Record<string, unknown> = { limit: filter.limit ?? 1_000_000 };
      if (filter.accountId !== undefined) {
        where.push("s.account_id = @account");
        params.account = filter.accountId;
      }
      if (filter.reason !== undefined) {
        where.push("s.reason = @reason");
        params.reason = filter.reason;
      }
      const sql = `${SELECT}${where.length ? ` WHERE ${where.join(" AND ")}` : ""}
        ORDER BY a.name, s.address LIMIT @limit`;
      return (db.prepare(sql).all(params) as Row[]).map(toSuppression);
    },
    async addSuppressions(entries: readonly NewSuppression[]): Promise<number> {
      return entries.length === 0 ? 0 : addMany.immediate(entries);
    },
    async removeSuppression(accountId: number, address: string): Promise<boolean> {
      return s.remove.run(accountId, address.trim().toLowerCase()).changes > 0;
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

/**
 * The HTTP API's message search (issue 9): one account's messages, newest first, a page at a
 * time. The cursor is the last message id of the previous page (ids are time-sortable ULIDs),
 * so a page is one index range scan: messages(account_id, id), or messages(account_id,
 * mail_from, id) for a sender, or recipients(address, message_id) for a recipient; state,
 * category and time bounds filter inside that range. Never a full scan of the table.
 */
import type Database from "better-sqlite3";
import type { IdempotencyRecord, MessageSearch, MessageSearchRow, RecipientState } from "../types.js";

type Row = Record<string, unknown>;

export function createMessageSearch(db: Database.Database) {
  const recipientsOf = db.prepare("SELECT address, state FROM recipients WHERE message_id = ? ORDER BY id");
  const findKey = db.prepare(
    "SELECT request_hash, response, created_at FROM idempotency_keys WHERE account_id = ? AND key = ? AND created_at >= ?",
  );
  const saveKey = db.prepare(
    `INSERT INTO idempotency_keys (account_id, key, request_hash, response, created_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (account_id, key) DO UPDATE SET request_hash = excluded.request_hash,
       response = excluded.response, created_at = excluded.created_at
     WHERE idempotency_keys.created_at < ?`,
  );
  const pruneKeys = db.prepare("DELETE FROM idempotency_keys WHERE created_at < ?");
  return {
    // Idempotency keys (issue 9) live beside the search: both serve the API's messages.
    async findIdempotencyKey(
      accountId: number,
      key: string,
      since: number,
    ): Promise<IdempotencyRecord | undefined> {
      const row = findKey.get(accountId, key, since) as Row | undefined;
      return row
        ? {
            accountId,
            key,
            requestHash: String(row.request_hash),
            response: String(row.response),
            createdAt: Number(row.created_at),
          }
        : undefined;
    },
    async saveIdempotencyKey(record: IdempotencyRecord, pruneBefore: number): Promise<void> {
      db.transaction(() => {
        pruneKeys.run(pruneBefore);
        // An expired record of the same key is replaced; a live one is kept (the first answer wins).
        saveKey.run(
          record.accountId,
          record.key,
          record.requestHash,
          record.response,
          record.createdAt,
          pruneBefore,
        );
      }).immediate();
    },
    async searchMessages(query: MessageSearch): Promise<MessageSearchRow[]> {
      const where = ["m.account_id = @account"];
      const params: Record<string, unknown> = { account: query.accountId, limit: query.limit };
      let from = "messages m";
      if (query.to !== undefined) {
        // Through the recipient index: that address's messages, then this account's.
        from = "recipients r JOIN messages m ON m.id = r.message_id";
        where.push("r.address = @to");
        params.to = query.to;
      }
      if (query.from !== undefined) {
        where.push("m.mail_from = @from");
        params.from = query.from;
      }
      if (query.before !== undefined) {
        where.push("m.id < @before");
        params.before = query.before;
      }
      if (query.since !== undefined) {
        where.push("m.received_at >= @since");
        params.since = query.since;
      }
      if (query.until !== undefined) {
        where.push("m.received_at < @until");
        params.until = query.until;
      }
      if (query.state !== undefined) {
        where.push("EXISTS (SELECT 1 FROM recipients s WHERE s.message_id = m.id AND s.state = @state)");
        params.state = query.state;
      }
      if (query.scheduledAt !== undefined) {
        where.push("m.send_at > @scheduled");
        params.scheduled = query.scheduledAt;
      }
      if (query.unscheduledAt !== undefined) {
        where.push("(m.send_at IS NULL OR m.send_at <= @unscheduled)");
        params.unscheduled = query.unscheduledAt;
      }
      if (query.category !== undefined) {
        where.push("EXISTS (SELECT 1 FROM json_each(m.categories) c WHERE c.value = @category)");
        params.category = query.category;
      }
      const rows = db
        .prepare(
          `SELECT DISTINCT m.id, m.mail_from, m.size, m.received_at, m.expires_at, m.send_at, m.metadata,
             m.categories
           FROM ${from} WHERE ${where.join(" AND ")} ORDER BY m.id DESC LIMIT @limit`,
        )
        .all(params) as Row[];
      return rows.map((row) => ({
        id: String(row.id),
        mailFrom: String(row.mail_from),
        size: Number(row.size),
        receivedAt: Number(row.received_at),
        expiresAt: Number(row.expires_at),
        sendAt: row.send_at === null || row.send_at === undefined ? null : Number(row.send_at),
        metadata: row.metadata ? (JSON.parse(String(row.metadata)) as Record<string, unknown>) : null,
        categories: row.categories ? (JSON.parse(String(row.categories)) as string[]) : [],
        recipients: (recipientsOf.all(String(row.id)) as Row[]).map((r) => ({
          address: String(r.address),
          state: r.state as RecipientState,
        })),
      }));
    },
  };
}

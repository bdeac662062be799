/**
 * Messages in SQLite (Store part MessageStore; postgres/messages.ts is its twin): the spool's hot
 * path, one transaction inserting a batch of messages (envelope, content, one row per recipient,
 * and each recipient's `processed` event), shared by the store's own connection and the enqueue
 * thread so both write exactly the same rows; and the listings of messages.
 *
 * Events (issue 5): the `processed` event is written here, in the commit that makes the message
 * durable, so an accepted recipient always has it. Kept cheap: one query per batch for the newest
 * event id (after the first write, under the write lock), then one short insert per recipient.
 * A recipient in NewMessage.dropped (e.g. suppressed) is stored `dropped` at once, with its
 * attempt record and a `dropped` event after the `processed` one.
 */
import type Database from "better-sqlite3";
import { domainOf } from "../../address.js";
import type {
  MessageDetail,
  MessageFilter,
  MessageIdFilter,
  MessageStore,
  MessageSummary,
  NewMessage,
  RecipientDetail,
  RecipientState,
} from "../types.js";
import type { EnqueueThread } from "./enqueue-thread.js";
import { prepareEventWriter } from "./events.js";
import { createMessageSearch } from "./message-search.js";

type Row = Record<string, unknown>;

/** A content is stored in parts of this size (migration 14); the store's copy is one part. */
export const CONTENT_PART_BYTES = 256 * 1024;

export function prepareEnqueue(db: Database.Database): (messages: readonly NewMessage[]) => void {
  const insertMessage = db.prepare(
    `INSERT INTO messages (id, account_id, api_key_id, mail_from, size, client_ip, received_at, expires_at,
       metadata, categories, send_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertFirst = db.prepare("INSERT INTO message_contents (message_id, content) VALUES (?, ?)");
  const insertPart = db.prepare(
    "INSERT INTO message_content_parts (message_id, part, content) VALUES (?, ?, ?)",
  );
  const insertRecipient = db.prepare(
    `INSERT INTO recipients (message_id, address, domain, state, next_attempt_at, updated_at)
     VALUES (?, ?, ?, 'queued', ?, ?)`,
  );
  const insertProcessed = db.prepare(
    `INSERT INTO events (id, type, message_id, account_id, recipient, at) VALUES (?, 'processed', ?, ?, ?, ?)`,
  );
  const insertDropped = db.prepare(
    `INSERT INTO recipients (message_id, address, domain, state, next_attempt_at, last_reply, updated_at)
     VALUES (?, ?, ?, 'dropped', NULL, ?, ?) RETURNING id`,
  );
  const dropAttempt = db.prepare(
    `INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
     VALUES (?, ?, ?, 0, 'dropped', ?)`,
  );
  const events = prepareEventWriter(db);
  // In parts (migration 14): each bind is copied by better-sqlite3, so at most one part at a time.
  const insertContent = (id: string, content: Uint8Array): void => {
    insertFirst.run(id, content.subarray(0, CONTENT_PART_BYTES));
    for (let at = CONTENT_PART_BYTES, part = 1; at < content.length; at += CONTENT_PART_BYTES, part++)
      insertPart.run(id, part, content.subarray(at, at + CONTENT_PART_BYTES));
  };
  return db.transaction((messages: readonly NewMessage[]) => {
    let nextId: (() => string) | undefined;
    for (const m of messages) {
      insertMessage.run(
        m.id,
        m.accountId,
        m.apiKeyId,
        m.mailFrom,
        m.content.length,
        m.clientIp,
        m.receivedAt,
        m.expiresAt,
        m.metadata ?? null,
        m.categories && m.categories.length > 0 ? JSON.stringify(m.categories) : null,
        m.sendAt ?? null,
      );
      // After the first write: the write lock is held, so the newest id cannot change under us.
      nextId ??= events.ids();
      insertContent(m.id, m.content);
      const dropped = m.dropped && m.dropped.length > 0 ? m.dropped : undefined;
      for (const address of m.recipients) {
        const drop = dropped?.find((d) => d.address === address);
        if (drop) {
          const reply = `dropped: ${drop.reason}`;
          const { id } = insertDropped.get(m.id, address, domainOf(address), reply, m.receivedAt) as {
            id: number;
          };
          dropAttempt.run(id, m.id, m.receivedAt, reply);
          insertProcessed.run(nextId(), m.id, m.accountId, address, m.receivedAt);
          events.insert(
            [
              {
                type: "dropped",
                messageId: m.id,
                accountId: m.accountId,
                recipient: address,
                at: m.receivedAt,
                reason: drop.reason,
              },
            ],
            nextId,
          );
          continue;
        }
        // Scheduled send: first due at send_at (claims pick recipients by next_attempt_at).
        insertRecipient.run(m.id, address, domainOf(address), m.sendAt ?? m.receivedAt, m.receivedAt);
        insertProcessed.run(nextId(), m.id, m.accountId, address, m.receivedAt);
      }
    }
  });
}

const MESSAGE_SELECT = `SELECT m.id, a.name AS account_name, m.mail_from, m.size, m.received_at, m.send_at
  FROM messages m JOIN accounts a ON a.id = m.account_id`;

/** With `thread`, spool batches commit on the enqueue thread (see enqueue-thread.ts). */
export function createMessageStore(db: Database.Database, thread?: EnqueueThread): MessageStore {
  const insertBatch = prepareEnqueue(db);
  const s = {
    content: db.prepare(
      "SELECT c.content, m.size FROM message_contents c JOIN messages m ON m.id = c.message_id WHERE c.message_id = ?",
    ),
    parts: db.prepare("SELECT content FROM message_content_parts WHERE message_id = ? ORDER BY part"),
    recipientsOf: db.prepare(
      `SELECT address, state, attempts, next_attempt_at, last_reply, updated_at
       FROM recipients WHERE message_id = ? ORDER BY id`,
    ),
  };

  function recipientsOf(messageId: string): RecipientDetail[] {
    return (s.recipientsOf.all(messageId) as Row[]).map((r) => ({
      address: String(r.address),
      state: r.state as RecipientState,
      attempts: Number(r.attempts),
      nextAttemptAt: (r.next_attempt_at as number | null) ?? null,
      lastReply: (r.last_reply as string | null) ?? null,
      updatedAt: Number(r.updated_at),
    }));
  }

  return {
    async enqueueMessages(messages: readonly NewMessage[]): Promise<void> {
      if (thread) return thread.enqueue(messages);
      insertBatch(messages);
    },

    async listMessages(filter: MessageFilter = {}): Promise<MessageSummary[]> {
      const limit = filter.limit ?? 1000;
      const rows = (
        filter.state || filter.domain
          ? db
              .prepare(
                `${MESSAGE_SELECT} WHERE m.id IN (SELECT message_id FROM recipients
                   WHERE (@state IS NULL OR state = @state) AND (@domain IS NULL OR domain = @domain))
                   AND (@scheduled IS NULL OR m.send_at > @scheduled)
                   AND (@unscheduled IS NULL OR m.send_at IS NULL OR m.send_at <= @unscheduled)
                 ORDER BY m.id LIMIT @limit`,
              )
              .all({
                state: filter.state ?? null,
                domain: filter.domain?.toLowerCase() ?? null,
                scheduled: filter.scheduledAt ?? null,
                unscheduled: filter.unscheduledAt ?? null,
                limit,
              })
          : db.prepare(`${MESSAGE_SELECT} ORDER BY m.id LIMIT ?`).all(limit)
      ) as Row[];
      return rows.map((row) => toSummary(row, recipientsOf(String(row.id))));
    },

    async listMessageIds(filter: MessageIdFilter): Promise<string[]> {
      // With a state, recipients_due (state first) bounds the read; a domain alone reads the
      // recipients (an operator's bulk action, not a hot path).
      return db
        .prepare(
          `SELECT DISTINCT r.message_id FROM recipients r JOIN messages m ON m.id = r.message_id
           WHERE (@state IS NULL OR r.state = @state) AND (@domain IS NULL OR r.domain = @domain)
             AND (@account IS NULL OR m.account_id = @account) AND r.message_id > @after
             AND (@unscheduled IS NULL OR m.send_at IS NULL OR m.send_at <= @unscheduled)
           ORDER BY r.message_id LIMIT @limit`,
        )
        .pluck()
        .all({
          state: filter.state ?? null,
          domain: filter.domain ?? null,
          account: filter.accountId ?? null,
          after: filter.after ?? "",
          unscheduled: filter.unscheduledAt ?? null,
          limit: filter.limit,
        }) as string[];
    },

    async getMessage(id: string): Promise<MessageDetail | undefined> {
      const row = db
        .prepare(
          `SELECT m.*, a.name AS account_name, k.name AS api_key_name FROM messages m
           JOIN accounts a ON a.id = m.account_id LEFT JOIN api_keys k ON k.id = m.api_key_id WHERE m.id = ?`,
        )
        .get(id) as Row | undefined;
      if (!row) return undefined;
      const recipients = recipientsOf(id);
      return {
        ...toSummary(row, recipients),
        accountId: Number(row.account_id),
        metadata: row.metadata ? (JSON.parse(String(row.metadata)) as Record<string, unknown>) : null,
        categories: row.categories ? (JSON.parse(String(row.categories)) as string[]) : [],
        clientIp: String(row.client_ip),
        apiKeyName: (row.api_key_name as string | null) ?? null,
        expiresAt: Number(row.expires_at),
        recipientDetails: recipients,
      };
    },

    // The HTTP API's search (issue 9): message-search.ts.
    ...createMessageSearch(db),

    async getMessageContent(id: string): Promise<Buffer | undefined> {
      const row = s.content.get(id) as { content: Buffer; size: number } | undefined;
      if (row === undefined || row.content.length >= row.size) return row?.content;
      // Stored in parts: reassembled into one buffer of the recorded size.
      const out = Buffer.allocUnsafe(row.size);
      let at = row.content.copy(out, 0);
      for (const p of s.parts.iterate(id) as Iterable<{ content: Buffer }>) at += p.content.copy(out, at);
      if (at !== row.size) throw new Error(`message ${id}: content parts hold ${at} bytes, not ${row.size}`);
      return out;
    },
  };
}

function toSummary(row: Row, recipients: readonly RecipientDetail[]): MessageSummary {
  const states: Partial<Record<RecipientState, number>> = {};
  for (const r of recipients) states[r.state] = (states[r.state] ?? 0) + 1;
  return {
    id: String(row.id),
    accountName: String(row.account_name),
    mailFrom: String(row.mail_from),
    size: Number(row.size),
    receivedAt: Number(row.received_at),
    recipientCount: recipients.length,
    states,
    recipients: recipients.map((r) => r.address),
    sendAt: (row.send_at as number | null) ?? null,
  };
}

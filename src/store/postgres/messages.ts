/**
 * Messages in PostgreSQL (Store part MessageStore; sqlite/messages.ts is its twin).
 *
 * Group commit (issue 8): the spool hands over every message that completed DATA in one turn of
 * the event loop as one batch, and the batch is one transaction of a few multi-row statements
 * (messages, contents, recipients with their queue rows and drop records, then the events), so
 * one WAL flush covers them all. synchronous_commit stays on for it: the promise resolves only
 * after COMMIT returned, and only then does the client get `250`. A NOTIFY in the same
 * transaction (one per commit) wakes the delivery workers of every node.
 */
import { domainOf } from "../../address.js";
import type {
  IdempotencyRecord,
  MessageDetail,
  MessageFilter,
  MessageIdFilter,
  MessageSearch,
  MessageSearchRow,
  MessageStore,
  MessageSummary,
  NewEvent,
  NewMessage,
  RecipientDetail,
  RecipientState,
} from "../types.js";
import { batchedReads } from "./batched-reads.js";
import { type Client, type Pool, type Row, transaction } from "./connection.js";
import { writeEvents } from "./events.js";
import { QUEUE_CHANNEL } from "./notify.js";
import { RECIPIENT_NEXT, RECIPIENT_STATE } from "./queue.js";

const MESSAGE_SELECT = `SELECT m.id, a.name AS account_name, m.mail_from, m.size, m.received_at, m.send_at
  FROM messages m JOIN accounts a ON a.id = m.account_id`;

/**
 * The smallest of `at` over `items`; a loop, because Math.min(...spread) throws a RangeError past
 * about 100k arguments (a batch of messages times their recipients can be that many).
 */
export function earliest<T>(items: readonly T[], at: (item: T) => number): number {
  let min = Number.POSITIVE_INFINITY;
  for (const item of items) min = Math.min(min, at(item));
  return min;
}

/**
 * Inserts a batch in the caller's transaction: everything of enqueueMessages() but the commit.
 * One statement writes the messages, contents, recipients, queue rows and drop records (and the
 * NOTIFY, sent at commit whatever its place in the transaction); then the events. Each statement
 * is a round trip, and on this 2-core machine its write and wake-up cost about as much CPU as
 * the work (bench:relay --store postgres: 9 statements per batch became 6).
 */
export async function insertMessages(
  client: Client,
  messages: readonly NewMessage[],
  /** The transaction ends with these (its COMMIT goes out with the events: connection.ts). */
  last = false,
): Promise<void> {
  const rows: { message: string; address: string; dropped: string | null; at: number; due: number }[] = [];
  const events: NewEvent[] = [];
  for (const m of messages) {
    for (const address of m.recipients) {
      const drop = m.dropped?.find((d) => d.address === address);
      rows.push({
        message: m.id,
        address,
        dropped: drop ? `dropped: ${drop.reason}` : null,
        at: m.receivedAt,
        // Scheduled send: first due at send_at.
        due: m.sendAt ?? m.receivedAt,
      });
      events.push({
        type: "processed",
        messageId: m.id,
        accountId: m.accountId,
        recipient: address,
        at: m.receivedAt,
      });
      if (drop) {
        events.push({
          type: "dropped",
          messageId: m.id,
          accountId: m.accountId,
          recipient: address,
          at: m.receivedAt,
          reason: drop.reason,
        });
      }
    }
  }
  const due = rows.filter((r) => r.dropped === null);
  // Contents as parameters of their own ($20 on): pg sends a Buffer parameter in binary, where an
  // array of them would travel as hex text (twice the bytes). Their count is padded to a power of
  // two (unused pairs NULL, skipped) so that the statement's text takes one of ~10 forms, each a
  // named statement, parsed and analysed once per connection: unnamed, this statement's parse,
  // analysis and planning were a fifth of the PostgreSQL backend's CPU in bench:relay.
  const CONTENT = 20;
  const slots = contentSlots(messages.length);
  const values = Array.from(
    { length: slots },
    (_, i) => `($${CONTENT + 2 * i}::text, $${CONTENT + 2 * i + 1}::bytea)`,
  ).join(", ");
  const contents: (string | Buffer | null)[] = [];
  for (const m of messages)
    contents.push(m.id, Buffer.isBuffer(m.content) ? m.content : Buffer.from(m.content));
  for (let i = messages.length; i < slots; i++) contents.push(null, null);
  // The recipients, the queue rows of those to deliver, the attempt records of those dropped at
  // accept (e.g. suppressed). Foreign keys are checked at the end of the statement, when the
  // messages of the first sub-statement are there.
  await client.query({
    ...(slots <= MAX_NAMED_BATCH ? { name: `petrel-insert-messages-${slots}` } : {}),
    text: `WITH m AS (
       INSERT INTO messages (id, account_id, api_key_id, mail_from, size, client_ip, received_at, expires_at,
         metadata, categories, send_at)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::int[], $6::text[],
         $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::bigint[])),
     c AS (INSERT INTO message_contents (message_id, content)
       SELECT v.id, v.content FROM (VALUES ${values}) AS v(id, content) WHERE v.id IS NOT NULL),
     r AS (
       INSERT INTO recipients (message_id, address, domain, state, next_attempt_at, last_reply, updated_at)
       SELECT u.message_id, u.address, u.domain, CASE WHEN u.reply IS NULL THEN 'queued' ELSE 'dropped' END,
         CASE WHEN u.reply IS NULL THEN u.due END, u.reply, u.at
       FROM unnest($12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[], $17::bigint[])
         WITH ORDINALITY AS u(message_id, address, domain, reply, at, due, n)
       ORDER BY u.n
       RETURNING id, message_id, domain, state, next_attempt_at, last_reply, updated_at),
     q AS (
       INSERT INTO queue (recipient_id, domain, next_attempt_at)
       SELECT id, domain, next_attempt_at FROM r WHERE state = 'queued'),
     a AS (
       INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
       SELECT id, message_id, updated_at, 0, 'dropped', last_reply FROM r WHERE state = 'dropped')
     SELECT pg_notify($18, $19::text) WHERE $19::text IS NOT NULL`,
    values: [
      messages.map((m) => m.id),
      messages.map((m) => m.accountId),
      messages.map((m) => m.apiKeyId),
      messages.map((m) => m.mailFrom),
      messages.map((m) => m.content.length),
      messages.map((m) => m.clientIp),
      messages.map((m) => m.receivedAt),
      messages.map((m) => m.expiresAt),
      messages.map((m) => m.metadata ?? null),
      messages.map((m) => (m.categories && m.categories.length > 0 ? JSON.stringify(m.categories) : null)),
      messages.map((m) => m.sendAt ?? null),
      rows.map((r) => r.message),
      rows.map((r) => r.address),
      rows.map((r) => domainOf(r.address)),
      rows.map((r) => r.dropped),
      rows.map((r) => r.at),
      rows.map((r) => r.due),
      // The one wake-up of this transaction (notify.ts), when it makes anything due.
      QUEUE_CHANNEL,
      due.length > 0 ? String(Math.floor(earliest(due, (r) => r.due))) : null,
      ...contents,
    ],
  });
  // Last, under the event lock (events.ts).
  await writeEvents(client, events, Date.now(), last);
}

/** Past this many messages a batch's statement is sent unnamed, unpadded (rare, and it bounds
 * the number of named forms and keeps the parameters below PostgreSQL's 65,535). */
const MAX_NAMED_BATCH = 1024;

/** The number of content parameter pairs for a batch of n messages: the next power of two. */
function contentSlots(n: number): number {
  if (n > MAX_NAMED_BATCH) return n;
  let slots = 1;
  while (slots < n) slots *= 2;
  return slots;
}

/** `onDue` hears of the earliest due time of each batch before it commits (claim-watermark.ts). */
export function createMessageStore(pool: Pool, onDue: (at: number) => void = () => {}): MessageStore {
  async function recipientsOf(messageIds: readonly string[]): Promise<Map<string, RecipientDetail[]>> {
    const { rows } = await pool.query(
      `SELECT r.message_id, r.address, ${RECIPIENT_STATE} AS state, r.attempts, ${RECIPIENT_NEXT} AS next_attempt_at,
         r.last_reply, r.updated_at
       FROM recipients r LEFT JOIN queue q ON q.recipient_id = r.id
       WHERE r.message_id = ANY($1::text[]) ORDER BY r.id`,
      [messageIds],
    );
    const byMessage = new Map<string, RecipientDetail[]>();
    for (const r of rows as Row[]) {
      const list = byMessage.get(String(r.message_id)) ?? [];
      list.push({
        address: String(r.address),
        state: r.state as RecipientState,
        attempts: Number(r.attempts),
        nextAttemptAt: (r.next_attempt_at as number | null) ?? null,
        lastReply: (r.last_reply as string | null) ?? null,
        updatedAt: Number(r.updated_at),
      });
      byMessage.set(String(r.message_id), list);
    }
    return byMessage;
  }

  // The delivery worker asks for the contents of a claim's messages together (src/queue/worker.ts):
  // one statement per event-loop turn (batched-reads.ts).
  const content = batchedReads<Buffer>(async (ids) => {
    const { rows } = await pool.query({
      name: "petrel-contents",
      text: "SELECT message_id, content FROM message_contents WHERE message_id = ANY($1::text[])",
      values: [ids],
    });
    return new Map(rows.map((r) => [String(r.message_id), r.content as Buffer]));
  });

  return {
    async enqueueMessages(messages: readonly NewMessage[]): Promise<void> {
      if (messages.length === 0) return;
      onDue(earliest(messages, (m) => m.receivedAt));
      await transaction(pool, (client) => insertMessages(client, messages, true));
    },

    async listMessages(filter: MessageFilter = {}): Promise<MessageSummary[]> {
      const limit = filter.limit ?? 1000;
      const { rows } =
        filter.state || filter.domain
          ? await pool.query(
              `${MESSAGE_SELECT} WHERE m.id IN (SELECT r.message_id FROM recipients r
                 LEFT JOIN queue q ON q.recipient_id = r.id
                 WHERE ($1::text IS NULL OR ${RECIPIENT_STATE} = $1) AND ($2::text IS NULL OR r.domain = $2))
                 AND ($4::bigint IS NULL OR m.send_at > $4)
                 AND ($5::bigint IS NULL OR m.send_at IS NULL OR m.send_at <= $5)
               ORDER BY m.id LIMIT $3`,
              [
                filter.state ?? null,
                filter.domain?.toLowerCase() ?? null,
                limit,
                filter.scheduledAt ?? null,
                filter.unscheduledAt ?? null,
              ],
            )
          : await pool.query(`${MESSAGE_SELECT} ORDER BY m.id LIMIT $1`, [limit]);
      const recipients = await recipientsOf(rows.map((r) => String(r.id)));
      return rows.map((row) => toSummary(row, recipients.get(String(row.id)) ?? []));
    },

    async listMessageIds(filter: MessageIdFilter): Promise<string[]> {
      const { rows } = await pool.query(
        `SELECT DISTINCT r.message_id FROM recipients r JOIN messages m ON m.id = r.message_id
         LEFT JOIN queue q ON q.recipient_id = r.id
         WHERE ($1::text IS NULL OR ${RECIPIENT_STATE} = $1) AND ($2::text IS NULL OR r.domain = $2)
           AND ($3::bigint IS NULL OR m.account_id = $3) AND r.message_id > $4
           AND ($6::bigint IS NULL OR m.send_at IS NULL OR m.send_at <= $6)
         ORDER BY r.message_id LIMIT $5`,
        [
          filter.state ?? null,
          filter.domain ?? null,
          filter.accountId ?? null,
          filter.after ?? "",
          filter.limit,
          filter.unscheduledAt ?? null,
        ],
      );
      return rows.map((r) => String(r.message_id));
    },

    async getMessage(id: string): Promise<MessageDetail | undefined> {
      const { rows } = await pool.query(
        `SELECT m.*, a.name AS account_name, k.name AS api_key_name FROM messages m
         JOIN accounts a ON a.id = m.account_id LEFT JOIN api_keys k ON k.id = m.api_key_id WHERE m.id = $1`,
        [id],
      );
      const row = rows[0];
      if (!row) return undefined;
      const recipients = (await recipientsOf([id])).get(id) ?? [];
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

    // The HTTP API's search (issue 9): one index range scan, newest first; see sqlite/message-search.ts.
    async searchMessages(query: MessageSearch): Promise<MessageSearchRow[]> {
      const where = ["m.account_id = $1"];
      const values: unknown[] = [query.accountId];
      const param = (value: unknown) => {
        values.push(value);
        return `$${values.length}`;
      };
      let from = "messages m";
      if (query.to !== undefined) {
        from = "recipients r JOIN messages m ON m.id = r.message_id";
        where.push(`r.address = ${param(query.to)}`);
      }
      if (query.from !== undefined) where.push(`m.mail_from = ${param(query.from)}`);
      if (query.before !== undefined) where.push(`m.id < ${param(query.before)}`);
      if (query.since !== undefined) where.push(`m.received_at >= ${param(query.since)}`);
      if (query.until !== undefined) where.push(`m.received_at < ${param(query.until)}`);
      if (query.state !== undefined)
        where.push(
          `EXISTS (SELECT 1 FROM recipients r LEFT JOIN queue q ON q.recipient_id = r.id
            WHERE r.message_id = m.id AND ${RECIPIENT_STATE} = ${param(query.state)})`,
        );
      if (query.scheduledAt !== undefined) where.push(`m.send_at > ${param(query.scheduledAt)}`);
      if (query.unscheduledAt !== undefined)
        where.push(`(m.send_at IS NULL OR m.send_at <= ${param(query.unscheduledAt)})`);
      if (query.category !== undefined)
        where.push(`m.categories IS NOT NULL AND (m.categories::jsonb) ? ${param(query.category)}`);
      const { rows } = await pool.query(
        `SELECT DISTINCT m.id, m.mail_from, m.size, m.received_at, m.expires_at, m.send_at, m.metadata,
           m.categories
         FROM ${from} WHERE ${where.join(" AND ")} ORDER BY m.id DESC LIMIT ${param(query.limit)}`,
        values,
      );
      const recipients = await recipientsOf(rows.map((r) => String(r.id)));
      return (rows as Row[]).map((row) => ({
        id: String(row.id),
        mailFrom: String(row.mail_from),
        size: Number(row.size),
        receivedAt: Number(row.received_at),
        expiresAt: Number(row.expires_at),
        sendAt: row.send_at === null || row.send_at === undefined ? null : Number(row.send_at),
        metadata: row.metadata ? (JSON.parse(String(row.metadata)) as Record<string, unknown>) : null,
        categories: row.categories ? (JSON.parse(String(row.categories)) as string[]) : [],
        recipients: (recipients.get(String(row.id)) ?? []).map((r) => ({
          address: r.address,
          state: r.state,
        })),
      }));
    },

    async findIdempotencyKey(
      accountId: number,
      key: string,
      since: number,
    ): Promise<IdempotencyRecord | undefined> {
      const { rows } = await pool.query(
        "SELECT request_hash, response, created_at FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND created_at >= $3",
        [accountId, key, since],
      );
      const row = rows[0] as Row | undefined;
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
      await pool.query("DELETE FROM idempotency_keys WHERE created_at < $1", [pruneBefore]);
      await pool.query(
        `INSERT INTO idempotency_keys (account_id, key, request_hash, response, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account_id, key) DO UPDATE SET request_hash = excluded.request_hash,
           response = excluded.response, created_at = excluded.created_at
         WHERE idempotency_keys.created_at < $6`,
        [record.accountId, record.key, record.requestHash, record.response, record.createdAt, pruneBefore],
      );
    },

    getMessageContent: content,
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
    // bigint comes back as a string.
    sendAt: row.send_at === null || row.send_at === undefined ? null : Number(row.send_at),
  };
}

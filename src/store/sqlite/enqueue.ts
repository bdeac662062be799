/**
 * The spool's hot path in SQLite: one transaction inserting a batch of messages (envelope,
 * content, one row per recipient, and each recipient's `processed` event). Shared by the store's
 * own connection and the enqueue thread, so both write exactly the same rows.
 *
 * Events (issue 5): the `processed` event is written here, in the commit that makes the message
 * durable, so an accepted recipient always has it. Kept cheap: one query per batch for the newest
 * event id (after the first write, under the write lock), then one short insert per recipient.
 * A recipient in NewMessage.dropped (e.g. suppressed) is stored `dropped` at once, with its
 * attempt record and a `dropped` event after the `processed` one.
 */
import type Database from "better-sqlite3";
import { domainOf } from "../../address.js";
import type { NewMessage } from "../types.js";
import { prepareEventWriter } from "./event-ops.js";

export function prepareEnqueue(db: Database.Database): (messages: readonly NewMessage[]) => void {
  const insertMessage = db.prepare(
    `INSERT INTO messages (id, account_id, api_key_id, mail_from, size, client_ip, received_at, expires_at,
       metadata, categories)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertContent = db.prepare("INSERT INTO message_contents (message_id, content) VALUES (?, ?)");
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
      );
      // After the first write: the write lock is held, so the newest id cannot change under us.
      nextId ??= events.ids();
      insertContent.run(m.id, m.content);
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
        insertRecipient.run(m.id, address, domainOf(address), m.receivedAt, m.receivedAt);
        insertProcessed.run(nextId(), m.id, m.accountId, address, m.receivedAt);
      }
    }
  });
}

/** Connection settings every Petrel connection uses: WAL, fsync at each commit, foreign keys. */
export function configureConnection(db: Database.Database, busyTimeoutMs: number): void {
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  db.pragma("foreign_keys = ON");
}

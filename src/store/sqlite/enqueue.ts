/**
 * The spool's hot path in SQLite: one transaction inserting a batch of messages (envelope,
 * content, one row per recipient). Shared by the store's own connection and the enqueue thread,
 * so both write exactly the same rows.
 */
import type Database from "better-sqlite3";
import { domainOf } from "../../address.js";
import type { NewMessage } from "../types.js";

export function prepareEnqueue(db: Database.Database): (messages: readonly NewMessage[]) => void {
  const insertMessage = db.prepare(
    `INSERT INTO messages (id, account_id, api_key_id, mail_from, size, client_ip, received_at, expires_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertContent = db.prepare("INSERT INTO message_contents (message_id, content) VALUES (?, ?)");
  const insertRecipient = db.prepare(
    `INSERT INTO recipients (message_id, address, domain, state, next_attempt_at, updated_at)
     VALUES (?, ?, ?, 'queued', ?, ?)`,
  );
  return db.transaction((messages: readonly NewMessage[]) => {
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
      );
      insertContent.run(m.id, m.content);
      for (const address of m.recipients) {
        insertRecipient.run(m.id, address, domainOf(address), m.receivedAt, m.receivedAt);
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

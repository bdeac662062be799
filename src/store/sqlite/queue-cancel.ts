/**
 * Cancel (issue 9, POST /v1/messages/{id}/cancel) in SQLite, beside queue.ts (postgres/
 * queue-cancel.ts is its twin): drops every recipient of a message not yet attempted — queued or
 * held, no attempt made (a leased one is `delivering` here, so it is left alone) — each with an
 * attempt record and a `dropped` event whose reason is `cancelled`, in one IMMEDIATE transaction.
 */
import type Database from "better-sqlite3";
import type { QueueStore } from "../types.js";
import { prepareEventWriter } from "./events.js";

type Row = Record<string, unknown>;

export function createQueueCancel(db: Database.Database): Pick<QueueStore, "cancelMessage"> {
  const s = {
    toCancel: db.prepare(
      `SELECT r.id, r.address, m.account_id FROM recipients r JOIN messages m ON m.id = r.message_id
       WHERE r.message_id = ? AND r.state IN ('queued', 'held') AND r.attempts = 0 ORDER BY r.id`,
    ),
    cancelOne: db.prepare(
      `UPDATE recipients SET state = 'dropped', next_attempt_at = NULL, lease_owner = NULL,
         lease_expires_at = NULL, unfinished = 0, last_reply = @reply, updated_at = @now
       WHERE id = @id AND state IN ('queued', 'held') AND attempts = 0`,
    ),
    cancelAttempt: db.prepare(
      `INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
       VALUES (@id, @message, @now, 0, 'dropped', @reply)`,
    ),
  };
  const events = prepareEventWriter(db);
  const cancel = db.transaction((messageId: string, now: number): number => {
    const reply = "dropped: cancelled before sending";
    const cancelling = s.toCancel.all(messageId) as Row[];
    for (const r of cancelling) {
      s.cancelOne.run({ id: r.id, now, reply });
      s.cancelAttempt.run({ id: r.id, message: messageId, now, reply });
    }
    events.insert(
      cancelling.map((r) => ({
        type: "dropped" as const,
        messageId,
        accountId: Number(r.account_id),
        recipient: String(r.address),
        at: now,
        attempt: 0,
        reply,
        reason: "cancelled",
      })),
    );
    return cancelling.length;
  });
  return {
    async cancelMessage(messageId: string, now: number): Promise<number> {
      return cancel.immediate(messageId, now);
    },
  };
}

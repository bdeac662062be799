/**
 * Cancel (issue 9, POST /v1/messages/{id}/cancel) in PostgreSQL, beside queue.ts (sqlite/
 * queue-cancel.ts is its twin): drops every recipient of a message not yet attempted — queued or
 * held, no attempt made, not leased (its queue row has no lease owner) — with its queue row gone,
 * an attempt record and a `dropped` event whose reason is `cancelled`, in one transaction.
 */
import type { QueueStore } from "../types.js";
import { type Pool, transaction } from "./connection.js";
import { writeEvents } from "./events.js";

export function createQueueCancel(pool: Pool): Pick<QueueStore, "cancelMessage"> {
  return {
    cancelMessage(messageId: string, now: number): Promise<number> {
      const reply = "dropped: cancelled before sending";
      return transaction(pool, async (client) => {
        // The queue rows first, in id order (as dropMessage): a claim holding one makes us wait
        // for its lease to be written, and then the leased recipient is left alone.
        await client.query(
          `SELECT 1 FROM queue WHERE recipient_id IN (SELECT id FROM recipients WHERE message_id = $1)
           ORDER BY recipient_id FOR UPDATE`,
          [messageId],
        );
        const { rows } = await client.query(
          `WITH r AS (
             UPDATE recipients r SET state = 'dropped', next_attempt_at = NULL, last_reply = $3, updated_at = $2
             WHERE r.message_id = $1 AND r.state IN ('queued', 'held') AND r.attempts = 0
               AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.recipient_id = r.id AND q.lease_owner IS NOT NULL)
             RETURNING r.id, r.message_id, r.address),
           gone AS (DELETE FROM queue q USING r WHERE q.recipient_id = r.id RETURNING 1),
           a AS (INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
             SELECT id, message_id, $2, 0, 'dropped', $3 FROM r RETURNING 1)
           SELECT r.id, r.address, m.account_id FROM r JOIN messages m ON m.id = r.message_id
           ORDER BY r.id`,
          [messageId, now, reply],
        );
        await writeEvents(
          client,
          rows.map((r) => ({
            type: "dropped" as const,
            messageId,
            accountId: Number(r.account_id),
            recipient: String(r.address),
            at: now,
            attempt: 0,
            reply,
            reason: "cancelled",
          })),
          now,
        );
        return rows.length;
      });
    },
  };
}

/**
 * Issue 11 in PostgreSQL (the twin of the unfinished-claim part of sqlite/queue.ts): claimed rows
 * whose last claim never reached an outcome had an attempt that crashed or hung its worker. Each
 * is counted as an attempt with its record; after MAX_UNFINISHED_ATTEMPTS the recipient leaves
 * the queue as `held`, with a `held` event. One transaction, queue rows locked first.
 */
import { MAX_UNFINISHED_ATTEMPTS } from "../types.js";
import { type Client, type Pool, type Row, transaction } from "./connection.js";
import { writeEvents } from "./events.js";

// Issue 11, worded as in sqlite/queue.ts.
export const UNFINISHED_REPLY =
  "451 4.3.0 the delivery attempt did not finish (the delivery worker stopped: crash or hang)";
const heldReply = (n: number) =>
  `held: the delivery worker stopped during ${n} attempts in a row (crash or hang); release with petrel queue release`;

/** Issue 11: claimed rows whose last claim never reached an outcome (see sqlite/queue.ts). */
export async function countUnfinished(
  relaxedPool: Pool,
  lockQueue: (client: Client, ids: readonly number[]) => Promise<void>,
  owner: string,
  rows: readonly Row[],
  now: number,
): Promise<Set<number>> {
  const ids = rows.map((r) => Number(r.id));
  const held = rows.filter((r) => Number(r.unfinished) >= MAX_UNFINISHED_ATTEMPTS);
  const heldIds = held.map((r) => Number(r.id));
  await transaction(relaxedPool, async (client) => {
    await lockQueue(client, ids);
    await client.query(
      `WITH r AS (UPDATE recipients SET attempts = attempts + 1, last_reply = $2
         WHERE id = ANY($1::bigint[]) RETURNING id, message_id)
       INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, reply)
       SELECT id, message_id, $3, 0, 'deferred', $2 FROM r`,
      [ids, UNFINISHED_REPLY, now],
    );
    if (heldIds.length === 0) return;
    await client.query("DELETE FROM queue WHERE recipient_id = ANY($1::bigint[]) AND lease_owner = $2", [
      heldIds,
      owner,
    ]);
    await client.query(
      `UPDATE recipients SET state = 'held', last_reply = $2, updated_at = $3 WHERE id = ANY($1::bigint[])`,
      [heldIds, heldReply(MAX_UNFINISHED_ATTEMPTS), now],
    );
    await writeEvents(
      client,
      held.map((r) => ({
        type: "held" as const,
        messageId: String(r.message_id),
        accountId: Number(r.account_id),
        recipient: String(r.address),
        at: now,
        attempt: Number(r.attempts) + 1,
        reply: heldReply(Number(r.unfinished)),
        reason: "worker-crashed",
      })),
      now,
    );
  });
  return new Set(heldIds);
}

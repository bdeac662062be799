/**
 * Throttled destinations in PostgreSQL (Store part ThrottleStore; sqlite/throttles.ts is its
 * twin; issue 11). One row per node and destination while throttled; each change writes its
 * `throttled` event in the same transaction (events last: events.ts).
 */

import { throttleFromRow } from "../throttle-rows.js";
import type { DestinationThrottle, ThrottleChangeRecord, ThrottleStore } from "../types.js";
import { type Pool, type Row, transaction } from "./connection.js";
import { writeEvents } from "./events.js";

export function createThrottleStore(pool: Pool): ThrottleStore {
  return {
    async recordThrottle(c: ThrottleChangeRecord): Promise<void> {
      await transaction(pool, async (client) => {
        if (c.kind === "restored") {
          await client.query("DELETE FROM destination_throttles WHERE node = $1 AND destination = $2", [
            c.node,
            c.destination,
          ]);
        } else {
          await client.query(
            `INSERT INTO destination_throttles (node, destination, provider, domains, messages_per_minute,
               connections, configured_messages_per_minute, configured_connections, reply, since, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (node, destination) DO UPDATE SET provider = excluded.provider,
               domains = excluded.domains, messages_per_minute = excluded.messages_per_minute,
               connections = excluded.connections,
               configured_messages_per_minute = excluded.configured_messages_per_minute,
               configured_connections = excluded.configured_connections, reply = excluded.reply,
               since = excluded.since, updated_at = excluded.updated_at`,
            [
              c.node,
              c.destination,
              c.provider,
              JSON.stringify(c.domains),
              c.limits.messagesPerMinute,
              c.limits.connections,
              c.configured.messagesPerMinute,
              c.configured.connections,
              c.reply,
              c.since,
              c.at,
            ],
          );
        }
        await writeEvents(
          client,
          [
            {
              type: "throttled",
              messageId: c.messageId,
              recipient: c.recipient,
              at: c.at,
              reply: c.cause,
              reason: c.description,
            },
          ],
          c.at,
        );
      });
    },
    async listThrottles(): Promise<DestinationThrottle[]> {
      const { rows } = await pool.query("SELECT * FROM destination_throttles ORDER BY destination, node");
      return (rows as Row[]).map(throttleFromRow);
    },
    async clearThrottles(node: string): Promise<number> {
      const result = await pool.query("DELETE FROM destination_throttles WHERE node = $1", [node]);
      return result.rowCount ?? 0;
    },
  };
}

/**
 * Throttled destinations in SQLite (Store part ThrottleStore; issue 11). One row per node and
 * destination while its dispatcher runs it under throttled limits; each change writes its
 * `throttled` event (on the message whose reply or delivery caused it) in the same transaction.
 */
import type Database from "better-sqlite3";
import { throttleFromRow } from "../throttle-rows.js";
import type { DestinationThrottle, ThrottleChangeRecord, ThrottleStore } from "../types.js";
import { prepareEventWriter } from "./events.js";

type Row = Record<string, unknown>;

export function createThrottleStore(db: Database.Database): ThrottleStore {
  const s = {
    upsert: db.prepare(
      `INSERT INTO destination_throttles (node, destination, provider, domains, messages_per_minute, connections,
         configured_messages_per_minute, configured_connections, reply, since, updated_at)
       VALUES (@node, @destination, @provider, @domains, @rate, @connections, @configuredRate,
         @configuredConnections, @reply, @since, @at)
       ON CONFLICT (node, destination) DO UPDATE SET provider = excluded.provider, domains = excluded.domains,
         messages_per_minute = excluded.messages_per_minute, connections = excluded.connections,
         configured_messages_per_minute = excluded.configured_messages_per_minute,
         configured_connections = excluded.configured_connections, reply = excluded.reply,
         since = excluded.since, updated_at = excluded.updated_at`,
    ),
    remove: db.prepare("DELETE FROM destination_throttles WHERE node = ? AND destination = ?"),
    list: db.prepare("SELECT * FROM destination_throttles ORDER BY destination, node"),
    clear: db.prepare("DELETE FROM destination_throttles WHERE node = ?"),
  };
  const events = prepareEventWriter(db);
  const record = db.transaction((c: ThrottleChangeRecord) => {
    if (c.kind === "restored") s.remove.run(c.node, c.destination);
    else {
      s.upsert.run({
        node: c.node,
        destination: c.destination,
        provider: c.provider,
        domains: JSON.stringify(c.domains),
        rate: c.limits.messagesPerMinute,
        connections: c.limits.connections,
        configuredRate: c.configured.messagesPerMinute,
        configuredConnections: c.configured.connections,
        reply: c.reply,
        since: c.since,
        at: c.at,
      });
    }
    events.insert([
      {
        type: "throttled",
        messageId: c.messageId,
        recipient: c.recipient,
        at: c.at,
        reply: c.cause,
        reason: c.description,
      },
    ]);
  });
  return {
    async recordThrottle(change: ThrottleChangeRecord): Promise<void> {
      record.immediate(change);
    },
    async listThrottles(): Promise<DestinationThrottle[]> {
      return (s.list.all() as Row[]).map(throttleFromRow);
    },
    async clearThrottles(node: string): Promise<number> {
      return s.clear.run(node).changes;
    },
  };
}

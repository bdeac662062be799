/**
 * destination_throttles rows as both backends return them (same column names), mapped to
 * DestinationThrottle: one mapping, so the two backends cannot drift apart.
 */
import type { DestinationThrottle } from "./types.js";

type Row = Record<string, unknown>;

export function throttleFromRow(r: Row): DestinationThrottle {
  return {
    node: String(r.node),
    destination: String(r.destination),
    provider: (r.provider as string | null) ?? null,
    domains: JSON.parse(String(r.domains)) as string[],
    limits: { messagesPerMinute: Number(r.messages_per_minute), connections: Number(r.connections) },
    configured: {
      messagesPerMinute: Number(r.configured_messages_per_minute),
      connections: Number(r.configured_connections),
    },
    reply: String(r.reply),
    since: Number(r.since),
    updatedAt: Number(r.updated_at),
  };
}

/**
 * Row → NodeRecord for both backends (src/store/{sqlite,postgres}/nodes.ts), like event-rows.ts:
 * one mapping, numbers converted the same way whichever driver gave them.
 */
import type { NodeRecord, NodeState } from "./types.js";

export const NODE_COLUMNS =
  "id, name, version, pid, started_at, heartbeat_at, state, connections, deliveries";

export function toNode(row: Record<string, unknown>): NodeRecord {
  return {
    id: String(row.id),
    name: String(row.name),
    version: String(row.version),
    pid: Number(row.pid),
    startedAt: Number(row.started_at),
    heartbeatAt: Number(row.heartbeat_at),
    state: String(row.state) as NodeState,
    connections: Number(row.connections),
    deliveries: Number(row.deliveries),
  };
}

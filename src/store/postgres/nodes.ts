/**
 * What the nodes sharing one PostgreSQL database keep in common (Store part NodeStore;
 * sqlite/nodes.ts is its twin): the secrets Petrel generates for itself (the VERP token key),
 * and the node registry (`petrel nodes`), one row per running `petrel serve`.
 * The first node to ask creates a secret; ON CONFLICT makes concurrent first asks agree.
 * Heartbeats are one upsert on the durable pool: a heartbeat that succeeds proves the node can
 * commit, which is what src/app/node-registry.ts uses it for (the store is reachable).
 */
import { NODE_COLUMNS, toNode } from "../node-rows.js";
import type { NodeRecord, NodeStore } from "../types.js";
import type { Pool } from "./connection.js";

export function createNodeStore(pool: Pool): NodeStore {
  return {
    async nodeSecret(name: string, generate: () => string): Promise<string> {
      const existing = await pool.query("SELECT value FROM node_secrets WHERE name = $1", [name]);
      if (existing.rows[0]) return String(existing.rows[0].value);
      await pool.query(
        "INSERT INTO node_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        [name, generate(), Date.now()],
      );
      const { rows } = await pool.query("SELECT value FROM node_secrets WHERE name = $1", [name]);
      return String(rows[0].value);
    },

    async heartbeatNode(n: NodeRecord): Promise<void> {
      await pool.query(
        `INSERT INTO nodes (${NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, state = EXCLUDED.state,
           connections = EXCLUDED.connections, deliveries = EXCLUDED.deliveries`,
        [n.id, n.name, n.version, n.pid, n.startedAt, n.heartbeatAt, n.state, n.connections, n.deliveries],
      );
    },

    async removeNode(id: string): Promise<void> {
      await pool.query("DELETE FROM nodes WHERE id = $1", [id]);
    },

    async listNodes(): Promise<NodeRecord[]> {
      const { rows } = await pool.query(`SELECT ${NODE_COLUMNS} FROM nodes ORDER BY started_at, id`);
      return rows.map(toNode);
    },

    async forgetNodes(before: number): Promise<number> {
      const { rowCount } = await pool.query("DELETE FROM nodes WHERE heartbeat_at < $1", [before]);
      return rowCount ?? 0;
    },
  };
}

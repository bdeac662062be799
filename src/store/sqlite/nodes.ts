/**
 * What the processes sharing one SQLite file keep in common (Store part NodeStore;
 * postgres/nodes.ts is its twin): the secrets Petrel generates for itself (the VERP token key),
 * and the node registry (`petrel nodes`): on SQLite there is one `serve` per database, so at most
 * one live row, plus the rows of runs that were killed.
 */
import type Database from "better-sqlite3";
import { NODE_COLUMNS, toNode } from "../node-rows.js";
import type { NodeRecord, NodeStore } from "../types.js";

export function createNodeStore(db: Database.Database): NodeStore {
  const s = {
    secret: db.prepare("SELECT value FROM node_secrets WHERE name = ?").pluck(),
    putSecret: db.prepare(
      "INSERT INTO node_secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
    ),
    heartbeat: db.prepare(
      `INSERT INTO nodes (${NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, state = excluded.state,
         connections = excluded.connections, deliveries = excluded.deliveries`,
    ),
    remove: db.prepare("DELETE FROM nodes WHERE id = ?"),
    list: db.prepare(`SELECT ${NODE_COLUMNS} FROM nodes ORDER BY started_at, id`),
    forget: db.prepare("DELETE FROM nodes WHERE heartbeat_at < ?"),
  };
  return {
    /** The named secret, created from generate() by whichever process asks first. */
    async nodeSecret(name: string, generate: () => string): Promise<string> {
      const existing = s.secret.get(name) as string | undefined;
      if (existing !== undefined) return existing;
      s.putSecret.run(name, generate(), Date.now());
      return s.secret.get(name) as string;
    },
    async heartbeatNode(n: NodeRecord): Promise<void> {
      s.heartbeat.run(
        n.id,
        n.name,
        n.version,
        n.pid,
        n.startedAt,
        n.heartbeatAt,
        n.state,
        n.connections,
        n.deliveries,
      );
    },
    async removeNode(id: string): Promise<void> {
      s.remove.run(id);
    },
    async listNodes(): Promise<NodeRecord[]> {
      return (s.list.all() as Array<Record<string, unknown>>).map(toNode);
    },
    async forgetNodes(before: number): Promise<number> {
      return s.forget.run(before).changes;
    },
  };
}

/**
 * What the nodes sharing one PostgreSQL database keep in common (Store part NodeStore;
 * sqlite/nodes.ts is its twin): the secrets Petrel generates for itself (the VERP token key).
 * The first node to ask creates the secret; ON CONFLICT makes concurrent first asks agree.
 */
import type { NodeStore } from "../types.js";
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
  };
}

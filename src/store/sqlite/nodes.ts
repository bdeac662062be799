/**
 * What the processes sharing one SQLite file keep in common (Store part NodeStore;
 * postgres/nodes.ts is its twin): the secrets Petrel generates for itself (the VERP token key).
 */
import type Database from "better-sqlite3";
import type { NodeStore } from "../types.js";

export function createNodeStore(db: Database.Database): NodeStore {
  const s = {
    secret: db.prepare("SELECT value FROM node_secrets WHERE name = ?").pluck(),
    putSecret: db.prepare(
      "INSERT INTO node_secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
    ),
  };
  return {
    /** The named secret, created from generate() by whichever process asks first. */
    async nodeSecret(name: string, generate: () => string): Promise<string> {
      const existing = s.secret.get(name) as string | undefined;
      if (existing !== undefined) return existing;
      s.putSecret.run(name, generate(), Date.now());
      return s.secret.get(name) as string;
    },
  };
}

/**
 * The lookup version (Store part LookupVersionStore; postgres/lookups.ts is its twin): one row,
 * changed by the triggers of migration 9.
 */
import type Database from "better-sqlite3";
import type { LookupVersionStore } from "../types.js";

export function createLookupVersionStore(db: Database.Database): LookupVersionStore {
  const version = db.prepare("SELECT version FROM lookup_version WHERE id = 1").pluck();
  return {
    async lookupVersion(): Promise<number> {
      return Number(version.get());
    },
  };
}

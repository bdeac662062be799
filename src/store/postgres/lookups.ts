/**
 * The lookup version (Store part LookupVersionStore; sqlite/lookups.ts is its twin): one row,
 * changed by the row triggers of migration 5, so one round trip replaces the two to four a
 * message's lookups would take.
 */
import type { LookupVersionStore } from "../types.js";
import type { Pool } from "./connection.js";

export function createLookupVersionStore(pool: Pool): LookupVersionStore {
  return {
    async lookupVersion(): Promise<number> {
      const { rows } = await pool.query({
        name: "lookup_version",
        text: "SELECT version FROM lookup_version WHERE id = 1",
      });
      return Number(rows[0]?.version ?? 0);
    },
  };
}

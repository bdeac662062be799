/**
 * The lookup version (Store part LookupVersionStore; sqlite/lookups.ts is its twin): one row,
 * changed by the row triggers of migrations 5 and 11, so one round trip replaces the two to four
 * a message's lookups would take, and none while a serving node's pushed copy is usable
 * (lookup-push.ts).
 */
import type { LookupVersionStore } from "../types.js";
import type { Pool } from "./connection.js";
import type { LookupVersionPush } from "./lookup-push.js";

export function createLookupVersionStore(pool: Pool, push?: LookupVersionPush): LookupVersionStore {
  return {
    async lookupVersion(): Promise<number> {
      const pushed = push?.current();
      if (pushed !== undefined) return pushed;
      const { rows } = await pool.query({
        name: "lookup_version",
        text: "SELECT version FROM lookup_version WHERE id = 1",
      });
      return Number(rows[0]?.version ?? 0);
    },
  };
}

/**
 * Opens the configured store. The only place that knows which implementations exist.
 */

import { inDataDir } from "../config/load.js";
import type { PetrelConfig } from "../config/schema.js";
import { openPostgresStore } from "./postgres/postgres-store.js";
import { describeOpenFailure } from "./sqlite/open-error.js";
import { openSqliteStore } from "./sqlite/sqlite-store.js";
import type { Store } from "./types.js";

export interface OpenStoreOptions {
  /** For the long-running server: commit spool batches off the main thread (SQLite). */
  readonly forServer?: boolean;
  /** Shown in PostgreSQL's pg_stat_activity (which process holds a connection). */
  readonly applicationName?: string;
}

export async function openStore(config: PetrelConfig, options: OpenStoreOptions = {}): Promise<Store> {
  switch (config.store.driver) {
    case "sqlite": {
      const file = inDataDir(config, config.store.sqlite.file);
      try {
        return openSqliteStore({ file, enqueueThread: options.forServer });
      } catch (err) {
        throw describeOpenFailure(file, err); // one line for the operator, not a stack trace
      }
    }
    case "postgres": {
      const pg = config.store.postgres;
      return openPostgresStore({
        url: pg.url,
        poolSize: pg.poolSize,
        statementTimeoutMs: pg.statementTimeoutMs,
        connectTimeoutMs: pg.connectTimeoutMs,
        applicationName: options.applicationName ?? "petrel",
        pushLookupVersion: options.forServer,
      });
    }
  }
}

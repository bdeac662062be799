/**
 * Opens the configured store. The only place that knows which implementations exist.
 */

import { inDataDir } from "../config/load.js";
import type { PetrelConfig } from "../config/schema.js";
import { openSqliteStore } from "./sqlite/sqlite-store.js";
import type { Store } from "./types.js";

export interface OpenStoreOptions {
  /** For the long-running server: commit spool batches off the main thread (SQLite). */
  readonly forServer?: boolean;
}

export async function openStore(config: PetrelConfig, options: OpenStoreOptions = {}): Promise<Store> {
  switch (config.store.driver) {
    case "sqlite":
      return openSqliteStore({
        file: inDataDir(config, config.store.sqlite.file),
        enqueueThread: options.forServer,
      });
  }
}

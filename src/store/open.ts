/**
 * Opens the configured store. The only place that knows which implementations exist.
 */

import { inDataDir } from "../config/load.js";
import type { PetrelConfig } from "../config/schema.js";
import { openSqliteStore } from "./sqlite/sqlite-store.js";
import type { Store } from "./types.js";

export async function openStore(config: PetrelConfig): Promise<Store> {
  switch (config.store.driver) {
    case "sqlite":
      return openSqliteStore({ file: inDataDir(config, config.store.sqlite.file) });
  }
}

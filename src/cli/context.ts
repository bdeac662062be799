/**
 * What every command needs: the effective configuration (--config, --data-dir and the
 * environment) and, for admin commands, the store — opened for the command's duration only, so
 * admin commands work while `petrel serve` runs on the same data directory.
 */
import type { Command } from "commander";
import { loadConfig } from "../config/load.js";
import type { PetrelConfig } from "../config/schema.js";
import type { ServiceContext } from "../services/context.js";
import { openStore } from "../store/open.js";
import type { Store } from "../store/types.js";

export interface CommonOptions {
  config?: string;
  dataDir?: string;
}

/** Adds --config and --data-dir to a command (each command lists them in its --help). */
export function withCommonOptions(command: Command): Command {
  return command
    .option("-c, --config <file>", "YAML configuration file (env: PETREL_CONFIG)")
    .option("-d, --data-dir <dir>", "data directory (env: PETREL_DATA_DIR; default ./data)");
}

export function configFrom(options: CommonOptions, overrides: Record<string, unknown> = {}): PetrelConfig {
  return loadConfig({ file: options.config, overrides: { dataDir: options.dataDir, ...overrides } });
}

export async function withStore<T>(
  options: CommonOptions,
  fn: (store: Store, config: PetrelConfig) => Promise<T>,
): Promise<T> {
  const config = configFrom(options);
  const store = await openStore(config);
  try {
    return await fn(store, config);
  } finally {
    await store.close();
  }
}

/** Opens the store for the command's duration and hands the services' context to `fn`. */
export function withServices<T>(
  options: CommonOptions,
  fn: (ctx: ServiceContext) => Promise<T>,
  extra: Omit<ServiceContext, "store" | "config"> = {},
): Promise<T> {
  return withStore(options, (store, config) => fn({ store, config, ...extra }));
}

/**
 * A consistent online copy of the SQLite store (issue 13 item 6), safe while `serve` runs: SQLite's
 * online backup API through better-sqlite3, on a read-only connection of its own. The copy is a
 * snapshot of one moment — if another connection commits meanwhile, SQLite restarts the copy —
 * so it never holds half a transaction. docs/operations.md says how to restore it.
 */
import { existsSync, renameSync, rmSync } from "node:fs";
import Database from "better-sqlite3";
import { inDataDir } from "../config/load.js";
import type { PetrelConfig } from "../config/schema.js";
import { PetrelError } from "../errors.js";
import { describeOpenFailure } from "../store/sqlite/open-error.js";

export interface BackupResult {
  readonly source: string;
  readonly file: string;
  readonly pages: number;
  readonly bytes: number;
}

export async function backupDatabase(config: PetrelConfig, destination: string): Promise<BackupResult> {
  if (config.store.driver !== "sqlite") {
    throw new PetrelError(
      "invalid-config",
      "petrel backup copies the SQLite store; for PostgreSQL use pg_dump or your database's own backups",
    );
  }
  const source = inDataDir(config, config.store.sqlite.file);
  if (!existsSync(source)) throw new PetrelError("not-found", `no database at ${source}`);
  if (existsSync(destination)) {
    throw new PetrelError(
      "conflict",
      `${destination} exists; choose a new file name (nothing was overwritten)`,
    );
  }
  let db: Database.Database;
  try {
    db = new Database(source, { readonly: true, fileMustExist: true });
    db.pragma("schema_version"); // reads the header: a damaged file fails here, in one line
  } catch (err) {
    throw describeOpenFailure(source, err);
  }
  // Written under a temporary name and renamed: a file at `destination` is always complete.
  const partial = `${destination}.partial`;
  try {
    const progress = await db.backup(partial);
    renameSync(partial, destination);
    const pageSize = db.pragma("page_size", { simple: true }) as number;
    return { source, file: destination, pages: progress.totalPages, bytes: progress.totalPages * pageSize };
  } catch (err) {
    rmSync(partial, { force: true });
    throw err;
  } finally {
    db.close();
  }
}

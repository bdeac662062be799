/**
 * One `petrel serve` per SQLite database (issue 13 item 5). Two servers on one file would both
 * deliver: at start each gives back the leases of this host's earlier runs — the other live
 * process's included — and a message goes out twice.
 *
 * The lock is an exclusive SQLite lock on a small file beside the database (`<db>.serve-lock`):
 * an OS-level lock (fcntl), so it ends with the process however it ends (kill -9 included) and no
 * stale lock file ever needs cleaning. The holder's pid is written to `<db>.serve-pid` for the
 * message the second process prints. The database itself stays shared: the CLI's admin commands
 * and the delivery thread use it while serve runs.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { UsageError } from "../errors.js";

export interface ServeLock {
  release(): void;
}

export function lockDatabase(dbFile: string): ServeLock {
  const lockFile = `${dbFile}.serve-lock`;
  const pidFile = `${dbFile}.serve-pid`;
  mkdirSync(dirname(dbFile), { recursive: true });
  const db = new Database(lockFile, { timeout: 0 });
  try {
    // EXCLUSIVE locking mode keeps the write lock of the first transaction until close.
    db.pragma("locking_mode = EXCLUSIVE");
    db.exec("BEGIN EXCLUSIVE");
    db.exec("CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL)");
    db.exec("COMMIT");
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code !== "SQLITE_BUSY") throw err;
    let pid = "unknown";
    try {
      pid = readFileSync(pidFile, "utf8").trim() || pid;
    } catch {
      // written an instant after the lock is taken: not there yet
    }
    throw new UsageError(
      `another petrel serve (pid ${pid}) is already running on ${dbFile}; stop it first, or give this one another --data-dir`,
    );
  }
  writeFileSync(pidFile, `${process.pid}\n`);
  return {
    release() {
      if (!db.open) return;
      rmSync(pidFile, { force: true });
      db.close();
    },
  };
}

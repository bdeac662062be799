/**
 * Opening a SQLite connection the way every Petrel connection does, and the schema migrations.
 * Shared by the store's own connection and the enqueue thread's.
 */
import type Database from "better-sqlite3";
import { MIGRATIONS } from "./migrations.js";

/** Connection settings every Petrel connection uses: WAL, fsync at each commit, foreign keys. */
export function configureConnection(db: Database.Database, busyTimeoutMs: number): void {
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  db.pragma("foreign_keys = ON");
}

/** Applies the migrations not yet applied; the applied version is PRAGMA user_version. */
export function migrate(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current >= MIGRATIONS.length) return;
  // IMMEDIATE takes the write lock first, so two processes starting together migrate once.
  db.transaction(() => {
    const version = db.pragma("user_version", { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    }
  }).immediate();
}

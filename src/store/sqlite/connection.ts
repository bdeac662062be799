/**
 * Opening a SQLite connection the way every Petrel connection does, and the schema migrations.
 * Shared by the store's own connection and the enqueue thread's.
 *
 * A bound LIMIT: SQLite (3.53 here) reads the value bound to `LIMIT ?` while it plans the query
 * (sqlite3ExprIsInteger with a Parse: the row estimate and the LIMIT counter) and so marks that
 * parameter as one the plan depends on; binding it again, even to the same value, expires the
 * statement, and its next run compiles it anew (sqlite3Reprepare). The delivery claim paid 26 µs
 * a call for that (0.9 µs without). `LIMIT +?` hides the parameter from the planner (a unary
 * plus is not looked through with a Parse), so the statement is compiled once; the hot
 * statements that do this (the claim, the event reads: scanAfter and every filter of list())
 * were checked to keep the same EXPLAIN QUERY PLAN for limits 1, 100 and 1000. The other
 * listings (messages, suppressions, webhook deliveries) keep `LIMIT ?`: one compile per API
 * request is nothing there, and their planner may use the limit.
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

/**
 * `fn` as a write without its own fsync (synchronous=NORMAL: in WAL mode the commit is durable
 * at the next fsync of the log, the next spool commit's), then FULL again. For the writes whose
 * loss to a power cut only repeats work (delivery outcomes, leases, webhook records; see each
 * caller's Durability note). The two PRAGMAs are prepared once per connection: db.pragma()
 * compiles its statement at every call (4.0 µs a pair here, 1.4 prepared).
 */
export function relaxedWrites(db: Database.Database) {
  const normal = db.prepare("PRAGMA synchronous = NORMAL");
  const full = db.prepare("PRAGMA synchronous = FULL");
  return <A extends unknown[], R>(fn: (...args: A) => R): ((...args: A) => R) =>
    (...args: A): R => {
      normal.run();
      try {
        return fn(...args);
      } finally {
        full.run();
      }
    };
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

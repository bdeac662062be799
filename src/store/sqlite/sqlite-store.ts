/**
 * The embedded store: one SQLite file in the data directory, through better-sqlite3. This file
 * only opens the connection and composes the Store from its parts, one file per concern
 * (accounts.ts, domains.ts, messages.ts, queue.ts, events.ts, webhooks.ts, suppressions.ts,
 * bounces.ts, nodes.ts, throttles.ts), each the twin of the file of the same name in src/store/postgres.
 *
 * Durability: WAL journal with synchronous=FULL, so a committed transaction survives kill -9 and
 * power loss (the WAL is fsync'd at every commit). The queue layer batches messages into one
 * enqueueMessages() call per group commit, so one fsync covers many messages.
 * Several processes may open the same file (`petrel serve` plus admin commands); SQLite's locking
 * and busy_timeout serialise the writers.
 * better-sqlite3 is synchronous; methods are async only to honour the Store interface, which a
 * network backend needs.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { Store } from "../types.js";
import { createAccountStore } from "./accounts.js";
import { createBounceStore } from "./bounces.js";
import { configureConnection, migrate } from "./connection.js";
import { createDomainStore } from "./domains.js";
import { EnqueueThread } from "./enqueue-thread.js";
import { createEventStore } from "./events.js";
import { createLeaseStore } from "./leases.js";
import { createLookupVersionStore } from "./lookups.js";
import { createMessageStore } from "./messages.js";
import { createNodeStore } from "./nodes.js";
import { createQueueStore } from "./queue.js";
import { createSuppressionStore } from "./suppressions.js";
import { createThrottleStore } from "./throttles.js";
import { createWebhookStore } from "./webhooks.js";

export interface SqliteStoreOptions {
  readonly file: string;
  /** How long a writer waits for another process's lock before failing. */
  readonly busyTimeoutMs?: number;
  /**
   * Commit spool batches on their own thread (see enqueue-thread.ts), so fsync never stalls the
   * caller's event loop. `petrel serve` turns this on; short-lived admin commands do not need it.
   */
  readonly enqueueThread?: boolean;
}

export interface SqliteStore extends Store {
  readonly kind: "sqlite";
}

export function openSqliteStore(options: SqliteStoreOptions): SqliteStore {
  mkdirSync(dirname(options.file), { recursive: true });
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  const db = new Database(options.file);
  configureConnection(db, busyTimeoutMs);
  migrate(db);
  const thread = options.enqueueThread ? new EnqueueThread(options.file, busyTimeoutMs) : undefined;
  return {
    kind: "sqlite",
    async close(): Promise<void> {
      await thread?.close();
      if (db.open) db.close();
    },
    ...createAccountStore(db),
    ...createDomainStore(db),
    ...createMessageStore(db, thread),
    ...createQueueStore(db),
    ...createEventStore(db),
    ...createWebhookStore(db),
    ...createSuppressionStore(db),
    ...createBounceStore(db),
    ...createNodeStore(db),
    ...createThrottleStore(db),
    ...createLookupVersionStore(db),
    ...createLeaseStore(db),
  };
}

/**
 * The cluster store: every Petrel node points at one PostgreSQL database (docs/cluster.md). This
 * file only opens the pools, applies the migrations and composes the Store from its parts, one
 * file per concern, each the twin of the file of the same name in src/store/sqlite.
 *
 * Two pools: `durable` (synchronous_commit on: accepting mail, operator changes) and `relaxed`
 * (synchronous_commit off: claims, outcomes, webhook cursors; see connection.ts). Connections
 * are opened on demand, so an idle admin command costs one or two.
 */
import type { Store } from "../types.js";
import { createAccountStore } from "./accounts.js";
import { createBounceStore } from "./bounces.js";
import { ClaimWatermark } from "./claim-watermark.js";
import { createPool, migrate, type Pool, type PostgresConnectionOptions } from "./connection.js";
import { createDomainStore } from "./domains.js";
import { createEventStore } from "./events.js";
import { createLeaseStore } from "./leases.js";
import { LookupVersionPush, propagatingLookupWrites } from "./lookup-push.js";
import { createLookupVersionStore } from "./lookups.js";
import { createMessageStore } from "./messages.js";
import { createNodeStore } from "./nodes.js";
import { type DueListener, QueueListener } from "./notify.js";
import { createQueueStore } from "./queue.js";
import { createSuppressionStore } from "./suppressions.js";
import { createThrottleStore } from "./throttles.js";
import { createWebhookStore } from "./webhooks.js";

export interface PostgresStoreOptions extends PostgresConnectionOptions {
  /**
   * For a serving node: keep the lookup version pushed (lookup-push.ts) instead of reading it per
   * message. Admin commands leave it off; their writes still wait for the nodes that have it.
   */
  readonly pushLookupVersion?: boolean;
  /** How long a lookup write waits for a silent node before removing its watcher (tests). */
  readonly lookupConfirmTimeoutMs?: number;
}

export interface PostgresStore extends Store {
  readonly kind: "postgres";
  /** The durable pool, for tests and benchmarks that look at the database directly. */
  readonly pool: Pool;
  /** This node's pushed lookup version, when pushLookupVersion is on (tests look at it). */
  readonly lookupPush: LookupVersionPush | undefined;
}

export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  const pool = createPool(options, "durable");
  const relaxedPool = createPool(options, "relaxed");
  try {
    await migrate(pool);
  } catch (err) {
    await Promise.all([pool.end(), relaxedPool.end()]);
    throw err;
  }
  const watermark = new ClaimWatermark();
  const listener = new QueueListener(options);
  const push = options.pushLookupVersion ? new LookupVersionPush(options) : undefined;
  push?.start();
  const propagating = <T extends object>(part: T): T =>
    propagatingLookupWrites(part, pool, options.lookupConfirmTimeoutMs);
  return {
    kind: "postgres",
    pool,
    lookupPush: push,
    async close(): Promise<void> {
      await Promise.all([listener.close(), push?.close()]);
      await Promise.all([pool.end(), relaxedPool.end()]);
    },
    onDueWork(callback: DueListener): () => void {
      return listener.subscribe((earliest) => {
        // Another node made work due: claims must look below the low-water mark again.
        watermark.lower(earliest);
        callback(earliest);
      });
    },
    ...propagating(createAccountStore(pool)),
    ...propagating(createDomainStore(pool)),
    ...createMessageStore(pool, (at) => watermark.lower(at)),
    ...createQueueStore(pool, relaxedPool, watermark),
    ...createEventStore(pool),
    ...createWebhookStore(pool, relaxedPool),
    ...createSuppressionStore(pool),
    ...createBounceStore(pool, (at) => watermark.lower(at)),
    ...createNodeStore(pool),
    ...createThrottleStore(pool),
    ...createLookupVersionStore(pool, push),
    ...createLeaseStore(relaxedPool),
  };
}

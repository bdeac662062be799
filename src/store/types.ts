/**
 * The Store: everything Petrel keeps, behind one asynchronous interface with one
 * implementation per backend (src/store/sqlite embedded, src/store/postgres for clusters).
 * The interface is composed of one part per concern (src/store/types/*.ts); each backend has one
 * file per part under the same name (sqlite/queue.ts beside postgres/queue.ts). This file is the
 * barrel: import Store types from here.
 *
 * Invariants every implementation keeps:
 * - enqueueMessages() resolves only once the batch is durable; it is all or nothing.
 * - API keys are stored as hashes only; the store never sees a plaintext key.
 * - A sender domain or single sender belongs to exactly one account.
 * - Event ids increase in commit order, across every connection and node.
 * Nothing here is backend-specific; dialect details stay inside each implementation.
 */
import type { AccountStore } from "./types/accounts.js";
import type { BounceStore } from "./types/bounces.js";
import type { DomainStore } from "./types/domains.js";
import type { EventStore, WebhookStore } from "./types/events.js";
import type { LeaseStore } from "./types/leases.js";
import type { LookupVersionStore } from "./types/lookups.js";
import type { MessageStore } from "./types/messages.js";
import type { NodeStore } from "./types/nodes.js";
import type { QueueStore } from "./types/queue.js";
import type { SuppressionStore } from "./types/suppressions.js";
import type { ThrottleStore } from "./types/throttles.js";

export * from "./types/accounts.js";
export * from "./types/bounces.js";
export * from "./types/domains.js";
export * from "./types/errors.js";
export * from "./types/events.js";
export * from "./types/leases.js";
export * from "./types/lookups.js";
export * from "./types/messages.js";
export * from "./types/nodes.js";
export * from "./types/queue.js";
export * from "./types/suppressions.js";
export * from "./types/throttles.js";

export interface Store
  extends AccountStore,
    DomainStore,
    MessageStore,
    QueueStore,
    EventStore,
    WebhookStore,
    SuppressionStore,
    BounceStore,
    NodeStore,
    ThrottleStore,
    LookupVersionStore,
    LeaseStore {
  readonly kind: "sqlite" | "postgres";
  close(): Promise<void>;
}

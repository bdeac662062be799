/**
 * Cluster-wide connection caps (issue 8 item 4): before opening each connection, the dispatcher
 * asks for one of its destination's slots; a destination has `cap` slots for the whole cluster,
 * leased as rows in the store (Store.acquireSlot: docs/architecture.md §4b says why rows, not
 * advisory locks). This node renews the slots it holds every quarter of the lease and gives each
 * back when its connection closes; a node that dies stops renewing, and its slots free
 * themselves when their lease expires.
 *
 * Invariants:
 * - A connection sends a transaction only while its slot's lease, as last written by this node,
 *   has at least a quarter of the lease left (valid()): if renewing fails (database unreachable,
 *   or another node took the slot after an expiry), the connection closes after the transaction
 *   in hand instead of overlapping with the slot's next holder.
 * - A store error while acquiring counts as "no slot now" (the dispatcher asks again shortly):
 *   never a connection without a slot.
 */
import type { Logger } from "../log.js";
import type { HeldSlot, LeaseStore } from "../store/types.js";

const WARN_EVERY_MS = 10_000;

export interface SlotHandle extends HeldSlot {
  /** The lease's end as this node last wrote it (wall clock). */
  validUntil: number;
}

/** What the dispatcher needs; absent on SQLite (one node: its in-memory counts are the cluster's). */
export interface ConnectionSlots {
  acquire(destination: string, cap: number): Promise<SlotHandle | null>;
  release(handle: SlotHandle): void;
  /** May the connection holding this slot start another transaction? */
  valid(handle: SlotHandle): boolean;
}

export interface StoreSlotsOptions {
  readonly store: Pick<LeaseStore, "acquireSlot" | "renewSlots" | "releaseSlots">;
  /** Unique per process: "<node>:<pid>:<random>". */
  readonly owner: string;
  readonly leaseMs: number;
  readonly logger: Logger;
  readonly now?: () => number;
}

export class StoreSlots implements ConnectionSlots {
  private readonly options: StoreSlotsOptions;
  private readonly now: () => number;
  private readonly held = new Map<string, SlotHandle>();
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  /** Give-backs in flight, waited for by stop() (before the store closes). */
  private readonly releasing = new Set<Promise<unknown>>();
  /** When "could not take a slot" was last logged: once per WARN_EVERY_MS, not per destination per retry. */
  private warnedAt = Number.NEGATIVE_INFINITY;
  /** Acquire and release round trips, for the benchmark and /metrics-style looks. */
  readonly stats = { acquired: 0, refused: 0, errors: 0, released: 0, lost: 0 };

  constructor(options: StoreSlotsOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  start(): void {
    this.timer = setInterval(
      () => {
        this.renewing ??= this.renew().finally(() => {
          this.renewing = undefined;
        });
      },
      Math.max(50, Math.floor(this.options.leaseMs / 4)),
    );
    this.timer.unref();
  }

  async acquire(destination: string, cap: number): Promise<SlotHandle | null> {
    const { store, owner, leaseMs, logger } = this.options;
    const now = this.now();
    try {
      const slot = await store.acquireSlot({ destination, cap, owner, now, leaseMs });
      if (slot === null) {
        this.stats.refused++;
        return null;
      }
      this.stats.acquired++;
      const handle: SlotHandle = { destination, slot, validUntil: now + leaseMs };
      this.held.set(key(handle), handle);
      return handle;
    } catch (err) {
      this.stats.errors++;
      if (this.now() - this.warnedAt >= WARN_EVERY_MS) {
        this.warnedAt = this.now();
        logger.warn({ err, destination }, "could not take a connection slot; trying again shortly");
      }
      return null;
    }
  }

  release(handle: SlotHandle): void {
    if (this.held.get(key(handle)) !== handle) return;
    this.held.delete(key(handle));
    this.stats.released++;
    const { store, owner, logger } = this.options;
    // A release that fails only makes the slot wait for its expiry.
    const done: Promise<unknown> = store
      .releaseSlots(owner, [{ destination: handle.destination, slot: handle.slot }])
      .catch((err: unknown) =>
        logger.warn({ err, destination: handle.destination }, "could not give back a slot"),
      )
      .finally(() => this.releasing.delete(done));
    this.releasing.add(done);
  }

  valid(handle: SlotHandle): boolean {
    return this.held.get(key(handle)) === handle && handle.validUntil - this.options.leaseMs / 4 > this.now();
  }

  /** Stops renewing and gives back every slot still held (their connections are closed by now). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.renewing;
    await Promise.all(this.releasing);
    this.held.clear();
    await this.options.store.releaseSlots(this.options.owner).catch(() => {});
  }

  private async renew(): Promise<void> {
    if (this.held.size === 0) return;
    const { store, owner, leaseMs, logger } = this.options;
    const handles = [...this.held.values()];
    const until = this.now() + leaseMs;
    let renewed: HeldSlot[];
    try {
      renewed = await store.renewSlots(owner, handles, until);
    } catch (err) {
      logger.warn({ err, slots: handles.length }, "could not renew connection slots");
      return;
    }
    const kept = new Set(renewed.map(key));
    for (const h of handles) {
      if (kept.has(key(h))) h.validUntil = until;
      else if (this.held.get(key(h)) === h) {
        // Taken by another node after an expiry: this connection must not send any more.
        this.stats.lost++;
        h.validUntil = 0;
        logger.warn(
          { destination: h.destination, slot: h.slot },
          "connection slot lost; closing after this message",
        );
      }
    }
  }
}

function key(h: HeldSlot): string {
  return `${h.slot}\u0000${h.destination}`;
}

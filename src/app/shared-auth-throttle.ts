/**
 * The AUTH failure throttle of a cluster (issue 8 item 4): the failures of one client address
 * count across every node, so spreading guesses over the nodes behind a load balancer gains
 * nothing. Each failure is counted in the store (Store.recordAuthFailure, one upsert); the lockout
 * it causes is kept in this node's AuthThrottle at once, and the lockouts other nodes decided are
 * read every SYNC_MS (one indexed read of the addresses locked now, usually none).
 *
 * Invariants:
 * - The success path costs nothing more: isLocked() is the in-memory AuthThrottle's answer; only
 *   failures reach the store.
 * - A lockout decided on another node reaches this one within SYNC_MS, or at once when this node
 *   sees a failure of the same address (the store's answer to that failure says locked).
 * - The local count always applies as well: with the store unreachable the node still locks an
 *   address out after its own maxFailures.
 * - Attempts refused during a lockout write at most one store update per address at a time, so a
 *   locked-out client cannot turn its retries into database load.
 */
import type { Logger } from "../log.js";
import { type AuthGuard, AuthThrottle } from "../policy/auth-throttle.js";
import type { AuthFailureRule, LeaseStore } from "../store/types.js";

/** How often the lockouts decided on other nodes are read. */
export const SYNC_MS = 1000;

export interface SharedAuthThrottleOptions {
  readonly store: Pick<LeaseStore, "recordAuthFailure" | "authLockouts">;
  readonly rule: AuthFailureRule;
  readonly logger: Logger;
  readonly now?: () => number;
}

export class SharedAuthThrottle implements AuthGuard {
  private readonly options: SharedAuthThrottleOptions;
  private readonly local: AuthThrottle;
  private readonly now: () => number;
  private readonly refusedWrites = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  /** A store outage is logged once per 10 s by sync(), not every second. */
  private warnedAt = Number.NEGATIVE_INFINITY;

  constructor(options: SharedAuthThrottleOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.local = new AuthThrottle({ ...options.rule, now: this.now });
  }

  start(): void {
    this.timer = setInterval(() => {
      this.syncing ??= this.sync().finally(() => {
        this.syncing = undefined;
      });
    }, SYNC_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.syncing;
  }

  isLocked(ip: string): boolean {
    return this.local.isLocked(ip);
  }

  async recordFailure(ip: string): Promise<boolean> {
    const wasLocked = this.local.isLocked(ip);
    const locked = this.local.recordFailure(ip);
    if (wasLocked) {
      // Refused while locked: the cluster hears of it (its lockout is extended), one write at a time.
      if (!this.refusedWrites.has(ip)) {
        this.refusedWrites.add(ip);
        void this.count(ip).finally(() => this.refusedWrites.delete(ip));
      }
      return true;
    }
    return (await this.count(ip)) || locked;
  }

  sweep(): void {
    this.local.sweep();
  }

  /** Reads the lockouts in force (other nodes' included) into the local throttle. */
  async sync(): Promise<void> {
    try {
      for (const l of await this.options.store.authLockouts(this.now())) {
        this.local.adopt(l.ip, l.lockedUntil, l.strikeUntil);
      }
    } catch (err) {
      if (this.now() - this.warnedAt >= 10_000) {
        this.warnedAt = this.now();
        this.options.logger.warn({ err }, "could not read the cluster's AUTH lockouts");
      }
    }
  }

  /** Counts one failure in the store; true when the cluster's count locks the address out. */
  private async count(ip: string): Promise<boolean> {
    const now = this.now();
    try {
      const state = await this.options.store.recordAuthFailure(ip, now, this.options.rule);
      if (state.lockedUntil <= now) return false;
      this.local.adopt(ip, state.lockedUntil, state.strikeUntil);
      return true;
    } catch (err) {
      this.options.logger.warn(
        { err, ip },
        "could not count an AUTH failure in the store; counted on this node only",
      );
      return false;
    }
  }
}

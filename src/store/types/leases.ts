/**
 * Store part: cluster-wide limits (issue 8 item 4). What several nodes on one database must
 * agree on, kept as rows with an expiry so that a dead node's share frees itself:
 *
 * - Connection slots per destination: slot numbers 0..cap-1 of a destination ("provider:google",
 *   "mx:…"), each held by at most one owner until its lease expires. A node asks for a slot
 *   before opening each connection and gives it back when the connection closes; it renews the
 *   slots it holds while their connections are open.
 * - Named leases: one holder at a time for a webhook endpoint ("webhook:<id>") or a periodic job
 *   ("job:<name>"), with the time a job last started, so that a job runs once per interval for
 *   the whole cluster rather than once per node.
 * - AUTH failures per client IP, counted across nodes in a window, with the lockout they cause.
 *
 * Times are the caller's clock in ms (like the queue's leases): nodes' clocks must agree to well
 * within a lease time (NTP). Owners are "<node>:<pid>:<random>", unique per process.
 */

export interface SlotRequest {
  /** The dispatcher's destination key: the same on every node with the same configuration. */
  readonly destination: string;
  /** Slots 0..cap-1 are looked at; a node throttled to a lower cap asks for fewer. */
  readonly cap: number;
  readonly owner: string;
  readonly now: number;
  /** The slot is held until now + leaseMs unless renewed. */
  readonly leaseMs: number;
}

export interface HeldSlot {
  readonly destination: string;
  readonly slot: number;
}

export interface SlotLease extends HeldSlot {
  readonly owner: string;
  readonly expiresAt: number;
}

/** The AUTH failure rule (auth.maxFailures, auth.failureWindowMs, auth.lockoutMs). */
export interface AuthFailureRule {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly lockoutMs: number;
}

/** One address's state after a failure, or as a lockout in force. */
export interface AuthLockout {
  readonly ip: string;
  /** Failures counted in the current window. */
  readonly failures: number;
  /** Locked until then (0 or in the past: not locked). */
  readonly lockedUntil: number;
  /** A failure before then locks again at once (the lockout's end plus one window). */
  readonly strikeUntil: number;
}

export interface LeaseStore {
  /**
   * Leases the lowest free slot of `destination` below `cap` (free: never taken, given back, or
   * its lease expired) to `owner`; null when all `cap` are held. Two owners asking at once never
   * get the same slot.
   */
  acquireSlot(request: SlotRequest): Promise<number | null>;
  /** Extends the given slots to `until` where `owner` still holds them; returns those renewed. */
  renewSlots(owner: string, slots: readonly HeldSlot[], until: number): Promise<HeldSlot[]>;
  /** Gives back the given slots of `owner` (all of its slots when omitted); returns how many. */
  releaseSlots(owner: string, slots?: readonly HeldSlot[]): Promise<number>;
  /** Slots held at `now`, by destination and slot. */
  listSlots(now: number): Promise<SlotLease[]>;
  /** Forgets slot rows free since before `before` (their destinations are rarely used); returns how many. */
  pruneSlots(before: number): Promise<number>;

  /** Takes or extends the lease `name` for `owner` until now + leaseMs if it is free, expired or already `owner`'s. */
  takeLease(name: string, owner: string, now: number, leaseMs: number): Promise<boolean>;
  /** Gives the lease back (if `owner` holds it): another owner may take it at once. */
  releaseLease(name: string, owner: string): Promise<boolean>;
  /**
   * A periodic job's turn: takes the lease `name` until now + leaseMs and records `now` as its
   * last start, only if nobody holds the lease and its last start is at least `everyMs` ago.
   */
  claimJob(name: string, owner: string, now: number, leaseMs: number, everyMs: number): Promise<boolean>;

  /** Counts one failed AUTH of `ip` at `now` under `rule`, for every node; returns the address's state. */
  recordAuthFailure(ip: string, now: number, rule: AuthFailureRule): Promise<AuthLockout>;
  /** Addresses locked out at `now`. */
  authLockouts(now: number): Promise<AuthLockout[]>;
  /** Forgets addresses with nothing in force since before `before`; returns how many. */
  pruneAuthFailures(before: number): Promise<number>;
}

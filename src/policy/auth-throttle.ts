/**
 * Locks out an IP address after repeated failed AUTH attempts (default 5 in 5 minutes) for a
 * cooldown, so a key cannot be guessed from one address. In memory and per process: a restart
 * forgets, which only ever unlocks early.
 *
 * Invariants (issue 13 item 8): a lockout applies to every session of the address, including
 * ones opened before it, at their next AUTH (the caller asks isLocked() there too, not only at
 * connect). The failure window does not restart while the address keeps failing: a failed or
 * refused attempt during a lockout, or within one window after it, locks again at once, so an
 * address that never stops guessing gets one guess per lockout at most, not maxFailures.
 * Memory per address is bounded (at most maxFailures timestamps).
 *
 * In a cluster (issue 8 item 4) src/app/shared-auth-throttle.ts keeps one of these per node as
 * the fast local answer and adds the failures counted in the store by every node (adopt()).
 */

/** What SMTP AUTH and the HTTP API ask: isLocked() is synchronous, the success path's only cost. */
export interface AuthGuard {
  isLocked(ip: string): boolean;
  /** Records a failure (or a refused attempt); true when the address is now locked out. */
  recordFailure(ip: string): boolean | Promise<boolean>;
  sweep(): void;
}
export interface AuthThrottleOptions {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly lockoutMs: number;
  readonly now?: () => number;
}

interface Lockout {
  until: number;
  /** Failures before this time lock again at once (the end of the lockout plus one window). */
  strikeUntil: number;
}

export class AuthThrottle implements AuthGuard {
  private readonly failures = new Map<string, number[]>();
  private readonly lockouts = new Map<string, Lockout>();
  private readonly options: AuthThrottleOptions;
  private readonly now: () => number;

  constructor(options: AuthThrottleOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  isLocked(ip: string): boolean {
    const lockout = this.lockouts.get(ip);
    return lockout !== undefined && lockout.until > this.now();
  }

  /** Records a failure (or an attempt refused while locked); true when the address is now locked out. */
  recordFailure(ip: string): boolean {
    const now = this.now();
    const { maxFailures, windowMs, lockoutMs } = this.options;
    const lockout = this.lockouts.get(ip);
    if (lockout !== undefined && now < lockout.strikeUntil) {
      // Still failing during or just after a lockout: lock again, window not restarted.
      lockout.until = Math.max(lockout.until, now + lockoutMs);
      lockout.strikeUntil = lockout.until + windowMs;
      return true;
    }
    const recent = (this.failures.get(ip) ?? []).filter((t) => t > now - windowMs);
    recent.push(now);
    if (recent.length > maxFailures) recent.shift();
    this.failures.set(ip, recent);
    if (recent.length >= maxFailures) {
      this.lockouts.set(ip, { until: now + lockoutMs, strikeUntil: now + lockoutMs + windowMs });
      return true;
    }
    return false;
  }

  /** Takes over a lockout decided elsewhere (another node's failures), unless one already lasts longer. */
  adopt(ip: string, until: number, strikeUntil: number): void {
    const lockout = this.lockouts.get(ip);
    if (lockout && lockout.until >= until && lockout.strikeUntil >= strikeUntil) return;
    this.lockouts.set(ip, {
      until: Math.max(until, lockout?.until ?? 0),
      strikeUntil: Math.max(strikeUntil, lockout?.strikeUntil ?? 0),
    });
  }

  /** Drops stale entries; call now and then so the maps cannot grow without bound. */
  sweep(): void {
    const now = this.now();
    for (const [ip, times] of this.failures) {
      if (times.every((t) => t <= now - this.options.windowMs)) this.failures.delete(ip);
    }
    for (const [ip, lockout] of this.lockouts) if (lockout.strikeUntil <= now) this.lockouts.delete(ip);
  }
}

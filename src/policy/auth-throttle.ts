/**
 * Locks out an IP address after repeated failed AUTH attempts (default 5 in 5 minutes) for a
 * cooldown, so a key cannot be guessed from one address. In memory and per process: a restart
 * forgets, which only ever unlocks early.
 */
export interface AuthThrottleOptions {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly lockoutMs: number;
  readonly now?: () => number;
}

export class AuthThrottle {
  private readonly failures = new Map<string, number[]>();
  private readonly lockedUntil = new Map<string, number>();
  private readonly options: AuthThrottleOptions;
  private readonly now: () => number;

  constructor(options: AuthThrottleOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  isLocked(ip: string): boolean {
    const until = this.lockedUntil.get(ip);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.lockedUntil.delete(ip);
    return false;
  }

  /** Records a failure; returns true when this failure locks the address out. */
  recordFailure(ip: string): boolean {
    const now = this.now();
    const recent = (this.failures.get(ip) ?? []).filter((t) => t > now - this.options.windowMs);
    recent.push(now);
    if (recent.length >= this.options.maxFailures) {
      this.failures.delete(ip);
      this.lockedUntil.set(ip, now + this.options.lockoutMs);
      return true;
    }
    this.failures.set(ip, recent);
    return false;
  }

  /** Drops stale entries; call now and then so the maps cannot grow without bound. */
  sweep(): void {
    const now = this.now();
    for (const [ip, times] of this.failures) {
      if (times.every((t) => t <= now - this.options.windowMs)) this.failures.delete(ip);
    }
    for (const [ip, until] of this.lockedUntil) if (until <= now) this.lockedUntil.delete(ip);
  }
}

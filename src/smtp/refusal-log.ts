/**
 * Rate-limited logging of refused connections: under a flood, one line per reason per interval,
 * with the number of refusals folded into it, instead of one line per connection (a flood of
 * log lines would cost more than the refusals themselves).
 */
import type { Logger } from "pino";

const INTERVAL_MS = 10_000;

export class RefusalLog {
  /** Refusals per reason since start (for metrics and tests). */
  readonly counts = new Map<string, number>();
  private readonly pending = new Map<string, { since: number; suppressed: number; lastIp: string }>();

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get total(): number {
    let n = 0;
    for (const c of this.counts.values()) n += c;
    return n;
  }

  /** Logs what was folded into the last line of each reason once its interval is over. */
  tick(now: number): void {
    for (const [reason, entry] of this.pending) {
      if (now - entry.since < INTERVAL_MS) continue;
      this.pending.delete(reason);
      if (entry.suppressed > 0) {
        this.logger.warn(
          { reason, remote: entry.lastIp, alsoRefused: entry.suppressed },
          `smtp connection refused ${entry.suppressed} more times in the last ${INTERVAL_MS / 1000} s`,
        );
      }
    }
  }

  refused(reason: string, listener: string, ip: string): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    const now = this.now();
    const entry = this.pending.get(reason);
    if (entry !== undefined && now - entry.since < INTERVAL_MS) {
      entry.suppressed++;
      entry.lastIp = ip;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.pending.set(reason, { since: now, suppressed: 0, lastIp: ip });
    this.logger.warn(
      { reason, listener, remote: ip, ...(suppressed > 0 ? { alsoRefused: suppressed } : {}) },
      suppressed > 0
        ? `smtp connection refused (and ${suppressed} more in the last ${INTERVAL_MS / 1000} s)`
        : "smtp connection refused",
    );
  }
}

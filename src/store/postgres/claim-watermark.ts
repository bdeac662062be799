/**
 * Where a claim's index scan starts (issue 8, "keep the queue tables healthy under churn").
 *
 * Why: every claim and every finished recipient leaves a dead version of its queue row at the
 * front of queue_due (its old next_attempt_at). Vacuum removes them — unless some transaction
 * elsewhere in the database holds an old snapshot (a long REPEATABLE READ report, a stuck
 * session): then they stay, and a claim that scans from the bottom of the index wades through
 * all of them, getting slower with every recipient delivered (the known failure of SKIP LOCKED
 * queues). So each process remembers a low-water mark: below the due time of the first row its
 * last claim found, there was nothing live and unlocked to claim, and the next claim starts its
 * scan there, passing only the dead versions made since.
 *
 * The mark is only a hint, kept safe by lowering it whenever work may have appeared below it:
 * - this process's own writes that make work due (enqueue, deferral, release, retry) lower it
 *   at once; other nodes' writes lower it through their NOTIFY payload (notify.ts);
 * - it never rises while a claim skipped domains or a destination backoff is known, since rows
 *   left out by those filters stay live below it;
 * - a lowering is announced before its transaction commits, so a claim whose snapshot predates
 *   that commit cannot see the rows: for `pendingCommitMs` after each lowering a claim does not
 *   raise the mark above it (otherwise those rows, committed just after the snapshot, sat below
 *   the mark until the next full scan: the "late recipients" of the PostgreSQL bench, under 1%
 *   of recipients tens of seconds late). A commit slower than that is caught by the full scan;
 * - whatever else (a claim of another node that rolled back, a backoff set by a node that then
 *   died) is picked up by a full scan from the bottom every `fullScanEveryMs` (60 s), which bounds
 *   the delay such rows can see. Writes of other nodes rarely need it: they are keyed by their
 *   writer's clock, at or after its own claims' marks; NOTIFY covers clock skew. The full scan
 *   is what passes every dead entry, so it is kept rare.
 */

const BOTTOM = Number.MIN_SAFE_INTEGER;
/** How long a lowering caps raises: longer than an accept or outcome transaction takes to commit. */
const PENDING_COMMIT_MS = 1_000;

export class ClaimWatermark {
  private low = BOTTOM;
  private lastFullScan = Number.NEGATIVE_INFINITY;
  /** Until when a destination backoff set through this process may hold rows back. */
  private backoffUntil = Number.NEGATIVE_INFINITY;
  private readonly fullScanEveryMs: number;
  private readonly pendingCommitMs: number;
  private readonly clock: () => number;
  /**
   * Recent lowerings (wall time, due time), due times increasing from front to back: a sliding
   * window minimum (an older entry with a higher due time can never be the minimum again), so
   * each lowering and each claim costs O(1) amortised.
   */
  private readonly recent: { wall: number; to: number }[] = [];

  constructor(fullScanEveryMs = 60_000, clock: () => number = Date.now, pendingCommitMs = PENDING_COMMIT_MS) {
    this.fullScanEveryMs = fullScanEveryMs;
    this.pendingCommitMs = pendingCommitMs;
    this.clock = clock;
  }

  /** The lowest next_attempt_at the next claim needs to look at. */
  scanFrom(now: number): number {
    const wall = this.clock();
    if (wall - this.lastFullScan >= this.fullScanEveryMs || this.low > now) {
      this.lastFullScan = wall;
      return BOTTOM;
    }
    return this.low;
  }

  /**
   * After a claim that scanned from `from` at `now`: `firstDue` is the due time of the first row
   * it took (undefined: none), `filtered` whether it left domains out (skip list or backoff).
   */
  claimed(from: number, now: number, firstDue: number | undefined, filtered: boolean): void {
    if (filtered || this.backoffUntil > now) return;
    // Raise only from a scan that started at or below the current mark (a lowering that came
    // in meanwhile wins).
    if (from > this.low) return;
    this.low = Math.min(firstDue ?? now, this.pendingFloor());
  }

  /** Work became due at `at` (0 or less: unknown, scan from the bottom), maybe not yet committed. */
  lower(at: number): void {
    const to = at > 0 ? at : BOTTOM;
    if (to < this.low) this.low = to;
    const wall = this.clock();
    this.forgetBefore(wall - this.pendingCommitMs); // bounded even when nothing claims
    while (this.recent.length > 0 && this.recent[this.recent.length - 1]!.to >= to) this.recent.pop();
    this.recent.push({ wall, to });
  }

  /** The lowest due time announced within pendingCommitMs (its commit may be still to come). */
  private pendingFloor(): number {
    this.forgetBefore(this.clock() - this.pendingCommitMs);
    return this.recent[0]?.to ?? Number.POSITIVE_INFINITY;
  }

  private forgetBefore(wall: number): void {
    while (this.recent.length > 0 && this.recent[0]!.wall < wall) this.recent.shift();
  }

  /** A destination backoff until `until` was set through this process. */
  backoff(until: number): void {
    if (until > this.backoffUntil) this.backoffUntil = until;
  }
}

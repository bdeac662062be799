/**
 * The memory budget for message content held while it is received (smtp.limits.maxBufferedBytes),
 * shared by every session of a server: KumoMTA-style back-pressure at a limit instead of growing
 * until the process is killed.
 *
 * Rules: a new DATA is refused (452 4.3.1) once the budget is used up or sessions wait for it; a
 * session in DATA takes bytes as they arrive, and when the budget has none left it stops reading
 * (its socket is paused, its idle timeout runs) until bytes are released. If every holder is
 * waiting, nobody could ever release: the holder that started last is evicted — it reads the rest
 * of its message without keeping it and gets 452 4.3.1 — so older transactions can finish.
 * Invariant: `used` never exceeds `limit` (limit <= 0: no budget, nothing is counted).
 */

export interface BudgetHolder {
  /** Bytes this holder has taken. */
  held: number;
  /** Bytes are available again: try to take them. */
  wake(): void;
  /** Give up the message: release everything, discard the rest of the DATA, answer 452 4.3.1. */
  evict(): void;
}

export class BufferBudget {
  used = 0;
  /** DATA commands refused with 452 4.3.1, and transactions evicted mid-DATA (for metrics). */
  refused = 0;
  evicted = 0;
  private readonly holders = new Set<BudgetHolder>();
  /** Holders waiting for bytes, with how many each asked for. */
  private readonly waiting = new Map<BudgetHolder, number>();

  constructor(readonly limit: number) {}

  get enabled(): boolean {
    return this.limit > 0;
  }

  /** May a new DATA transaction start? Counts a refusal when not. */
  admitsNewData(): boolean {
    if (!this.enabled || (this.used < this.limit && this.waiting.size === 0)) return true;
    this.refused++;
    return false;
  }

  /** Takes n bytes for `holder`; false: it must wait for wake() (or it was evicted). */
  take(holder: BudgetHolder, n: number): boolean {
    if (!this.enabled) return true;
    if (this.used + n <= this.limit) {
      this.holders.add(holder);
      this.used += n;
      holder.held += n;
      this.waiting.delete(holder);
      return true;
    }
    this.waiting.set(holder, n);
    this.breakDeadlock();
    return false;
  }

  /**
   * Charges n bytes without waiting, even past the limit: the copies made while a received
   * message is finished (joined, trace fields, signature, commit) cannot wait, but new DATA
   * must see them.
   */
  charge(holder: BudgetHolder, n: number): void {
    if (!this.enabled) return;
    this.holders.add(holder);
    this.used += n;
    holder.held += n;
  }

  /** Returns everything `holder` took (its DATA reply was given, or it closed). */
  release(holder: BudgetHolder): void {
    if (!this.enabled) return;
    this.used -= holder.held;
    holder.held = 0;
    this.holders.delete(holder);
    this.waiting.delete(holder);
    // Not just wakeWaiters(): the holder that left may have been the last one not waiting, and
    // no take() may ever come again to notice that every remaining holder now waits for bytes
    // that cannot come (a lost wake-up: those sessions would hang until their idle timeout).
    this.breakDeadlock();
  }

  /** Every holder of bytes waits for more (one that holds nothing cannot release anything). */
  private allHoldersWait(): boolean {
    if (this.holders.size === 0) return false;
    for (const h of this.holders) if (!this.waiting.has(h)) return false;
    return true;
  }

  private anyFits(): boolean {
    for (const need of this.waiting.values()) if (this.used + need <= this.limit) return true;
    return false;
  }

  /** Wakes, oldest first, the waiters whose request now fits. */
  private wakeWaiters(): void {
    let free = this.limit - this.used;
    for (const [h, need] of this.waiting) {
      if (need > free) continue;
      free -= need;
      h.wake();
    }
  }

  private breakDeadlock(): void {
    while (this.waiting.size > 0 && this.allHoldersWait() && !this.anyFits()) {
      let last: BudgetHolder | undefined;
      for (const h of this.holders) last = h; // insertion order: the last to start
      this.evicted++;
      this.holders.delete(last!);
      this.waiting.delete(last!);
      this.used -= last!.held;
      last!.held = 0;
      last!.evict();
    }
    this.wakeWaiters();
  }
}

/**
 * Adaptive throttling (issue 11) as plain functions over plain data, and the per-destination
 * rate counters the dispatcher keeps. A throttle reply (classed `reputation`: Yahoo's "[TSS04]",
 * Microsoft's "4.7.650", Gmail's "4.7.28 … rate limited") lowers a destination's message rate and
 * connections at once; after `holdMs`, every `recoverAfter` clean deliveries raise them one step,
 * until the configured limits hold again (KumoMTA's traffic shaping automation does the same with
 * a fixed duration).
 *
 * Invariants: the lowered limits never go under the floors (minMessagesPerMinute, minConnections)
 * nor above the configured limits; replies that arrive within `settleMs` of a lowering do not
 * lower again (they were sent at the old rate, before the receiver could see the change); every
 * function returns the change it made, or null, so the caller can log and record each one.
 * No clock of its own: callers pass `now`.
 */

export interface ThrottleSettings {
  readonly factor: number;
  readonly minMessagesPerMinute: number;
  readonly minConnections: number;
  readonly holdMs: number;
  readonly recoverAfter: number;
  readonly recoverFactor: number;
  readonly settleMs: number;
}

export interface Limits {
  /** Messages per minute; 0 = no limit. */
  readonly messagesPerMinute: number;
  readonly connections: number;
}

export interface ThrottleState {
  /** In force now (the rate is always a number here). */
  readonly limits: Limits;
  /** Where recovery ends: the configured limits, an unlimited rate replaced by the rate observed when first throttled. */
  readonly ceiling: Limits;
  readonly loweredAt: number;
  readonly changedAt: number;
  /** Clean deliveries since the last change. */
  readonly clean: number;
}

export interface ThrottleChange {
  readonly kind: "lowered" | "raised" | "restored";
  readonly from: Limits;
  /** For `restored`: the configured limits (a rate of 0 = no limit). */
  readonly to: Limits;
}

export interface ThrottleStep {
  readonly state: ThrottleState | undefined;
  readonly change: ThrottleChange | null;
}

/**
 * A throttle reply: the limits drop by `factor` (to the floors at most). `base` is the configured
 * limits, `observedPerMinute` the destination's recent rate (what an unlimited rate is lowered from).
 */
export function lower(
  state: ThrottleState | undefined,
  base: Limits,
  observedPerMinute: number,
  now: number,
  s: ThrottleSettings,
): ThrottleStep {
  if (state && now - state.loweredAt < s.settleMs) return { state: { ...state, clean: 0 }, change: null };
  const from: Limits = state?.limits ?? {
    messagesPerMinute:
      base.messagesPerMinute > 0
        ? base.messagesPerMinute
        : Math.max(observedPerMinute, s.minMessagesPerMinute),
    connections: base.connections,
  };
  const to: Limits = {
    messagesPerMinute: Math.max(s.minMessagesPerMinute, Math.floor(from.messagesPerMinute * s.factor)),
    connections: Math.max(s.minConnections, Math.floor(from.connections * s.factor)),
  };
  const ceiling = state?.ceiling ?? {
    messagesPerMinute: from.messagesPerMinute,
    connections: Math.max(base.connections, to.connections),
  };
  const next: ThrottleState = { limits: to, ceiling, loweredAt: now, changedAt: now, clean: 0 };
  if (state && same(to, state.limits)) return { state: next, change: null }; // at the floor: the hold restarts
  return { state: next, change: { kind: "lowered", from, to } };
}

/** A clean delivery: maybe one step back up, or back to the configured limits (state undefined). */
export function recover(
  state: ThrottleState | undefined,
  base: Limits,
  now: number,
  s: ThrottleSettings,
): ThrottleStep {
  if (!state) return { state, change: null };
  const clean = state.clean + 1;
  if (clean < s.recoverAfter || now - state.loweredAt < s.holdMs) {
    return { state: { ...state, clean }, change: null };
  }
  const from = state.limits;
  const to: Limits = {
    messagesPerMinute: Math.min(
      state.ceiling.messagesPerMinute,
      Math.ceil(from.messagesPerMinute * s.recoverFactor),
    ),
    connections: Math.min(state.ceiling.connections, Math.ceil(from.connections * s.recoverFactor)),
  };
  if (same(to, state.ceiling)) {
    return { state: undefined, change: { kind: "restored", from, to: base } };
  }
  return { state: { ...state, limits: to, changedAt: now, clean: 0 }, change: { kind: "raised", from, to } };
}

function same(a: Limits, b: Limits): boolean {
  return a.messagesPerMinute === b.messagesPerMinute && a.connections === b.connections;
}

/** "300/min, 2 connections" (a rate of 0: "no rate limit"). */
export function describeLimits(l: Limits): string {
  const rate = l.messagesPerMinute > 0 ? `${l.messagesPerMinute}/min` : "no rate limit";
  return `${rate}, ${l.connections} connection${l.connections === 1 ? "" : "s"}`;
}

/**
 * A token bucket for messages per minute, holding one second's worth (at least one) so that a
 * limit spreads messages over the minute instead of sending them in a burst.
 */
export class RateBucket {
  private perMinute: number;
  private tokens: number;
  private last: number;

  constructor(perMinute: number, now: number) {
    this.perMinute = perMinute;
    this.tokens = this.capacity;
    this.last = now;
  }

  get rate(): number {
    return this.perMinute;
  }

  private get capacity(): number {
    return Math.max(1, this.perMinute / 60);
  }

  /** Changes the rate; tokens saved up under the old rate do not exceed the new capacity. */
  setRate(perMinute: number, now: number): void {
    this.refill(now);
    this.perMinute = perMinute;
    this.tokens = Math.min(this.tokens, this.capacity);
  }

  /** 0 when a message may go now (its token is taken), else the wait in ms until one may. */
  take(now: number): number {
    if (this.perMinute <= 0) return 0;
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.tokens) * 60_000) / this.perMinute));
  }

  /** Gives back one token taken by take() (the message did not go). */
  untake(now: number): void {
    if (this.perMinute <= 0) return;
    this.refill(now);
    this.tokens = Math.min(this.capacity, this.tokens + 1);
  }

  /** No message taken lately: forgetting this bucket (a new one starts full) changes nothing. */
  full(now: number): boolean {
    if (this.perMinute <= 0) return true;
    this.refill(now);
    return this.tokens >= this.capacity;
  }

  /** Like take() without taking. */
  peek(now: number): number {
    if (this.perMinute <= 0) return 0;
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.max(1, Math.ceil(((1 - this.tokens) * 60_000) / this.perMinute));
  }

  private refill(now: number): void {
    const elapsed = Math.max(0, now - this.last);
    this.last = now;
    this.tokens = Math.min(this.capacity, this.tokens + (elapsed * this.perMinute) / 60_000);
  }
}

/** Messages sent in the last 10 seconds, as a rate per minute (what an unlimited destination ran at). */
export class RecentRate {
  private readonly buckets = new Array<number>(10).fill(0);
  private second = 0;

  add(now: number): void {
    this.advance(now);
    this.buckets[this.second % 10]!++;
  }

  perMinute(now: number): number {
    this.advance(now);
    return this.buckets.reduce((a, b) => a + b, 0) * 6;
  }

  private advance(now: number): void {
    const second = Math.floor(now / 1000);
    if (second - this.second >= 10) this.buckets.fill(0);
    else for (let s = this.second + 1; s <= second; s++) this.buckets[s % 10] = 0;
    if (second > this.second) this.second = second;
  }
}

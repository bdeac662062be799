/**
 * One destination's traffic shaping: its configured limits, the token bucket of its message rate,
 * its recent rate, and its adaptive throttle (throttle.ts). The dispatcher owns one per
 * destination and asks it for the connection cap and a token before each message; it tells it
 * each finished job, and gets back the throttle change that job caused, if any.
 *
 * Invariants: the cap and the rate are the configured ones unless throttled, and never above them.
 * Time: `clock` is monotonic (rates, holds); `wall` stamps what operators see (since).
 */
import type { DeliveryConfig } from "../config/delivery-schema.js";
import type { ShapingLimits } from "./providers.js";
import type { Reply } from "./smtp-client.js";
import {
  type Limits,
  lower,
  RateBucket,
  RecentRate,
  recover,
  type ThrottleChange,
  type ThrottleState,
  type ThrottleStep,
} from "./throttle.js";

/** A throttle change with the recipient and reply (or delivery) that caused it. */
export interface CausedChange extends ThrottleChange {
  readonly recipient: string;
  readonly reply: string;
}

export class Shaping {
  readonly limits: ShapingLimits;
  private readonly settings: DeliveryConfig["throttle"];
  private readonly clock: () => number;
  private readonly bucket: RateBucket;
  private readonly recent = new RecentRate();
  private state: ThrottleState | undefined;
  /** The reply that lowered the limits last, and when (wall clock). */
  private reply = "";
  private since = 0;

  constructor(limits: ShapingLimits, settings: DeliveryConfig["throttle"], clock: () => number) {
    this.limits = limits;
    this.settings = settings;
    this.clock = clock;
    this.bucket = new RateBucket(limits.maxMessagesPerMinute, clock());
  }

  /** Connections allowed now. */
  get cap(): number {
    return Math.min(this.limits.maxConnections, this.state?.limits.connections ?? Number.POSITIVE_INFINITY);
  }

  get throttled(): boolean {
    return this.state !== undefined;
  }

  /** Nothing to remember: not throttled and the rate's bucket full again. */
  get forgettable(): boolean {
    return this.state === undefined && this.bucket.full(this.clock());
  }

  get configured(): Limits {
    return { messagesPerMinute: this.limits.maxMessagesPerMinute, connections: this.limits.maxConnections };
  }

  /** 0: a message may go now (its token is taken); else the wait in ms. */
  take(): number {
    return this.bucket.take(this.clock());
  }

  /** Gives back a token taken for a message that did not go (no connection slot). */
  untake(): void {
    this.bucket.untake(this.clock());
  }

  /** A throttle reply to `recipient`: the limits drop (unless settling or at the floors). */
  throttle(reply: Reply, recipient: string, wall: number): CausedChange | null {
    if (!this.settings.enabled) return null;
    const now = this.clock();
    const step = lower(this.state, this.configured, this.recent.perMinute(now), now, this.settings);
    if (step.change) {
      this.reply = reply.text;
      this.since = wall;
    }
    return this.apply(step, recipient, reply.text);
  }

  /** A finished job's replies: the first throttle reply lowers, a delivery may raise. */
  finished(
    replies: ReadonlyMap<string, Reply>,
    isThrottle: (r: Reply) => boolean,
    wall: number,
  ): CausedChange | null {
    this.recent.add(this.clock());
    let delivered: [string, Reply] | undefined;
    for (const [to, reply] of replies) {
      if (isThrottle(reply)) return this.throttle(reply, to, wall);
      if (reply.code >= 200 && reply.code < 300) delivered ??= [to, reply];
    }
    if (!delivered || !this.state) return null;
    return this.apply(
      recover(this.state, this.configured, this.clock(), this.settings),
      delivered[0],
      delivered[1].text,
    );
  }

  /** The reply that lowered the limits last, and when (wall clock). */
  get lastThrottle(): { readonly reply: string; readonly since: number } {
    return { reply: this.reply, since: this.since };
  }

  /** The throttle in force, or undefined. */
  snapshot(): { limits: Limits; configured: Limits; reply: string; since: number } | undefined {
    if (!this.state) return undefined;
    return { limits: this.state.limits, configured: this.configured, reply: this.reply, since: this.since };
  }

  private apply(step: ThrottleStep, recipient: string, reply: string): CausedChange | null {
    this.state = step.state;
    if (!step.change) return null;
    this.bucket.setRate(
      this.state ? this.state.limits.messagesPerMinute : this.limits.maxMessagesPerMinute,
      this.clock(),
    );
    return { ...step.change, recipient, reply };
  }
}

/**
 * Store part: throttled destinations (issue 11, adaptive throttling). The dispatcher keeps a
 * destination's throttled limits in memory; every change is written here with a `throttled`
 * event on the message whose reply (or delivery) caused it, so that operators see why mail slows
 * down (`petrel queue list`, the message explanation, the event log and webhooks).
 */

export interface ThrottleLimits {
  /** Messages per minute; 0 = no limit. */
  readonly messagesPerMinute: number;
  readonly connections: number;
}

/** A destination running under throttled limits on one node. */
export interface DestinationThrottle {
  readonly node: string;
  /** "provider:google", "mx:mx1.example.com,mx2.example.com", "relay:host:port". */
  readonly destination: string;
  readonly provider: string | null;
  /** Recipient domains seen for the destination. */
  readonly domains: readonly string[];
  readonly limits: ThrottleLimits;
  readonly configured: ThrottleLimits;
  /** The reply that lowered the limits last. */
  readonly reply: string;
  /** When they were lowered last (ms). */
  readonly since: number;
  readonly updatedAt: number;
}

/** One change, as the delivery engine reports it. */
export interface ThrottleChangeRecord {
  readonly node: string;
  readonly destination: string;
  readonly provider: string | null;
  readonly domains: readonly string[];
  readonly kind: "lowered" | "raised" | "restored";
  /** The limits now (for `restored`: the configured ones). */
  readonly limits: ThrottleLimits;
  readonly configured: ThrottleLimits;
  /** The reply that lowered the limits (kept on raise), or for `restored` the last delivery's. */
  readonly reply: string;
  readonly since: number;
  /** The message and recipient whose reply or delivery caused the change (the event's). */
  readonly messageId: string;
  readonly recipient: string;
  /** The reply of that message (the throttle reply, or the delivery). */
  readonly cause: string;
  readonly at: number;
  /** One line for operators ("google: lowered from 600/min, 5 connections to 300/min, 2 connections"). */
  readonly description: string;
}

export interface ThrottleStore {
  /** Applies one change (a row while throttled, none once restored) and writes its `throttled` event, in one transaction. */
  recordThrottle(change: ThrottleChangeRecord): Promise<void>;
  /** Throttled destinations on every node, by destination. */
  listThrottles(): Promise<DestinationThrottle[]>;
  /** Forgets a node's rows (its engine starts with no throttle in memory). */
  clearThrottles(node: string): Promise<number>;
}

/**
 * The data the delivery worker (src/queue/worker.ts) and the dispatcher exchange: a job (one
 * message, one recipient domain, some recipients), its result, and the throttle changes and
 * snapshots the dispatcher reports. Plain data only.
 */
import type { ResolvedRoute } from "./routes.js";
import type { Reply } from "./smtp-client.js";
import type { Limits, ThrottleChange } from "./throttle.js";

export interface DispatchJob {
  readonly messageId: string;
  readonly mailFrom: string;
  readonly content: Buffer;
  /** The recipients' domain (one per job). */
  readonly domain: string;
  readonly recipients: readonly string[];
  readonly route: ResolvedRoute;
  /**
   * Issue 5: the envelope sender per recipient (VERP, src/bounces/return-path.ts); recipients with
   * different senders go in transactions of their own. Absent: `mailFrom` for all.
   */
  readonly returnPaths?: ReadonlyMap<string, string> | undefined;
}

export interface AttemptInfo {
  readonly mxHost: string | null;
  readonly ip: string | null;
  readonly port: number | null;
  readonly sourceIp: string | null;
  readonly tls: string | null;
  readonly durationMs: number;
}

export type JobResult =
  | {
      readonly kind: "done";
      readonly replies: ReadonlyMap<string, Reply>;
      readonly attempt: AttemptInfo;
      /** Not before this time (the destination is suspended until then). */
      readonly notBefore: number | null;
    }
  | { readonly kind: "released" };

/** One change of a destination's throttled limits, with what caused it. */
export interface ThrottleEvent extends ThrottleChange {
  readonly destination: string;
  readonly provider: string | null;
  /** Recipient domains seen for the destination. */
  readonly domains: readonly string[];
  /** The message and recipient whose reply (lowered) or delivery (raised, restored) caused it. */
  readonly messageId: string;
  readonly recipient: string;
  /** The throttle reply (lowered), or the clean delivery's reply. */
  readonly reply: string;
  readonly at: number;
  /** No step back up before this time (`deps.now` clock). */
  readonly holdUntil: number | null;
  /** The destination's configured limits. */
  readonly configured: Limits;
  /** The reply that lowered the limits last, and when (`deps.now` clock). */
  readonly throttleReply: string;
  readonly since: number;
}

/** A destination's throttle as it stands (Dispatcher.throttles()). */
export interface ThrottleSnapshot {
  readonly destination: string;
  readonly provider: string | null;
  readonly domains: readonly string[];
  readonly limits: Limits;
  readonly configured: Limits;
  readonly reply: string;
  readonly since: number;
}

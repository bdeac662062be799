/**
 * Store part: delivery (issue 3): leases, outcomes, attempt history, operator actions.
 *
 * Leases: a claimed recipient is `delivering` with an owner and an expiry; an expired lease is
 * due again, so a crashed worker never strands mail. recordOutcomes() is the one place where a
 * delivery changes a recipient's state, in one transaction with its attempt record. Recipients
 * carry lease columns (owner, expiry) so that delivery workers on several nodes can claim work
 * with `FOR UPDATE SKIP LOCKED` (postgres) or one writer (sqlite).
 */
import type { NewMessage, RecipientState } from "./messages.js";

export interface ClaimRequest {
  /** Unique per running worker: "<node>:<pid>:<random>", so a node can recognise its own leases. */
  readonly owner: string;
  readonly now: number;
  /** The lease ends at now + leaseMs unless renewed. */
  readonly leaseMs: number;
  readonly limit: number;
  /** Domains not to claim this time (their work already waits in memory). */
  readonly skipDomains?: readonly string[];
}

export interface ClaimedRecipient {
  readonly id: number;
  readonly messageId: string;
  readonly address: string;
  readonly domain: string;
  /** Attempts made before this one. */
  readonly attempts: number;
  readonly mailFrom: string;
  readonly size: number;
  readonly receivedAt: number;
  readonly expiresAt: number;
  /** The message's account (DSNs to its sender are queued under it). */
  readonly accountId: number;
}

/**
 * Issue 11: claims of one recipient that never reached an outcome (its worker crashed or hung)
 * before it is held instead of claimed again. Each such claim is also recorded as an attempt.
 */
export const MAX_UNFINISHED_ATTEMPTS = 3;

/** A message to queue with outcomes (a DSN), if the outcome of any of `recipientIds` applies. */
export interface OutcomeNotification {
  readonly message: NewMessage;
  /** The bounced/expired recipients it reports: a repeated outcome that changes nothing sends no second DSN. */
  readonly recipientIds: readonly number[];
}

export type OutcomeState = "delivered" | "deferred" | "bounced" | "expired";

/** One try at delivering to one recipient, as `petrel queue show` lists it. */
export interface AttemptRecord {
  readonly at: number;
  readonly durationMs: number;
  /** MX or relay host name, null when no connection was made (DNS failure, destination backoff). */
  readonly mxHost: string | null;
  readonly ip: string | null;
  readonly port: number | null;
  readonly sourceIp: string | null;
  /** "TLSv1.3 TLS_AES_256_GCM_SHA384", or null for plaintext. */
  readonly tls: string | null;
  /** The remote reply ("250 2.0.0 Ok") or our reason ("451 4.4.1 connect to …: ECONNREFUSED"). */
  readonly reply: string;
}

export interface RecipientOutcome {
  readonly recipientId: number;
  /** The lease owner; a deferral from an owner that lost its lease is ignored. */
  readonly owner: string;
  readonly state: OutcomeState;
  /** When a deferred recipient is due again. */
  readonly nextAttemptAt: number | null;
  readonly attempt: AttemptRecord;
  // Issue 5: filled by the dispatcher from the bounce classifier (src/bounces) when known; the
  // event of this outcome carries them. enhancedCode defaults to the one in the reply text.
  readonly enhancedCode?: string | null;
  readonly bounceClass?: string | null;
  readonly bounceHard?: boolean | null;
}

export interface DeliveryAttempt extends AttemptRecord {
  readonly recipient: string;
  readonly status: OutcomeState | "dropped";
}

export interface DestinationBackoff {
  readonly domain: string;
  readonly until: number;
  /** Consecutive connection-level failures. */
  readonly failures: number;
  readonly lastError: string;
}

export interface QueueCounts {
  readonly byState: Partial<Record<RecipientState, number>>;
  readonly byDestination: ReadonlyArray<{
    readonly domain: string;
    readonly states: Partial<Record<RecipientState, number>>;
    readonly backoffUntil: number | null;
  }>;
}

/** One account's recipients not yet final (the dashboard's overview). */
export interface AccountQueue {
  /** Pending recipients by state (queued, deferred, delivering, held). */
  readonly byState: Partial<Record<RecipientState, number>>;
  /** The oldest message with a pending recipient, or null when none is pending. */
  readonly oldest: { readonly id: string; readonly receivedAt: number } | null;
  /** Pending recipients per destination domain, most first. */
  readonly destinations: ReadonlyArray<{ readonly domain: string; readonly pending: number }>;
  /**
   * False when the account has more pending recipients than the limit asked: then the figures
   * are of the first limit + 1 found (a lower bound), and `oldest` is the oldest among them.
   */
  readonly complete: boolean;
}

export type QueueTarget = { readonly messageId: string } | { readonly all: true };

export interface QueueStore {
  /** Leases up to `limit` due recipients (oldest due first), skipping destinations in backoff. */
  claimDue(request: ClaimRequest): Promise<ClaimedRecipient[]>;
  /** Extends every lease `owner` holds to `until`; returns how many. */
  renewLeases(owner: string, until: number): Promise<number>;
  /**
   * Gives back leases without an attempt (shutdown, or a restarted node recovering its own
   * leases): every `delivering` recipient whose owner starts with `ownerPrefix` is due at `now`.
   */
  releaseLeases(ownerPrefix: string, now: number): Promise<number>;
  /**
   * Applies outcomes and appends their attempt records, all in one durable transaction, with
   * `notifications` (issue 11: the DSNs to senders caused by these bounces and expiries), so a
   * crash can never keep the bounce and lose its DSN.
   */
  recordOutcomes(
    outcomes: readonly RecipientOutcome[],
    notifications?: readonly OutcomeNotification[],
  ): Promise<void>;
  /**
   * Gives back leases `owner` holds on these recipients without an attempt (the dispatcher
   * released them before they started): due at `now`, their claim not counted as unfinished.
   */
  giveBack(recipientIds: readonly number[], owner: string, now: number): Promise<number>;
  /** Every attempt for a message, oldest first. */
  listAttempts(messageId: string): Promise<DeliveryAttempt[]>;
  /**
   * Recipient counts by state and by destination domain (with any destination backoff); byState
   * counts queued recipients of messages whose send_at is after `now` as `scheduled`.
   */
  queueCounts(filter?: { readonly domain?: string; readonly now?: number }): Promise<QueueCounts>;
  /**
   * One account's pending recipients: counts by state, the oldest message, the destinations;
   * reads at most limit + 1 recipients (a backlog bigger than that is reported incomplete).
   */
  accountQueue(accountId: number, limit: number): Promise<AccountQueue>;
  /**
   * Makes queued/deferred recipients due at `now` (one message, or all) and lifts their
   * destinations' backoff. `all` leaves scheduled messages (send_at ahead, never attempted) to
   * their send time; one message is made due whatever its send time.
   */
  retryNow(target: QueueTarget, now: number): Promise<number>;
  /** Holds a message's queued/deferred recipients (state `held`) until released. */
  holdMessage(messageId: string, now: number): Promise<number>;
  /** Returns held recipients to the queue, due at `now` (or at the message's send_at, if later). */
  releaseMessage(messageId: string, now: number): Promise<number>;
  /** Drops every recipient not yet final (state `dropped`), recording `reason` as its attempt. */
  dropMessage(messageId: string, now: number, reason: string): Promise<number>;
  /**
   * Issue 9, cancel (POST /v1/messages/{id}/cancel): drops every recipient not yet attempted —
   * queued or held, no attempt made, not leased — with a `dropped` event, reason `cancelled`, and
   * an attempt record. Recipients already tried (deferred) or being tried are left as they are.
   */
  cancelMessage(messageId: string, now: number): Promise<number>;
  /** Makes a whole destination wait until `until` (claimDue skips it), or lifts that with until = null. */
  setDestinationBackoff(
    backoff: DestinationBackoff | { readonly domain: string; readonly until: null },
  ): Promise<void>;
  listDestinationBackoffs(now: number): Promise<DestinationBackoff[]>;
  /**
   * Calls `listener` when another process (or node) made work due, with the earliest due time
   * it wrote (0 = unknown); returns the unsubscribe function. A hint for waking workers early:
   * workers still poll. Absent where the backend has no such signal (SQLite).
   */
  onDueWork?(listener: (earliest: number) => void): () => void;
}

/**
 * Store part: the event log and webhooks (issue 5).
 *
 * Every recipient state change writes one event in the transaction of the change: `processed`
 * by enqueueMessages(), deferred/delivered/bounce/expired by recordOutcomes(), dropped by
 * dropMessage() and by enqueueMessages() for NewMessage.dropped. Event ids are ULIDs that
 * increase in commit order (src/events/event-id.ts), so a cursor never passes an event by.
 * SQLite code changing recipient state in its own transaction writes its events with
 * prepareEventWriter() (src/store/sqlite/events.ts) inside that transaction.
 * Security: NewWebhook.secret and WebhookWithSecret.secret are signing secrets: never log them.
 */

export type EventType =
  | "processed"
  | "deferred"
  | "delivered"
  | "bounce"
  | "expired"
  | "dropped"
  | "spamreport"
  // Issue 11: a destination's limits changed (adaptive throttling), on the message that caused it.
  | "throttled"
  // Issue 11: a recipient held after attempts that crashed or hung the delivery worker.
  | "held";

export const EVENT_TYPES: readonly EventType[] = [
  "processed",
  "deferred",
  "delivered",
  "bounce",
  "expired",
  "dropped",
  "spamreport",
  "throttled",
  "held",
];

/** An event to append. Unset fields are null in the stored event. */
export interface NewEvent {
  readonly type: EventType;
  readonly messageId: string;
  readonly recipient: string;
  /** Defaults to the account of the message. */
  readonly accountId?: number;
  /** When the change happened (ms). */
  readonly at: number;
  /** Delivery attempts so far, this one included (deferred, delivered, bounce, expired). */
  readonly attempt?: number | null;
  /** deferred: when the next attempt is due. */
  readonly nextAttemptAt?: number | null;
  readonly mxHost?: string | null;
  readonly ip?: string | null;
  /** The remote reply, or our own reason in SMTP form. */
  readonly reply?: string | null;
  /** "5.1.1"; defaults to the one at the start of `reply`'s text. */
  readonly enhancedCode?: string | null;
  /** bounce: the class from src/bounces (invalid-recipient, mailbox-full, …). */
  readonly bounceClass?: string | null;
  /** bounce: hard (true) or soft (false). */
  readonly bounceHard?: boolean | null;
  /** dropped: operator | suppressed | …; spamreport: the feedback type. */
  readonly reason?: string | null;
}

/** A stored event, as `petrel events tail --json` prints it and webhooks POST it. */
export interface PetrelEvent {
  /** ULID, unique: receivers de-duplicate by it. */
  readonly id: string;
  readonly type: EventType;
  /** ms since the epoch. */
  readonly timestamp: number;
  readonly messageId: string;
  readonly account: string;
  readonly recipient: string;
  readonly attempt: number | null;
  readonly nextAttemptAt: number | null;
  readonly mxHost: string | null;
  readonly ip: string | null;
  readonly reply: string | null;
  readonly enhancedCode: string | null;
  readonly bounceClass: string | null;
  readonly bounceHard: boolean | null;
  readonly reason: string | null;
  /** The sender's X-Petrel-Metadata object, or null. */
  readonly metadata: Record<string, unknown> | null;
  /** The sender's X-Petrel-Category list ([] when none). */
  readonly categories: readonly string[];
}

export interface EventFilter {
  /** Only events with an id greater than this. */
  readonly afterId?: string;
  /** Only events with an id up to this one. */
  readonly upToId?: string;
  readonly messageId?: string;
  readonly recipient?: string;
  readonly types?: readonly EventType[];
  readonly accountId?: number;
  readonly limit?: number;
  /** The newest `limit` events (returned oldest first) instead of the oldest. */
  readonly newest?: boolean;
}

export interface NewWebhook {
  readonly accountId: number;
  readonly url: string;
  /** The HMAC-SHA256 key. A secret: never log it. */
  readonly secret: string;
  /** Event types to send; null = all. */
  readonly eventTypes: readonly EventType[] | null;
}

export interface Webhook {
  readonly id: number;
  readonly accountId: number;
  readonly accountName: string;
  readonly url: string;
  readonly eventTypes: readonly EventType[] | null;
  /** The first characters of the secret, for listings. */
  readonly secretPrefix: string;
  readonly createdAt: number;
  /** Id of the last event handled (sent, or not for this endpoint); "" before any. */
  readonly cursor: string;
  readonly state: "active" | "disabled";
  /** Consecutive failed POSTs. */
  readonly failures: number;
  readonly failingSince: number | null;
  readonly nextAttemptAt: number;
  readonly lastSuccessAt: number | null;
  readonly disabledAt: number | null;
  readonly disabledReason: string | null;
}

export interface WebhookWithSecret extends Webhook {
  /** A secret: never log it. */
  readonly secret: string;
}

export interface WebhookBatch {
  readonly events: readonly PetrelEvent[];
  /** Where the cursor goes once this batch is delivered (past events not for this endpoint too). */
  readonly cursor: string;
}

export interface WebhookAttempt {
  readonly webhookId: number;
  readonly kind: "events" | "test" | "disabled";
  readonly at: number;
  readonly durationMs: number;
  /** HTTP status, or null when no response came (timeout, refused). */
  readonly statusCode: number | null;
  readonly error: string | null;
  readonly ok: boolean;
  readonly events: number;
  readonly firstEventId: string | null;
  readonly lastEventId: string | null;
  /** The endpoint's new cursor (after a delivered batch); undefined = unchanged. */
  readonly cursor?: string;
  /** The endpoint's failure state after this attempt (events kind); undefined = unchanged. */
  readonly failures?: number;
  readonly failingSince?: number | null;
  readonly nextAttemptAt?: number;
  /** Disable the endpoint with this reason. */
  readonly disable?: string;
}

export interface WebhookDelivery {
  readonly at: number;
  readonly kind: WebhookAttempt["kind"];
  readonly durationMs: number;
  readonly statusCode: number | null;
  readonly error: string | null;
  readonly ok: boolean;
  readonly events: number;
  readonly firstEventId: string | null;
  readonly lastEventId: string | null;
}

/**
 * Issue 9, GET /v1/stats: one account's events counted per time bucket. Served by the index
 * events(account_id, at): only the events of the account in [since, until) are read.
 */
export interface EventCountQuery {
  readonly accountId: number;
  /** ms, inclusive. */
  readonly since: number;
  /** ms, exclusive. */
  readonly until: number;
  /** Bucket width in ms (3,600,000 or 86,400,000); buckets start at multiples of it (UTC). */
  readonly bucketMs: number;
  /** Only events of messages carrying this category (X-Petrel-Category). */
  readonly category?: string;
  /** Only events of recipients at this domain (lower-case, A-labels). */
  readonly domain?: string;
}

/** How many events of one kind fell in one bucket. */
export interface EventCount {
  /** Start of the bucket (ms). */
  readonly bucket: number;
  readonly type: EventType;
  /** bounce: the class (invalid-recipient, mailbox-full, …); null for other types. */
  readonly bounceClass: string | null;
  /** bounce: hard or soft; null for other types. */
  readonly bounceHard: boolean | null;
  /** dropped: the reason (suppressed, operator, cancelled, …); null for other types. */
  readonly reason: string | null;
  readonly count: number;
}

export interface EventStore {
  /** Appends events in one transaction of their own; returns their ids in order. */
  recordEvents(events: readonly NewEvent[]): Promise<string[]>;
  /** Events in id order (oldest first), or the newest `limit` (still oldest first) with `newest`. */
  listEvents(filter?: EventFilter): Promise<PetrelEvent[]>;
  /** Counts per bucket, type, and (bounce) class and hardness or (dropped) reason; buckets ascending. */
  countEvents(query: EventCountQuery): Promise<EventCount[]>;
}

export interface WebhookStore {
  /** Adds an endpoint (its cursor starts after the newest event); StoreConflictError if the URL exists. */
  addWebhook(webhook: NewWebhook): Promise<Webhook>;
  /** Endpoints without their secrets. */
  listWebhooks(accountId?: number): Promise<Webhook[]>;
  removeWebhook(accountId: number, url: string): Promise<boolean>;
  /** One endpoint with its signing secret (for the dispatcher and `petrel webhooks test`). */
  getWebhookWithSecret(accountId: number, url: string): Promise<WebhookWithSecret | undefined>;
  /** Active endpoints due at `now`, with their secrets. */
  dueWebhooks(now: number): Promise<WebhookWithSecret[]>;
  /** Events after `cursor` for one endpoint (its account and types), at most `limit`, scanning at most `scan`. */
  webhookBatch(webhook: Webhook, limit: number, scan: number): Promise<WebhookBatch>;
  /** Records a POST (or a test, or a disable) and moves the endpoint's cursor and failure state, in one transaction. */
  recordWebhookAttempt(attempt: WebhookAttempt): Promise<void>;
  /** Moves a cursor forward past events that are not for the endpoint (no attempt record). */
  advanceWebhookCursor(webhookId: number, cursor: string): Promise<void>;
  /**
   * Replay (issue 9): moves a cursor back to `cursor`, so the events after it are sent again
   * (same ids: receivers deduplicate); false when the cursor was not after it.
   */
  rewindWebhookCursor(webhookId: number, cursor: string): Promise<boolean>;
  /** Re-enables a disabled endpoint (due now, failures cleared, cursor kept). */
  enableWebhook(accountId: number, url: string): Promise<boolean>;
  /** Recent attempts of one endpoint, newest first. */
  listWebhookDeliveries(webhookId: number, limit?: number): Promise<WebhookDelivery[]>;
  /**
   * Event retention, here because it follows the endpoints' cursors: deletes events older than
   * `before` that every active endpoint has passed, and webhook
   * delivery records older than `before`; returns the number of events deleted.
   */
  pruneEvents(before: number): Promise<number>;
}

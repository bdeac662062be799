/**
 * Store types of the event log and webhooks (issue 5), kept apart from types.ts (which
 * re-exports them) so that file stays readable; the Store methods using them are in types.ts.
 * Nothing here is SQLite-specific.
 * Security: NewWebhook.secret and WebhookWithSecret.secret are signing secrets: never log them.
 */

export type EventType =
  | "processed"
  | "deferred"
  | "delivered"
  | "bounce"
  | "expired"
  | "dropped"
  | "spamreport";

export const EVENT_TYPES: readonly EventType[] = [
  "processed",
  "deferred",
  "delivered",
  "bounce",
  "expired",
  "dropped",
  "spamreport",
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

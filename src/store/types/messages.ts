/**
 * Store part: accepted messages (the spool's write side) and what listings show of them.
 * Invariant: enqueueMessages() resolves only once the batch is durable (fsync'd, or committed with
 * synchronous_commit on); it is all or nothing.
 */

export type RecipientState =
  | "queued"
  | "delivering"
  | "deferred"
  | "delivered"
  | "bounced"
  | "expired"
  | "dropped"
  | "held"
  // Issue 9, scheduled send: shown, never stored — a recipient stored `queued`, not yet
  // attempted, of a message whose send_at is still ahead (its next_attempt_at is send_at).
  | "scheduled";

export interface NewMessage {
  /** Queue ID: unique and time-sortable. */
  readonly id: string;
  readonly accountId: number;
  readonly apiKeyId: number | null;
  /** Envelope sender (reverse-path), never empty for submitted mail. */
  readonly mailFrom: string;
  readonly recipients: readonly string[];
  /** The message exactly as it will be delivered (trace and missing headers already added). */
  readonly content: Buffer;
  readonly clientIp: string;
  readonly receivedAt: number;
  readonly expiresAt: number;
  /**
   * Issue 9, scheduled send: the recipients are first due then (ms; absent = at receivedAt).
   * expiresAt counts from it.
   */
  readonly sendAt?: number | null;
  // Issue 5 (events): what the sender attached, returned in every event of the message.
  /** The X-Petrel-Metadata JSON object, as validated JSON text; absent = none. */
  readonly metadata?: string | null;
  /** X-Petrel-Category values; absent = none. */
  readonly categories?: readonly string[];
  /**
   * Recipients accepted but never attempted (e.g. suppressed): each must also be in
   * `recipients`; it is stored as `dropped` with a `processed` and a `dropped` event (reason).
   */
  readonly dropped?: ReadonlyArray<{ readonly address: string; readonly reason: string }>;
}

export interface MessageSummary {
  readonly id: string;
  readonly accountName: string;
  readonly mailFrom: string;
  readonly size: number;
  readonly receivedAt: number;
  readonly recipientCount: number;
  /** Number of recipients in each state. */
  readonly states: Partial<Record<RecipientState, number>>;
  readonly recipients: readonly string[];
  /** Scheduled send: when the message was to be sent (ms), or null. */
  readonly sendAt: number | null;
}

export interface RecipientDetail {
  readonly address: string;
  readonly state: RecipientState;
  readonly attempts: number;
  readonly nextAttemptAt: number | null;
  readonly lastReply: string | null;
  readonly updatedAt: number;
}

export interface MessageDetail extends MessageSummary {
  readonly accountId: number;
  readonly metadata: Record<string, unknown> | null;
  readonly categories: readonly string[];
  readonly clientIp: string;
  readonly apiKeyName: string | null;
  readonly expiresAt: number;
  readonly recipientDetails: readonly RecipientDetail[];
}

export interface MessageFilter {
  readonly state?: RecipientState;
  /** Only messages with a recipient at this domain (lower-case). */
  readonly domain?: string;
  /**
   * Scheduled send (issue 9): with `scheduledAt`, only messages whose send_at is after it (their
   * never-attempted queued recipients are shown `scheduled`); with `unscheduledAt`, only messages
   * not scheduled then (send_at absent or not after it). The service sets these for the shown
   * states `scheduled` and `queued`.
   */
  readonly scheduledAt?: number;
  readonly unscheduledAt?: number;
  readonly limit?: number;
}

/** The HTTP API's message search: one account, newest first, after a cursor. */
export interface MessageSearch {
  readonly accountId: number;
  readonly from?: string;
  readonly to?: string;
  readonly state?: RecipientState;
  readonly category?: string;
  /** received_at bounds (ms): since ≤ t < until. */
  readonly since?: number;
  readonly until?: number;
  /** Only messages with an id below this one (the cursor: the previous page's last id). */
  readonly before?: string;
  /**
   * Scheduled send (issue 9): with `scheduledAt`, only messages whose send_at is after it (their
   * never-attempted queued recipients are shown `scheduled`); with `unscheduledAt`, only messages
   * not scheduled then (send_at absent or not after it). The service sets these for the shown
   * states `scheduled` and `queued`.
   */
  readonly scheduledAt?: number;
  readonly unscheduledAt?: number;
  readonly limit: number;
}

export interface MessageSearchRow {
  readonly id: string;
  readonly mailFrom: string;
  readonly size: number;
  readonly receivedAt: number;
  readonly expiresAt: number;
  readonly sendAt: number | null;
  readonly metadata: Record<string, unknown> | null;
  readonly categories: readonly string[];
  readonly recipients: ReadonlyArray<{ readonly address: string; readonly state: RecipientState }>;
}

/** The first answer to a request (or SMTP submission) that carried an idempotency key. */
export interface IdempotencyRecord {
  readonly accountId: number;
  readonly key: string;
  /** SHA-256 of the request (route and body); "" for SMTP, where only the key counts. */
  readonly requestHash: string;
  /** The answer to repeat, as JSON text. */
  readonly response: string;
  readonly createdAt: number;
}

/** Issue 9, bulk queue actions: messages with a recipient matching every condition given. */
export interface MessageIdFilter {
  readonly accountId?: number;
  /** A recipient at this domain (lower-case A-labels)… */
  readonly domain?: string;
  /** …in this state (the stored state; `delivering` for leased recipients). */
  readonly state?: Exclude<RecipientState, "scheduled">;
  /** Only ids greater than this (paging, ascending). */
  readonly after?: string;
  /** Leave out messages still scheduled at this time (send_at after it). */
  readonly unscheduledAt?: number;
  readonly limit: number;
}

export interface MessageStore {
  /** Commits every message of the batch in one durable transaction, or none of them. */
  enqueueMessages(messages: readonly NewMessage[]): Promise<void>;
  listMessages(filter?: MessageFilter): Promise<MessageSummary[]>;
  /** Ids of messages matching `filter`, ascending (the bulk queue actions' selection). */
  listMessageIds(filter: MessageIdFilter): Promise<string[]>;
  getMessage(id: string): Promise<MessageDetail | undefined>;
  getMessageContent(id: string): Promise<Buffer | undefined>;
  /** The HTTP API's search: a page of one account's messages, newest first (index scans only). */
  searchMessages(query: MessageSearch): Promise<MessageSearchRow[]>;
  /** The record of an idempotency key created at or after `since`, or undefined. */
  findIdempotencyKey(accountId: number, key: string, since: number): Promise<IdempotencyRecord | undefined>;
  /** Keeps the first record of a key (a later one is ignored); deletes records older than `pruneBefore`. */
  saveIdempotencyKey(record: IdempotencyRecord, pruneBefore: number): Promise<void>;
}

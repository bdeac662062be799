/**
 * The Store: everything Petrel keeps, behind one asynchronous interface with one
 * implementation per backend (src/store/sqlite today, src/store/postgres for clusters).
 *
 * Invariants every implementation keeps:
 * - enqueueMessages() resolves only once the batch is durable (fsync'd); it is all or nothing.
 * - API keys are stored as hashes only; the store never sees a plaintext key.
 * - A sender domain or single sender belongs to exactly one account.
 * - Recipients carry lease columns (owner, expiry) so that delivery workers on several nodes can
 *   claim work with `FOR UPDATE SKIP LOCKED` semantics (postgres) or one writer (sqlite).
 * Nothing here is SQLite-specific; dialect details stay inside each implementation.
 */

import type {
  EventFilter,
  NewEvent,
  NewWebhook,
  PetrelEvent,
  Webhook,
  WebhookAttempt,
  WebhookBatch,
  WebhookDelivery,
  WebhookWithSecret,
} from "./event-types.js";

export interface Account {
  readonly id: number;
  readonly name: string;
  readonly createdAt: number;
}

export interface NewApiKey {
  readonly accountId: number;
  readonly name: string;
  /** Hex SHA-256 of the full key. */
  readonly hash: string;
  /** The first characters of the key, shown in listings so an operator can tell keys apart. */
  readonly prefix: string;
  /** What the key may do (src/auth/scopes.ts); default ["mail.send"]. */
  readonly scopes?: readonly string[];
}

export interface ApiKey {
  readonly id: number;
  readonly accountId: number;
  readonly accountName: string;
  readonly name: string;
  readonly prefix: string;
  readonly createdAt: number;
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
  /** What the key may do: mail.send, messages.read, …, admin (every scope). */
  readonly scopes: readonly string[];
}

export interface SenderDomain {
  readonly id: number;
  readonly accountId: number;
  readonly accountName: string;
  readonly domain: string;
  readonly status: "unverified" | "verified" | "failing";
  readonly createdAt: number;
  readonly lastCheckedAt: number | null;
}

export interface SingleSender {
  readonly id: number;
  readonly accountId: number;
  readonly accountName: string;
  readonly address: string;
  readonly createdAt: number;
}

/** What an account may send as: its domains (any local part) and its single addresses. */
export interface SenderIdentities {
  readonly domains: ReadonlySet<string>;
  readonly addresses: ReadonlySet<string>;
}

export type RecipientState =
  | "queued"
  | "delivering"
  | "deferred"
  | "delivered"
  | "bounced"
  | "expired"
  | "dropped"
  | "held";

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
  readonly limit: number;
}

export interface MessageSearchRow {
  readonly id: string;
  readonly mailFrom: string;
  readonly size: number;
  readonly receivedAt: number;
  readonly expiresAt: number;
  readonly metadata: Record<string, unknown> | null;
  readonly categories: readonly string[];
  readonly recipients: ReadonlyArray<{ readonly address: string; readonly state: RecipientState }>;
}

export interface Store {
  readonly kind: "sqlite" | "postgres";
  close(): Promise<void>;

  createAccount(name: string): Promise<Account>;
  getAccount(name: string): Promise<Account | undefined>;
  listAccounts(): Promise<Account[]>;

  insertApiKey(key: NewApiKey): Promise<ApiKey>;
  /** A key that exists and is not revoked, by the hash of its plaintext. */
  findActiveApiKey(hash: string): Promise<ApiKey | undefined>;
  listApiKeys(): Promise<ApiKey[]>;
  /** Returns false when no active key has that name. */
  revokeApiKey(name: string): Promise<boolean>;
  recordApiKeyUse(uses: ReadonlyArray<{ readonly id: number; readonly at: number }>): Promise<void>;

  /** Throws StoreConflictError when the domain already belongs to an account. */
  addDomain(accountId: number, domain: string): Promise<SenderDomain>;
  removeDomain(domain: string): Promise<boolean>;
  listDomains(accountId?: number): Promise<SenderDomain[]>;
  /** Throws StoreConflictError when the address, or its domain, belongs to another account. */
  addSender(accountId: number, address: string): Promise<SingleSender>;
  removeSender(address: string): Promise<boolean>;
  listSenders(accountId?: number): Promise<SingleSender[]>;
  getSenderIdentities(accountId: number): Promise<SenderIdentities>;

  /** Commits every message of the batch in one durable transaction, or none of them. */
  enqueueMessages(messages: readonly NewMessage[]): Promise<void>;
  listMessages(filter?: MessageFilter): Promise<MessageSummary[]>;
  getMessage(id: string): Promise<MessageDetail | undefined>;
  getMessageContent(id: string): Promise<Buffer | undefined>;
  /** The HTTP API's search: a page of one account's messages, newest first (index scans only). */
  searchMessages(query: MessageSearch): Promise<MessageSearchRow[]>;

  // ── Delivery (issue 3): leases, outcomes, attempt history, operator actions ──────────────────
  // Leases: a claimed recipient is `delivering` with an owner and an expiry; an expired lease is
  // due again, so a crashed worker never strands mail. recordOutcomes() is the one place where a
  // delivery changes a recipient's state, in one transaction with its attempt record.

  /** Leases up to `limit` due recipients (oldest due first), skipping destinations in backoff. */
  claimDue(request: ClaimRequest): Promise<ClaimedRecipient[]>;
  /** Extends every lease `owner` holds to `until`; returns how many. */
  renewLeases(owner: string, until: number): Promise<number>;
  /**
   * Gives back leases without an attempt (shutdown, or a restarted node recovering its own
   * leases): every `delivering` recipient whose owner starts with `ownerPrefix` is due at `now`.
   */
  releaseLeases(ownerPrefix: string, now: number): Promise<number>;
  /** Applies outcomes and appends their attempt records, all in one durable transaction. */
  recordOutcomes(outcomes: readonly RecipientOutcome[]): Promise<void>;
  /** Every attempt for a message, oldest first. */
  listAttempts(messageId: string): Promise<DeliveryAttempt[]>;
  /** Recipient counts by state and by destination domain (with any destination backoff). */
  queueCounts(filter?: { readonly domain?: string }): Promise<QueueCounts>;
  /** Makes queued/deferred recipients due at `now` (one message, or all) and lifts their destinations' backoff. */
  retryNow(target: QueueTarget, now: number): Promise<number>;
  /** Holds a message's queued/deferred recipients (state `held`) until released. */
  holdMessage(messageId: string, now: number): Promise<number>;
  /** Returns held recipients to the queue, due at `now`. */
  releaseMessage(messageId: string, now: number): Promise<number>;
  /** Drops every recipient not yet final (state `dropped`), recording `reason` as its attempt. */
  dropMessage(messageId: string, now: number, reason: string): Promise<number>;
  /** Makes a whole destination wait until `until` (claimDue skips it), or lifts that with until = null. */
  setDestinationBackoff(
    backoff: DestinationBackoff | { readonly domain: string; readonly until: null },
  ): Promise<void>;
  listDestinationBackoffs(now: number): Promise<DestinationBackoff[]>;

  // ── Sender domains (issue 4): DKIM keys, DNS verification, status events ────────────────────
  // A domain's keys: `active` ones sign, `pending` ones (a rotation) wait until a check sees their
  // record, `retired` ones no longer sign but stay until the operator removes them. Private keys
  // are returned only by getSigningKeys() and getDkimPrivateKey(); listings never carry them.

  /** The domain with its DKIM generation and last check, or undefined. */
  getDomain(domain: string): Promise<SenderDomainDetail | undefined>;
  /** addDomain() and the first keys (generation 1, state active) in one transaction. */
  addDomainWithKeys(accountId: number, domain: string, keys: readonly NewDkimKey[]): Promise<SenderDomain>;
  /** Adds keys of a new generation; StoreConflictError if the domain already reached it. */
  addDkimKeys(domain: string, generation: number, keys: readonly NewDkimKey[]): Promise<void>;
  /** Every key of a domain (any state), oldest first, without private keys. */
  listDkimKeys(domain: string): Promise<DkimKeyInfo[]>;
  /**
   * The domain's status and active keys with their private keys (for signing only; never log
   * them); undefined when the domain is not a sender domain.
   */
  getSigningKeys(domain: string): Promise<SigningKeys | undefined>;
  /** One key's private key PEM (for `petrel domains export-key`). */
  getDkimPrivateKey(domain: string, selector: string): Promise<string | undefined>;
  /** Deletes one key; false when the domain has no such selector. */
  deleteDkimKey(domain: string, selector: string): Promise<boolean>;
  /** Status of each of the account's sender domains. */
  getDomainStatuses(accountId: number): Promise<ReadonlyMap<string, DomainStatus>>;
  /**
   * Records a check in one transaction: per-record results and time; the status (pass →
   * verified; fail → failing if it was verified or failing, else unverified; unknown → as it
   * was); pending keys in `promote` become active and the other active keys of their kind
   * retire; a status change or key switch appends a DomainEvent.
   */
  recordDomainCheck(check: DomainCheck): Promise<DomainCheckChange>;
  /** Domains a periodic check should look at: verified, failing or with pending keys, checked before `before`. */
  listDomainsToRecheck(before: number): Promise<string[]>;
  /** A domain's events, newest first. */
  listDomainEvents(domain: string, limit?: number): Promise<DomainEvent[]>;

  // ── Events and webhooks (issue 5) ───────────────────────────────────────────────────────────
  // Every recipient state change writes one event in the transaction of the change: `processed`
  // by enqueueMessages(), deferred/delivered/bounce/expired by recordOutcomes(), dropped by
  // dropMessage() and by enqueueMessages() for NewMessage.dropped. Event ids are ULIDs that
  // increase in commit order (src/events/event-id.ts), so a cursor never passes an event by.
  // SQLite code changing recipient state in its own transaction writes its events with
  // prepareEventWriter() (src/store/sqlite/event-ops.ts) inside that transaction.

  /** Appends events in one transaction of their own; returns their ids in order. */
  recordEvents(events: readonly NewEvent[]): Promise<string[]>;
  /** Events in id order (oldest first), or the newest `limit` (still oldest first) with `newest`. */
  listEvents(filter?: EventFilter): Promise<PetrelEvent[]>;

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
  /** Re-enables a disabled endpoint (due now, failures cleared, cursor kept). */
  enableWebhook(accountId: number, url: string): Promise<boolean>;
  /** Recent attempts of one endpoint, newest first. */
  listWebhookDeliveries(webhookId: number, limit?: number): Promise<WebhookDelivery[]>;
  /**
   * Deletes events older than `before` that every active endpoint has passed, and webhook
   * delivery records older than `before`; returns the number of events deleted.
   */
  pruneEvents(before: number): Promise<number>;

  // ── Bounces and suppressions (issue 5, items 2–5) ─────────────────────────────────────────────
  // Suppressions are per account and per lower-cased address; a hard bounce (recordOutcomes, or
  // recordInboundReport for a late DSN) and a complaint add one in the transaction of their event.

  /** The account's suppression of `address` (compared lower-cased), or undefined. */
  findSuppression(accountId: number, address: string): Promise<Suppression | undefined>;
  /** Suppressions ordered by account name and address. */
  listSuppressions(filter?: SuppressionFilter): Promise<Suppression[]>;
  /** Adds suppressions in one transaction; an address already suppressed keeps its row. Returns how many were added. */
  addSuppressions(entries: readonly NewSuppression[]): Promise<number>;
  removeSuppression(accountId: number, address: string): Promise<boolean>;
  /** A secret Petrel keeps for itself (the VERP key): created with generate() on first use, the same for every process. */
  nodeSecret(name: string, generate: () => string): Promise<string>;
  /** The recipient a VERP token names: it must exist and belong to that message. */
  getBounceTarget(messageId: string, recipientId: number): Promise<BounceTarget | undefined>;
  /** Applies a late bounce or a complaint for one recipient: state, event and suppression in one transaction. */
  recordInboundReport(record: InboundReportRecord): Promise<InboundReportResult>;
}

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

export type QueueTarget = { readonly messageId: string } | { readonly all: true };

// ── Sender domains (issue 4) ───────────────────────────────────────────────────────────────────

export type DomainStatus = SenderDomain["status"];
export type DkimKeyKindName = "rsa" | "ed25519";
export type DkimKeyState = "pending" | "active" | "retired";

export interface NewDkimKey {
  readonly selector: string;
  readonly kind: DkimKeyKindName;
  /** PKCS#8 PEM. A secret. */
  readonly privateKeyPem: string;
  /** Base64 for the DNS record's p= tag. */
  readonly publicKey: string;
  readonly state: "pending" | "active";
}

/** A key as listings and the API show it: no private key. */
export interface DkimKeyInfo {
  readonly id: number;
  readonly domain: string;
  readonly selector: string;
  readonly kind: DkimKeyKindName;
  readonly publicKey: string;
  readonly state: DkimKeyState;
  /** Key generation: 1 for the keys made by `domains add`, +1 per rotation. */
  readonly generation: number;
  readonly createdAt: number;
  readonly activatedAt: number | null;
  readonly retiredAt: number | null;
}

export interface DkimSigningKey {
  readonly id: number;
  readonly selector: string;
  readonly kind: DkimKeyKindName;
  /** PKCS#8 PEM. A secret: never log it. */
  readonly privateKeyPem: string;
}

export interface SigningKeys {
  readonly status: DomainStatus;
  /** Active keys, RSA first. */
  readonly keys: readonly DkimSigningKey[];
}

export type RecordCheckResult = "match" | "missing" | "different" | "tempfail";

/** One DNS record as a check found it. */
export interface RecordCheck {
  readonly name: string;
  readonly type: "TXT" | "MX";
  /** dkim, return-path-mx, return-path-spf, spf, dmarc. */
  readonly purpose: string;
  /** DKIM of active keys and the return path are required for `verified`; the rest is advice. */
  readonly required: boolean;
  readonly expected: string;
  /** The values found at the name (the relevant ones: v=spf1 TXT for SPF, and so on). */
  readonly found: readonly string[];
  readonly result: RecordCheckResult;
  /** Why it is different or could not be checked. */
  readonly detail?: string;
}

export interface DomainCheck {
  readonly domain: string;
  readonly at: number;
  /** pass: every required record matches; fail: one is missing or different; unknown: DNS failed. */
  readonly outcome: "pass" | "fail" | "unknown";
  readonly records: readonly RecordCheck[];
  /** Selectors of pending keys whose record was found: they become the active keys. */
  readonly promote: readonly string[];
}

export interface DomainCheckChange {
  readonly previous: DomainStatus;
  readonly status: DomainStatus;
  /** Selectors that became active, and those retired by the switch. */
  readonly activated: readonly string[];
  readonly retired: readonly string[];
}

export interface SenderDomainDetail extends SenderDomain {
  /** Highest key generation so far (selectors are never reused). */
  readonly dkimGeneration: number;
  readonly verifiedAt: number | null;
  /** The per-record results of the last check, [] before the first. */
  readonly lastCheck: readonly RecordCheck[];
}

export interface DomainEvent {
  readonly domain: string;
  readonly at: number;
  readonly fromStatus: DomainStatus;
  readonly toStatus: DomainStatus;
  readonly detail: string;
}

// ── Events and webhooks (issue 5): src/store/event-types.ts, re-exported ──────────────────────

export * from "./event-types.js";

// ── Bounces and suppressions (issue 5, items 2–5) ─────────────────────────────────────────────

export interface Suppression {
  readonly accountId: number;
  readonly accountName: string;
  /** Lower-cased. */
  readonly address: string;
  /** invalid-recipient | invalid-domain (hard bounces) | spamreport | manual | import. */
  readonly reason: string;
  /** The bounce or spamreport event that caused it; null for manual and imported rows. */
  readonly eventId: string | null;
  readonly messageId: string | null;
  /** The remote reply or feedback that caused it, or the operator's note. */
  readonly detail: string | null;
  readonly createdAt: number;
}

export interface NewSuppression {
  readonly accountId: number;
  readonly address: string;
  readonly reason: string;
  readonly detail?: string | null;
  /** Defaults to now (an import keeps the original time). */
  readonly createdAt?: number;
}

export interface SuppressionFilter {
  readonly accountId?: number;
  readonly reason?: string;
  readonly limit?: number;
}

/** The recipient a VERP token names. */
export interface BounceTarget {
  readonly recipientId: number;
  readonly messageId: string;
  readonly accountId: number;
  readonly address: string;
  readonly state: RecipientState;
  /** The message's envelope sender ("" for a null sender). */
  readonly mailFrom: string;
}

/** A late bounce (a DSN after the remote accepted) or a complaint, for the recipient a token names. */
export type InboundReportRecord =
  | {
      readonly kind: "bounce";
      readonly messageId: string;
      readonly recipientId: number;
      /** When the report arrived. */
      readonly at: number;
      /** The remote diagnostic ("550 5.1.1 …"). */
      readonly reply: string;
      readonly enhancedCode: string | null;
      /** The Remote-MTA of the report, if any. */
      readonly remoteMta: string | null;
      readonly bounceClass: string;
      readonly bounceHard: boolean;
    }
  | {
      readonly kind: "spamreport";
      readonly messageId: string;
      readonly recipientId: number;
      readonly at: number;
      /** The ARF Feedback-Type (abuse, fraud, …). */
      readonly feedbackType: string;
      /** What the report says (user agent, source), for the event and the suppression. */
      readonly reply: string | null;
    };

export interface InboundReportResult {
  /** Whether anything was written. */
  readonly applied: boolean;
  readonly eventId: string | null;
  /** Whether the address was newly suppressed. */
  readonly suppressed: boolean;
  /** What happened, or why nothing did ("recipient is bounced", "complaint already recorded"). */
  readonly reason: string;
}

/** A uniqueness rule was broken (a name or domain already taken). */
export class StoreConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreConflictError";
  }
}

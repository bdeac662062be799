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
  readonly clientIp: string;
  readonly apiKeyName: string | null;
  readonly expiresAt: number;
  readonly recipientDetails: readonly RecipientDetail[];
}

export interface MessageFilter {
  readonly state?: RecipientState;
  readonly limit?: number;
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
}

/** A uniqueness rule was broken (a name or domain already taken). */
export class StoreConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreConflictError";
  }
}

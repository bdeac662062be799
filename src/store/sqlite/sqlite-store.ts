/**
 * The embedded store: one SQLite file in the data directory, through better-sqlite3.
 *
 * Durability: WAL journal with synchronous=FULL, so a committed transaction survives kill -9 and
 * power loss (the WAL is fsync'd at every commit). The queue layer batches messages into one
 * enqueueMessages() call per group commit, so one fsync covers many messages.
 * Several processes may open the same file (`petrel serve` plus admin commands); SQLite's locking
 * and busy_timeout serialise the writers.
 * better-sqlite3 is synchronous; methods are async only to honour the Store interface, which a
 * network backend needs.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { domainOf, normalizeAddress } from "../../address.js";
import { randomUlid } from "../../events/event-id.js";
import type {
  Account,
  ApiKey,
  BounceTarget,
  ClaimedRecipient,
  ClaimRequest,
  DeliveryAttempt,
  DestinationBackoff,
  DkimKeyInfo,
  DomainCheck,
  DomainCheckChange,
  DomainEvent,
  DomainStatus,
  EventFilter,
  InboundReportRecord,
  InboundReportResult,
  MessageDetail,
  MessageFilter,
  MessageSearch,
  MessageSearchRow,
  MessageSummary,
  NewApiKey,
  NewDkimKey,
  NewEvent,
  NewMessage,
  NewSuppression,
  NewWebhook,
  PetrelEvent,
  QueueCounts,
  QueueTarget,
  RecipientDetail,
  RecipientOutcome,
  RecipientState,
  SenderDomain,
  SenderDomainDetail,
  SenderIdentities,
  SigningKeys,
  SingleSender,
  Store,
  Suppression,
  SuppressionFilter,
  Webhook,
  WebhookAttempt,
  WebhookBatch,
  WebhookDelivery,
  WebhookWithSecret,
} from "../types.js";
import { StoreConflictError } from "../types.js";
import { type AccountOps, conflictOr, createAccountOps } from "./account-ops.js";
import { type BounceOps, createBounceOps } from "./bounce-ops.js";
import { createDomainOps, type DomainOps } from "./domain-ops.js";
import { configureConnection, prepareEnqueue } from "./enqueue.js";
import { EnqueueThread } from "./enqueue-thread.js";
import { createEventOps, type EventOps } from "./event-ops.js";
import { createMessageSearch } from "./message-search.js";
import { MIGRATIONS } from "./migrations.js";
import { createQueueOps, type QueueOps } from "./queue-ops.js";
import { createSuppressionOps, type SuppressionOps } from "./suppression-ops.js";
import { createWebhookOps, type WebhookOps } from "./webhook-ops.js";

type Row = Record<string, unknown>;

export interface SqliteStoreOptions {
  readonly file: string;
  /** How long a writer waits for another process's lock before failing. */
  readonly busyTimeoutMs?: number;
  /**
   * Commit spool batches on their own thread (see enqueue-thread.ts), so fsync never stalls the
   * caller's event loop. `petrel serve` turns this on; short-lived admin commands do not need it.
   */
  readonly enqueueThread?: boolean;
}

export function openSqliteStore(options: SqliteStoreOptions): SqliteStore {
  mkdirSync(dirname(options.file), { recursive: true });
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  const db = new Database(options.file);
  configureConnection(db, busyTimeoutMs);
  migrate(db);
  return new SqliteStore(
    db,
    options.enqueueThread ? new EnqueueThread(options.file, busyTimeoutMs) : undefined,
  );
}

function migrate(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current >= MIGRATIONS.length) return;
  // IMMEDIATE takes the write lock first, so two processes starting together migrate once.
  db.transaction(() => {
    const version = db.pragma("user_version", { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    }
  }).immediate();
}

export class SqliteStore implements Store {
  readonly kind = "sqlite" as const;
  private readonly db: Database.Database;
  private readonly statements: ReturnType<typeof prepareStatements>;
  private readonly insertBatch: (messages: readonly NewMessage[]) => void;
  /** Accounts and API keys (account-ops.ts). */
  private readonly accounts: AccountOps;
  /** Delivery: leases, outcomes, queue actions (queue-ops.ts). */
  private readonly queue: QueueOps;
  /** Sender domains: DKIM keys, checks, events (domain-ops.ts). */
  private readonly domains: DomainOps;
  /** Events and webhooks (issue 5): event-ops.ts, webhook-ops.ts. */
  private readonly events: EventOps;
  private readonly webhooks: WebhookOps;
  /** Bounces and suppressions (issue 5): suppression-ops.ts, bounce-ops.ts. */
  private readonly suppressions: SuppressionOps;
  private readonly bounces: BounceOps;
  /** The HTTP API's message search (message-search.ts). */
  private readonly search: ReturnType<typeof createMessageSearch>;

  private readonly enqueueThread: EnqueueThread | undefined;

  constructor(db: Database.Database, enqueueThread?: EnqueueThread) {
    this.db = db;
    this.enqueueThread = enqueueThread;
    this.statements = prepareStatements(db);
    this.accounts = createAccountOps(db);
    this.queue = createQueueOps(db);
    this.search = createMessageSearch(db);
    this.domains = createDomainOps(db);
    this.events = createEventOps(db);
    this.webhooks = createWebhookOps(db);
    this.suppressions = createSuppressionOps(db);
    this.bounces = createBounceOps(db);
    this.insertBatch = prepareEnqueue(db);
  }

  async close(): Promise<void> {
    await this.enqueueThread?.close();
    if (this.db.open) this.db.close();
  }

  async createAccount(name: string): Promise<Account> {
    return this.accounts.createAccount(name);
  }

  async getAccount(name: string): Promise<Account | undefined> {
    return this.accounts.getAccount(name);
  }

  async listAccounts(): Promise<Account[]> {
    return this.accounts.listAccounts();
  }

  async insertApiKey(key: NewApiKey): Promise<ApiKey> {
    return this.accounts.insertApiKey(key);
  }

  async findActiveApiKey(hash: string): Promise<ApiKey | undefined> {
    return this.accounts.findActiveApiKey(hash);
  }

  async listApiKeys(): Promise<ApiKey[]> {
    return this.accounts.listApiKeys();
  }

  async revokeApiKey(name: string): Promise<boolean> {
    return this.accounts.revokeApiKey(name);
  }

  async recordApiKeyUse(uses: ReadonlyArray<{ readonly id: number; readonly at: number }>): Promise<void> {
    this.accounts.recordApiKeyUse(uses);
  }

  async addDomain(accountId: number, domain: string): Promise<SenderDomain> {
    return this.insertDomain(accountId, domain, []);
  }

  /** addDomain's transaction, with the domain's first DKIM keys when given (issue 4). */
  private insertDomain(accountId: number, domain: string, keys: readonly NewDkimKey[]): SenderDomain {
    const name = domain.toLowerCase();
    return this.db
      .transaction(() => {
        const owner = this.db
          .prepare(
            "SELECT account_id FROM single_senders WHERE address LIKE ? ESCAPE '\\' AND account_id != ? LIMIT 1",
          )
          .get(`%@${escapeLike(name)}`, accountId);
        if (owner) throw new StoreConflictError(`${name} has single senders that belong to another account`);
        try {
          const { id } = this.db
            .prepare(
              "INSERT INTO sender_domains (account_id, domain, created_at) VALUES (?, ?, ?) RETURNING id",
            )
            .get(accountId, name, Date.now()) as { id: number };
          if (keys.length > 0) this.domains.addFirstKeys(id, keys);
          return toDomain(this.db.prepare(`${DOMAIN_SELECT} WHERE d.id = ?`).get(id) as Row);
        } catch (err) {
          throw conflictOr(err, `domain ${name} is already registered`);
        }
      })
      .immediate();
  }

  async removeDomain(domain: string): Promise<boolean> {
    return (
      this.db.prepare("DELETE FROM sender_domains WHERE domain = ?").run(domain.toLowerCase()).changes > 0
    );
  }

  async listDomains(accountId?: number): Promise<SenderDomain[]> {
    const rows =
      accountId === undefined
        ? this.db.prepare(`${DOMAIN_SELECT} ORDER BY d.domain`).all()
        : this.db.prepare(`${DOMAIN_SELECT} WHERE d.account_id = ? ORDER BY d.domain`).all(accountId);
    return (rows as Row[]).map(toDomain);
  }

  async addSender(accountId: number, address: string): Promise<SingleSender> {
    const normalized = normalizeAddress(address);
    return this.db
      .transaction(() => {
        const owner = this.db
          .prepare("SELECT account_id FROM sender_domains WHERE domain = ?")
          .get(domainOf(normalized)) as { account_id: number } | undefined;
        if (owner && owner.account_id !== accountId) {
          throw new StoreConflictError(`the domain of ${normalized} belongs to another account`);
        }
        try {
          const { id } = this.db
            .prepare(
              "INSERT INTO single_senders (account_id, address, created_at) VALUES (?, ?, ?) RETURNING id",
            )
            .get(accountId, normalized, Date.now()) as { id: number };
          return toSender(this.db.prepare(`${SENDER_SELECT} WHERE s.id = ?`).get(id) as Row);
        } catch (err) {
          throw conflictOr(err, `sender ${normalized} is already registered`);
        }
      })
      .immediate();
  }

  async removeSender(address: string): Promise<boolean> {
    return (
      this.db.prepare("DELETE FROM single_senders WHERE address = ?").run(normalizeAddress(address)).changes >
      0
    );
  }

  async listSenders(accountId?: number): Promise<SingleSender[]> {
    const rows =
      accountId === undefined
        ? this.db.prepare(`${SENDER_SELECT} ORDER BY s.address`).all()
        : this.db.prepare(`${SENDER_SELECT} WHERE s.account_id = ? ORDER BY s.address`).all(accountId);
    return (rows as Row[]).map(toSender);
  }

  async getSenderIdentities(accountId: number): Promise<SenderIdentities> {
    const domains = this.statements.accountDomains.pluck().all(accountId) as string[];
    const addresses = this.statements.accountSenders.pluck().all(accountId) as string[];
    return { domains: new Set(domains), addresses: new Set(addresses) };
  }

  async enqueueMessages(messages: readonly NewMessage[]): Promise<void> {
    if (this.enqueueThread) return this.enqueueThread.enqueue(messages);
    this.insertBatch(messages);
  }

  async listMessages(filter: MessageFilter = {}): Promise<MessageSummary[]> {
    const limit = filter.limit ?? 1000;
    const rows = (
      filter.state || filter.domain
        ? this.db
            .prepare(
              `${MESSAGE_SELECT} WHERE m.id IN (SELECT message_id FROM recipients
                 WHERE (@state IS NULL OR state = @state) AND (@domain IS NULL OR domain = @domain))
               ORDER BY m.id LIMIT @limit`,
            )
            .all({ state: filter.state ?? null, domain: filter.domain?.toLowerCase() ?? null, limit })
        : this.db.prepare(`${MESSAGE_SELECT} ORDER BY m.id LIMIT ?`).all(limit)
    ) as Row[];
    return rows.map((row) => toSummary(row, this.recipientsOf(String(row.id))));
  }

  async getMessage(id: string): Promise<MessageDetail | undefined> {
    const row = this.db
      .prepare(
        `SELECT m.*, a.name AS account_name, k.name AS api_key_name FROM messages m
         JOIN accounts a ON a.id = m.account_id LEFT JOIN api_keys k ON k.id = m.api_key_id WHERE m.id = ?`,
      )
      .get(id) as Row | undefined;
    if (!row) return undefined;
    const recipients = this.recipientsOf(id);
    return {
      ...toSummary(row, recipients),
      accountId: Number(row.account_id),
      metadata: row.metadata ? (JSON.parse(String(row.metadata)) as Record<string, unknown>) : null,
      categories: row.categories ? (JSON.parse(String(row.categories)) as string[]) : [],
      clientIp: String(row.client_ip),
      apiKeyName: (row.api_key_name as string | null) ?? null,
      expiresAt: Number(row.expires_at),
      recipientDetails: recipients,
    };
  }

  async searchMessages(query: MessageSearch): Promise<MessageSearchRow[]> {
    return this.search.searchMessages(query);
  }

  async getMessageContent(id: string): Promise<Buffer | undefined> {
    const row = this.statements.content.get(id) as { content: Buffer } | undefined;
    return row?.content;
  }

  // ── Delivery (issue 3): delegated to queue-ops.ts ──
  async claimDue(request: ClaimRequest): Promise<ClaimedRecipient[]> {
    return this.queue.claimDue(request);
  }
  async renewLeases(owner: string, until: number): Promise<number> {
    return this.queue.renewLeases(owner, until);
  }
  async releaseLeases(ownerPrefix: string, now: number): Promise<number> {
    return this.queue.releaseLeases(ownerPrefix, now);
  }
  async recordOutcomes(outcomes: readonly RecipientOutcome[]): Promise<void> {
    this.queue.recordOutcomes(outcomes);
  }
  async listAttempts(messageId: string): Promise<DeliveryAttempt[]> {
    return this.queue.listAttempts(messageId);
  }
  async queueCounts(filter?: { readonly domain?: string }): Promise<QueueCounts> {
    return this.queue.queueCounts(filter);
  }
  async retryNow(target: QueueTarget, now: number): Promise<number> {
    return this.queue.retryNow(target, now);
  }
  async holdMessage(messageId: string, now: number): Promise<number> {
    return this.queue.holdMessage(messageId, now);
  }
  async releaseMessage(messageId: string, now: number): Promise<number> {
    return this.queue.releaseMessage(messageId, now);
  }
  async dropMessage(messageId: string, now: number, reason: string): Promise<number> {
    return this.queue.dropMessage(messageId, now, reason);
  }
  async setDestinationBackoff(
    backoff: DestinationBackoff | { readonly domain: string; readonly until: null },
  ): Promise<void> {
    this.queue.setDestinationBackoff(backoff);
  }
  async listDestinationBackoffs(now: number): Promise<DestinationBackoff[]> {
    return this.queue.listDestinationBackoffs(now);
  }

  // ── Sender domains (issue 4): delegated to domain-ops.ts ──
  async getDomain(domain: string): Promise<SenderDomainDetail | undefined> {
    const row = this.db.prepare(`${DOMAIN_SELECT} WHERE d.domain = ?`).get(domain.toLowerCase()) as
      | Row
      | undefined;
    const detail = this.domains.detail(domain);
    return row && detail && { ...toDomain(row), ...detail };
  }
  async addDomainWithKeys(
    accountId: number,
    domain: string,
    keys: readonly NewDkimKey[],
  ): Promise<SenderDomain> {
    return this.insertDomain(accountId, domain, keys);
  }
  async addDkimKeys(domain: string, generation: number, keys: readonly NewDkimKey[]): Promise<void> {
    this.domains.addKeys(domain, generation, keys);
  }
  async listDkimKeys(domain: string): Promise<DkimKeyInfo[]> {
    return this.domains.listKeys(domain);
  }
  async getSigningKeys(domain: string): Promise<SigningKeys | undefined> {
    return this.domains.signingKeys(domain);
  }
  async getDkimPrivateKey(domain: string, selector: string): Promise<string | undefined> {
    return this.domains.privateKey(domain, selector);
  }
  async deleteDkimKey(domain: string, selector: string): Promise<boolean> {
    return this.domains.deleteKey(domain, selector);
  }
  async getDomainStatuses(accountId: number): Promise<ReadonlyMap<string, DomainStatus>> {
    return this.domains.statuses(accountId);
  }
  async recordDomainCheck(check: DomainCheck): Promise<DomainCheckChange> {
    return this.domains.recordCheck(check);
  }
  async listDomainsToRecheck(before: number): Promise<string[]> {
    return this.domains.toRecheck(before);
  }
  async listDomainEvents(domain: string, limit = 50): Promise<DomainEvent[]> {
    return this.domains.events(domain, limit);
  }

  // ── Events and webhooks (issue 5): delegated to event-ops.ts and webhook-ops.ts ──
  async recordEvents(events: readonly NewEvent[]): Promise<string[]> {
    return this.events.record(events);
  }
  async listEvents(filter?: EventFilter): Promise<PetrelEvent[]> {
    return this.events.list(filter);
  }
  async addWebhook(webhook: NewWebhook): Promise<Webhook> {
    return this.webhooks.add(webhook);
  }
  async listWebhooks(accountId?: number): Promise<Webhook[]> {
    return this.webhooks.list(accountId);
  }
  async removeWebhook(accountId: number, url: string): Promise<boolean> {
    return this.webhooks.remove(accountId, url);
  }
  async getWebhookWithSecret(accountId: number, url: string): Promise<WebhookWithSecret | undefined> {
    return this.webhooks.getWithSecret(accountId, url);
  }
  async dueWebhooks(now: number): Promise<WebhookWithSecret[]> {
    return this.webhooks.due(now);
  }
  async webhookBatch(webhook: Webhook, limit: number, scan: number): Promise<WebhookBatch> {
    return this.webhooks.batch(webhook, limit, scan);
  }
  async recordWebhookAttempt(attempt: WebhookAttempt): Promise<void> {
    this.webhooks.recordAttempt(attempt);
  }
  async advanceWebhookCursor(webhookId: number, cursor: string): Promise<void> {
    this.webhooks.advanceCursor(webhookId, cursor);
  }
  async enableWebhook(accountId: number, url: string): Promise<boolean> {
    return this.webhooks.enable(accountId, url);
  }
  async listWebhookDeliveries(webhookId: number, limit = 50): Promise<WebhookDelivery[]> {
    return this.webhooks.deliveries(webhookId, limit);
  }
  async pruneEvents(before: number): Promise<number> {
    // The smallest id of the millisecond `before`: every older event sorts below it.
    return this.webhooks.prune(before, `${randomUlid(before).slice(0, 10)}0000000000000000`);
  }

  // ── Bounces and suppressions (issue 5): delegated to suppression-ops.ts and bounce-ops.ts ──
  async findSuppression(accountId: number, address: string): Promise<Suppression | undefined> {
    return this.suppressions.find(accountId, address);
  }
  async listSuppressions(filter?: SuppressionFilter): Promise<Suppression[]> {
    return this.suppressions.list(filter);
  }
  async addSuppressions(entries: readonly NewSuppression[]): Promise<number> {
    return this.suppressions.add(entries);
  }
  async removeSuppression(accountId: number, address: string): Promise<boolean> {
    return this.suppressions.remove(accountId, address);
  }
  async nodeSecret(name: string, generate: () => string): Promise<string> {
    return this.suppressions.nodeSecret(name, generate);
  }
  async getBounceTarget(messageId: string, recipientId: number): Promise<BounceTarget | undefined> {
    return this.bounces.getBounceTarget(messageId, recipientId);
  }
  async recordInboundReport(record: InboundReportRecord): Promise<InboundReportResult> {
    return this.bounces.recordInboundReport(record);
  }

  private recipientsOf(messageId: string): RecipientDetail[] {
    return (this.statements.recipientsOf.all(messageId) as Row[]).map((r) => ({
      address: String(r.address),
      state: r.state as RecipientState,
      attempts: Number(r.attempts),
      nextAttemptAt: (r.next_attempt_at as number | null) ?? null,
      lastReply: (r.last_reply as string | null) ?? null,
      updatedAt: Number(r.updated_at),
    }));
  }
}

const DOMAIN_SELECT = `SELECT d.id, d.account_id, a.name AS account_name, d.domain, d.status, d.created_at,
  d.last_checked_at FROM sender_domains d JOIN accounts a ON a.id = d.account_id`;
const SENDER_SELECT = `SELECT s.id, s.account_id, a.name AS account_name, s.address, s.created_at
  FROM single_senders s JOIN accounts a ON a.id = s.account_id`;
const MESSAGE_SELECT = `SELECT m.id, a.name AS account_name, m.mail_from, m.size, m.received_at
  FROM messages m JOIN accounts a ON a.id = m.account_id`;

function prepareStatements(db: Database.Database) {
  return {
    accountDomains: db.prepare("SELECT domain FROM sender_domains WHERE account_id = ?"),
    accountSenders: db.prepare("SELECT address FROM single_senders WHERE account_id = ?"),
    content: db.prepare("SELECT content FROM message_contents WHERE message_id = ?"),
    recipientsOf: db.prepare(
      `SELECT address, state, attempts, next_attempt_at, last_reply, updated_at
       FROM recipients WHERE message_id = ? ORDER BY id`,
    ),
  };
}

function toDomain(row: Row): SenderDomain {
  return {
    id: Number(row.id),
    accountId: Number(row.account_id),
    accountName: String(row.account_name),
    domain: String(row.domain),
    status: row.status as SenderDomain["status"],
    createdAt: Number(row.created_at),
    lastCheckedAt: (row.last_checked_at as number | null) ?? null,
  };
}

function toSender(row: Row): SingleSender {
  return {
    id: Number(row.id),
    accountId: Number(row.account_id),
    accountName: String(row.account_name),
    address: String(row.address),
    createdAt: Number(row.created_at),
  };
}

function toSummary(row: Row, recipients: readonly RecipientDetail[]): MessageSummary {
  const states: Partial<Record<RecipientState, number>> = {};
  for (const r of recipients) states[r.state] = (states[r.state] ?? 0) + 1;
  return {
    id: String(row.id),
    accountName: String(row.account_name),
    mailFrom: String(row.mail_from),
    size: Number(row.size),
    receivedAt: Number(row.received_at),
    recipientCount: recipients.length,
    states,
    recipients: recipients.map((r) => r.address),
  };
}

function escapeLike(value: string): string {
  return value.replace(/[%_\\]/g, "\\$&");
}

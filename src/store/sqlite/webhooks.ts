/**
 * Webhook endpoints and their delivery records in SQLite (Store part WebhookStore, issue 5;
 * postgres/webhooks.ts is its twin). The event log is the outbox:
 * an endpoint's `cursor` is the id of the last event it has been given (or that was not for it),
 * so an event committed but not yet sent is simply after the cursor — a crash loses nothing, and
 * a batch whose POST succeeded but whose cursor move was lost is sent again (same event ids).
 *
 * Invariants: the cursor moves only forward, only after a 2xx for the batch it covers (or past
 * events that are not for the endpoint); one endpoint's failure state and its attempt record
 * change in one transaction. Event ids increase in commit order (events.ts), so events
 * committed after a batch was read can only be after its cursor.
 * Security: the secret is read only by getWithSecret()/due() for signing; listings carry a prefix.
 */
import type Database from "better-sqlite3";
import { randomUlid } from "../../events/event-id.js";
import type {
  EventType,
  NewWebhook,
  PetrelEvent,
  Webhook,
  WebhookAttempt,
  WebhookBatch,
  WebhookDelivery,
  WebhookStore,
  WebhookWithSecret,
} from "../types.js";
import { StoreConflictError } from "../types.js";
import { relaxedWrites } from "./connection.js";
import { createEventReader } from "./events.js";

type Row = Record<string, unknown>;

const SELECT = `SELECT w.*, a.name AS account_name FROM webhooks w JOIN accounts a ON a.id = w.account_id`;

/** Shown in listings: enough to tell secrets apart, far too little to sign with. */
const SECRET_PREFIX = 10;

export function createWebhookStore(db: Database.Database): WebhookStore {
  const events = createEventReader(db);
  const s = {
    newest: db.prepare("SELECT id FROM events ORDER BY id DESC LIMIT 1").pluck(),
    insert: db.prepare(
      `INSERT INTO webhooks (account_id, url, secret, event_types, created_at, cursor)
       VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
    ),
    byId: db.prepare(`${SELECT} WHERE w.id = ?`),
    byUrl: db.prepare(`${SELECT} WHERE w.account_id = ? AND w.url = ?`),
    all: db.prepare(`${SELECT} ORDER BY a.name, w.url`),
    ofAccount: db.prepare(`${SELECT} WHERE w.account_id = ? ORDER BY w.url`),
    due: db.prepare(`${SELECT} WHERE w.state = 'active' AND w.next_attempt_at <= ? ORDER BY w.id`),
    remove: db.prepare("DELETE FROM webhooks WHERE account_id = ? AND url = ?"),
    enable: db.prepare(
      `UPDATE webhooks SET state = 'active', failures = 0, failing_since = NULL, next_attempt_at = 0,
         disabled_at = NULL, disabled_reason = NULL WHERE account_id = ? AND url = ?`,
    ),
    attempt: db.prepare(
      `INSERT INTO webhook_deliveries (webhook_id, kind, at, duration_ms, status_code, error, ok, events,
         first_event_id, last_event_id)
       VALUES (@webhook, @kind, @at, @duration, @status, @error, @ok, @events, @first, @last)`,
    ),
    moveCursor: db.prepare("UPDATE webhooks SET cursor = @cursor WHERE id = @webhook AND cursor < @cursor"),
    success: db.prepare("UPDATE webhooks SET last_success_at = @at WHERE id = @webhook"),
    failureState: db.prepare(
      `UPDATE webhooks SET failures = @failures, failing_since = @since, next_attempt_at = @next
       WHERE id = @webhook`,
    ),
    disable: db.prepare(
      `UPDATE webhooks SET state = 'disabled', disabled_at = @at, disabled_reason = @reason WHERE id = @webhook`,
    ),
    deliveries: db.prepare(
      `SELECT kind, at, duration_ms, status_code, error, ok, events, first_event_id, last_event_id
       FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?`,
    ),
    minCursor: db.prepare("SELECT MIN(cursor) FROM webhooks WHERE state = 'active'").pluck(),
    pruneEvents: db.prepare(
      "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < ? AND id <= ? ORDER BY id LIMIT 5000)",
    ),
    pruneDeliveries: db.prepare("DELETE FROM webhook_deliveries WHERE at < ?"),
  };

  /**
   * Writes without their own fsync (synchronous=NORMAL; the next spool commit syncs them), as
   * delivery outcomes do: these writes come from the server's main thread, many per second
   * under load, and losing the last of them to a power cut only means sending a batch again.
   */
  const relaxed = relaxedWrites(db);

  const add = db.transaction((webhook: NewWebhook): Webhook => {
    const cursor = (s.newest.get() as string | undefined) ?? "";
    try {
      const { id } = s.insert.get(
        webhook.accountId,
        webhook.url,
        webhook.secret,
        webhook.eventTypes ? JSON.stringify(webhook.eventTypes) : null,
        Date.now(),
        cursor,
      ) as { id: number };
      return toWebhook(s.byId.get(id) as Row);
    } catch (err) {
      if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE")
        throw new StoreConflictError(`a webhook for ${webhook.url} already exists in this account`);
      throw err;
    }
  });

  const recordAttempt = db.transaction((a: WebhookAttempt) => {
    s.attempt.run({
      webhook: a.webhookId,
      kind: a.kind,
      at: a.at,
      duration: Math.round(a.durationMs),
      status: a.statusCode,
      error: a.error,
      ok: a.ok ? 1 : 0,
      events: a.events,
      first: a.firstEventId,
      last: a.lastEventId,
    });
    if (a.cursor !== undefined) s.moveCursor.run({ webhook: a.webhookId, cursor: a.cursor });
    if (a.ok && a.kind === "events") s.success.run({ webhook: a.webhookId, at: a.at });
    if (a.failures !== undefined) {
      s.failureState.run({
        webhook: a.webhookId,
        failures: a.failures,
        since: a.failingSince ?? null,
        next: a.nextAttemptAt ?? 0,
      });
    }
    if (a.disable !== undefined) s.disable.run({ webhook: a.webhookId, at: a.at, reason: a.disable });
  });

  const relaxedAttempt = relaxed((attempt: WebhookAttempt): void => recordAttempt.immediate(attempt));
  const advanceCursor = relaxed((webhookId: number, cursor: string): void => {
    s.moveCursor.run({ webhook: webhookId, cursor });
  });

  return {
    async addWebhook(webhook: NewWebhook): Promise<Webhook> {
      return add.immediate(webhook);
    },
    async listWebhooks(accountId?: number): Promise<Webhook[]> {
      const rows = accountId === undefined ? s.all.all() : s.ofAccount.all(accountId);
      return (rows as Row[]).map(toWebhook);
    },
    async removeWebhook(accountId: number, url: string): Promise<boolean> {
      return s.remove.run(accountId, url).changes > 0;
    },
    async getWebhookWithSecret(accountId: number, url: string): Promise<WebhookWithSecret | undefined> {
      const row = s.byUrl.get(accountId, url) as Row | undefined;
      return row && { ...toWebhook(row), secret: String(row.secret) };
    },
    async dueWebhooks(now: number): Promise<WebhookWithSecret[]> {
      return (s.due.all(now) as Row[]).map((row) => ({ ...toWebhook(row), secret: String(row.secret) }));
    },
    async webhookBatch(webhook: Webhook, limit: number, scan: number): Promise<WebhookBatch> {
      const types = webhook.eventTypes ? new Set<EventType>(webhook.eventTypes) : undefined;
      const picked: PetrelEvent[] = [];
      const cursor = events.scanAfter(webhook.cursor, scan, limit, (event) => {
        if (picked.length === limit) return "stop";
        if (event.account !== webhook.accountName || (types && !types.has(event.type))) return "skip";
        picked.push(event);
        return "take";
      });
      return { events: picked, cursor };
    },
    async recordWebhookAttempt(attempt: WebhookAttempt): Promise<void> {
      relaxedAttempt(attempt);
    },
    async advanceWebhookCursor(webhookId: number, cursor: string): Promise<void> {
      advanceCursor(webhookId, cursor);
    },
    async rewindWebhookCursor(webhookId: number, cursor: string): Promise<boolean> {
      return (
        db
          .prepare("UPDATE webhooks SET cursor = ?, next_attempt_at = 0 WHERE id = ? AND cursor > ?")
          .run(cursor, webhookId, cursor).changes > 0
      );
    },
    async enableWebhook(accountId: number, url: string): Promise<boolean> {
      return s.enable.run(accountId, url).changes > 0;
    },
    async listWebhookDeliveries(webhookId: number, limit = 50): Promise<WebhookDelivery[]> {
      return (s.deliveries.all(webhookId, limit) as Row[]).map((r) => ({
        kind: r.kind as WebhookDelivery["kind"],
        at: Number(r.at),
        durationMs: Number(r.duration_ms),
        statusCode: (r.status_code as number | null) ?? null,
        error: (r.error as string | null) ?? null,
        ok: r.ok === 1,
        events: Number(r.events),
        firstEventId: (r.first_event_id as string | null) ?? null,
        lastEventId: (r.last_event_id as string | null) ?? null,
      }));
    },
    /** Deletes old events every active endpoint has passed, in chunks; returns how many. */
    async pruneEvents(before: number): Promise<number> {
      // The smallest id of the millisecond `before`: every older event sorts below it.
      const boundId = `${randomUlid(before).slice(0, 10)}0000000000000000`;
      // With no active endpoint nothing waits for events; "~" sorts after every ULID.
      const minCursor = (s.minCursor.get() as string | null) ?? "~";
      let deleted = 0;
      for (;;) {
        const n = s.pruneEvents.run(boundId, minCursor).changes;
        deleted += n;
        if (n < 5000) break;
      }
      s.pruneDeliveries.run(before);
      return deleted;
    },
  };
}

function toWebhook(row: Row): Webhook {
  return {
    id: Number(row.id),
    accountId: Number(row.account_id),
    accountName: String(row.account_name),
    url: String(row.url),
    eventTypes: row.event_types ? (JSON.parse(String(row.event_types)) as EventType[]) : null,
    secretPrefix: String(row.secret).slice(0, SECRET_PREFIX),
    createdAt: Number(row.created_at),
    cursor: String(row.cursor),
    state: row.state as Webhook["state"],
    failures: Number(row.failures),
    failingSince: (row.failing_since as number | null) ?? null,
    nextAttemptAt: Number(row.next_attempt_at),
    lastSuccessAt: (row.last_success_at as number | null) ?? null,
    disabledAt: (row.disabled_at as number | null) ?? null,
    disabledReason: (row.disabled_reason as string | null) ?? null,
  };
}

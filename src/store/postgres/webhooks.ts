/**
 * Webhook endpoints and their delivery records in PostgreSQL (Store part WebhookStore; sqlite/
 * webhooks.ts is its twin). The event log is the outbox: an endpoint's cursor is the id of the
 * last event it has been given; event ids increase in commit order across nodes (events.ts), so
 * events committed after a batch was read can only be after its cursor.
 * Invariants as in SQLite: the cursor moves only forward; an attempt record and the endpoint's
 * failure state change in one transaction.
 * Security: the secret is read only by getWebhookWithSecret()/dueWebhooks(); listings carry a prefix.
 */
import { randomUlid } from "../../events/event-id.js";
import { type MetadataCache, toEvent } from "../event-rows.js";
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
import { type Pool, type Row, transaction } from "./connection.js";
import { eventsAfter } from "./events.js";

const SELECT = `SELECT w.*, a.name AS account_name FROM webhooks w JOIN accounts a ON a.id = w.account_id`;

/** Shown in listings: enough to tell secrets apart, far too little to sign with. */
const SECRET_PREFIX = 10;

export function createWebhookStore(pool: Pool, relaxedPool: Pool): WebhookStore {
  return {
    addWebhook(webhook: NewWebhook): Promise<Webhook> {
      return transaction(pool, async (client) => {
        const newest = await client.query("SELECT id FROM events ORDER BY id DESC LIMIT 1");
        try {
          const { rows } = await client.query(
            `INSERT INTO webhooks (account_id, url, secret, event_types, created_at, cursor)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
            [
              webhook.accountId,
              webhook.url,
              webhook.secret,
              webhook.eventTypes ? JSON.stringify(webhook.eventTypes) : null,
              Date.now(),
              (newest.rows[0]?.id as string | undefined) ?? "",
            ],
          );
          return toWebhook((await client.query(`${SELECT} WHERE w.id = $1`, [rows[0].id])).rows[0]);
        } catch (err) {
          if ((err as { code?: string }).code === "23505")
            throw new StoreConflictError(`a webhook for ${webhook.url} already exists in this account`);
          throw err;
        }
      });
    },

    async listWebhooks(accountId?: number): Promise<Webhook[]> {
      const { rows } =
        accountId === undefined
          ? await pool.query(`${SELECT} ORDER BY a.name COLLATE "C", w.url COLLATE "C"`)
          : await pool.query(`${SELECT} WHERE w.account_id = $1 ORDER BY w.url COLLATE "C"`, [accountId]);
      return rows.map(toWebhook);
    },

    async removeWebhook(accountId: number, url: string): Promise<boolean> {
      const result = await pool.query("DELETE FROM webhooks WHERE account_id = $1 AND url = $2", [
        accountId,
        url,
      ]);
      return (result.rowCount ?? 0) > 0;
    },

    async getWebhookWithSecret(accountId: number, url: string): Promise<WebhookWithSecret | undefined> {
      const { rows } = await pool.query(`${SELECT} WHERE w.account_id = $1 AND w.url = $2`, [accountId, url]);
      return rows[0] && { ...toWebhook(rows[0]), secret: String(rows[0].secret) };
    },

    async dueWebhooks(now: number): Promise<WebhookWithSecret[]> {
      const { rows } = await pool.query(
        `${SELECT} WHERE w.state = 'active' AND w.next_attempt_at <= $1 ORDER BY w.id`,
        [now],
      );
      return rows.map((row) => ({ ...toWebhook(row), secret: String(row.secret) }));
    },

    async webhookBatch(webhook: Webhook, limit: number, scan: number): Promise<WebhookBatch> {
      const types = webhook.eventTypes ? new Set<EventType>(webhook.eventTypes) : undefined;
      const picked: PetrelEvent[] = [];
      const cache: MetadataCache = new Map();
      let cursor = webhook.cursor;
      let read = 0;
      // In chunks of the batch size: an endpoint that takes every event reads one chunk.
      scanning: while (read < scan) {
        const rows = await eventsAfter(pool, cursor, Math.min(limit, scan - read));
        read += rows.length;
        for (const row of rows) {
          if (picked.length === limit) break scanning;
          const event = toEvent(row, cache);
          if (event.account === webhook.accountName && (!types || types.has(event.type))) picked.push(event);
          cursor = event.id;
        }
        if (rows.length < limit) break;
      }
      return { events: picked, cursor };
    },

    recordWebhookAttempt(a: WebhookAttempt): Promise<void> {
      return transaction(relaxedPool, async (client) => {
        await client.query(
          `INSERT INTO webhook_deliveries (webhook_id, kind, at, duration_ms, status_code, error, ok, events,
             first_event_id, last_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [
            a.webhookId,
            a.kind,
            a.at,
            Math.round(a.durationMs),
            a.statusCode,
            a.error,
            a.ok,
            a.events,
            a.firstEventId,
            a.lastEventId,
          ],
        );
        if (a.cursor !== undefined) {
          await client.query("UPDATE webhooks SET cursor = $2 WHERE id = $1 AND cursor < $2", [
            a.webhookId,
            a.cursor,
          ]);
        }
        if (a.ok && a.kind === "events") {
          await client.query("UPDATE webhooks SET last_success_at = $2 WHERE id = $1", [a.webhookId, a.at]);
        }
        if (a.failures !== undefined) {
          await client.query(
            "UPDATE webhooks SET failures = $2, failing_since = $3, next_attempt_at = $4 WHERE id = $1",
            [a.webhookId, a.failures, a.failingSince ?? null, a.nextAttemptAt ?? 0],
          );
        }
        if (a.disable !== undefined) {
          await client.query(
            "UPDATE webhooks SET state = 'disabled', disabled_at = $2, disabled_reason = $3 WHERE id = $1",
            [a.webhookId, a.at, a.disable],
          );
        }
      });
    },

    async advanceWebhookCursor(webhookId: number, cursor: string): Promise<void> {
      await relaxedPool.query("UPDATE webhooks SET cursor = $2 WHERE id = $1 AND cursor < $2", [
        webhookId,
        cursor,
      ]);
    },

    async rewindWebhookCursor(webhookId: number, cursor: string): Promise<boolean> {
      const result = await pool.query(
        "UPDATE webhooks SET cursor = $2, next_attempt_at = 0 WHERE id = $1 AND cursor > $2",
        [webhookId, cursor],
      );
      return (result.rowCount ?? 0) > 0;
    },

    async enableWebhook(accountId: number, url: string): Promise<boolean> {
      const result = await pool.query(
        `UPDATE webhooks SET state = 'active', failures = 0, failing_since = NULL, next_attempt_at = 0,
           disabled_at = NULL, disabled_reason = NULL WHERE account_id = $1 AND url = $2`,
        [accountId, url],
      );
      return (result.rowCount ?? 0) > 0;
    },

    async listWebhookDeliveries(webhookId: number, limit = 50): Promise<WebhookDelivery[]> {
      const { rows } = await pool.query(
        `SELECT kind, at, duration_ms, status_code, error, ok, events, first_event_id, last_event_id
         FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2`,
        [webhookId, limit],
      );
      return rows.map((r) => ({
        kind: r.kind as WebhookDelivery["kind"],
        at: Number(r.at),
        durationMs: Number(r.duration_ms),
        statusCode: (r.status_code as number | null) ?? null,
        error: (r.error as string | null) ?? null,
        ok: r.ok === true,
        events: Number(r.events),
        firstEventId: (r.first_event_id as string | null) ?? null,
        lastEventId: (r.last_event_id as string | null) ?? null,
      }));
    },

    /** Deletes old events every active endpoint has passed, in chunks; returns how many. */
    async pruneEvents(before: number): Promise<number> {
      // The smallest id of the millisecond `before`: every older event sorts below it.
      const boundId = `${randomUlid(before).slice(0, 10)}0000000000000000`;
      const { rows } = await pool.query("SELECT min(cursor) AS c FROM webhooks WHERE state = 'active'");
      // With no active endpoint nothing waits for events; "~" sorts after every ULID.
      const minCursor = (rows[0]?.c as string | null) ?? "~";
      let deleted = 0;
      for (;;) {
        // Short statements of 5,000 rows: nothing holds locks or a snapshot for long.
        const result = await pool.query(
          "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < $1 AND id <= $2 ORDER BY id LIMIT 5000)",
          [boundId, minCursor],
        );
        deleted += result.rowCount ?? 0;
        if ((result.rowCount ?? 0) < 5000) break;
      }
      await pool.query("DELETE FROM webhook_deliveries WHERE at < $1", [before]);
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

/**
 * Waking delivery workers on every node (issue 8): a transaction that makes work due sends one
 * NOTIFY on `petrel_queue` (at most one per transaction: PostgreSQL serialises notifying
 * commits, so more would only cost) with the earliest due time it wrote; each process keeps one
 * connection LISTENing, opened when something subscribes, and tells its workers. Notifications
 * are a hint, never the only path: workers also poll (delivery.pollIntervalMs), so a lost
 * connection delays mail by at most a poll interval, and the listener reconnects by itself.
 */
import pg from "pg";
import { type Client, connectionConfig, type PostgresConnectionOptions } from "./connection.js";

export const QUEUE_CHANNEL = "petrel_queue";

/** Sends the transaction's one wake-up: `at` is the earliest next_attempt_at it wrote. */
export async function notifyDue(client: Client, at: number): Promise<void> {
  await client.query("SELECT pg_notify($1, $2)", [QUEUE_CHANNEL, String(Math.floor(at))]);
}

export type DueListener = (earliest: number) => void;

export class QueueListener {
  private readonly options: PostgresConnectionOptions;
  private readonly listeners = new Set<DueListener>();
  private client: pg.Client | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | undefined;

  constructor(options: PostgresConnectionOptions) {
    this.options = options;
  }

  /** Calls `listener` on every notification; returns the function that unsubscribes it. */
  subscribe(listener: DueListener): () => void {
    this.listeners.add(listener);
    if (!this.client && !this.connecting) this.connecting = this.connect();
    return () => {
      this.listeners.delete(listener);
    };
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const config = connectionConfig(this.options);
    const client = new pg.Client({ ...config, application_name: `${config.application_name}-listen` });
    const retry = () => {
      if (this.client === client) this.client = undefined;
      client.end().catch(() => {});
      if (this.closed || this.retryTimer) return;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.connecting = this.connect();
      }, 1000);
      this.retryTimer.unref();
    };
    client.on("error", retry);
    client.on("end", retry);
    client.on("notification", (message) => {
      const at = Number(message.payload);
      for (const listener of this.listeners) listener(Number.isFinite(at) ? at : 0);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${QUEUE_CHANNEL}`);
      if (this.closed) {
        await client.end();
        return;
      }
      this.client = client;
      // Work may have become due while we were not listening.
      for (const listener of this.listeners) listener(0);
    } catch {
      retry();
    } finally {
      this.connecting = undefined;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.connecting;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }
}

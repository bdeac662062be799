/**
 * The lookup version pushed to each node, so that accepting a message reads nothing from
 * PostgreSQL while the settings stay unchanged (issue 8's rate goal; lookup-cache.ts is what
 * uses the version). Without it every MAIL FROM cost a version read (0.37 per message in
 * bench:relay after sharing reads); with the reads stubbed out the bench gained 2–3 points.
 *
 * The contract stays strict: a change whose write has returned is seen by every later command on
 * every node. A cache that only listened for NOTIFY would not give that (the notification is
 * delivered some time after the writer's commit returns), so the writer waits instead:
 *
 * - Each serving node keeps one connection LISTENing on `petrel_lookups` and registered in
 *   `lookup_watchers` (its backend pid) with the version it has seen. Migration 11's trigger
 *   sends the notification in the changing transaction (one per transaction: same channel and
 *   payload are folded by PostgreSQL).
 * - On a notification the node stops using its version at once (synchronously, in the handler),
 *   reads the version, uses it, and only then records it as seen.
 * - A writer of looked-up rows (the wrapped methods in postgres-store.ts: CLI, HTTP API, another
 *   node) returns only once every live watcher has seen its version (awaitLookupPropagation):
 *   by then no node can answer from an older one.
 *
 * Failures fall back to reading, never to a stale answer. A node uses its version only while a
 * ping sent within the last VALIDITY_MS found its row: PostgreSQL sends a listener every
 * notification committed before a query's ReadyForQuery (postgres.c processes pending notifies
 * before it), so an answered ping proves the node has heard of every change committed before it
 * was sent. A writer that waits longer than CONFIRM_TIMEOUT_MS (> VALIDITY_MS) for a watcher
 * removes its row and returns: that node, if it is alive at all, has stopped using its version
 * by then (its pings are older than VALIDITY_MS) and re-registers when its next ping finds no row.
 * Rows of backends that no longer exist (a killed node) are ignored by writers.
 */
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { connectionConfig, type Pool, type PostgresConnectionOptions } from "./connection.js";

const LOOKUP_CHANNEL = "petrel_lookups";
const VALIDITY_MS = 2_000;
const PING_INTERVAL_MS = 500;
const CONFIRM_TIMEOUT_MS = 3_000;
/** A listener query unanswered this long means a dead connection: reconnect. */
const QUERY_TIMEOUT_MS = 5_000;

/**
 * A watcher row whose backend still exists: the same pid in this database, started before the
 * row was registered (so a pid reused by a later backend does not count; a second's margin for
 * the millisecond rounding of registered_at).
 */
const LIVE = `EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.listener_pid
  AND a.datname = current_database()
  AND a.backend_start <= to_timestamp(w.registered_at / 1000.0) + interval '1 second')`;

export class LookupVersionPush {
  private readonly options: PostgresConnectionOptions;
  private client: pg.Client | undefined;
  private version = 0;
  /** Registered, and the version was read since the last notification. */
  private usable = false;
  /** Notifications received so far: a read overtaken by one must be done again. */
  private notified = 0;
  /** When (performance.now()) the newest answered ping that found our row was sent. */
  private confirmedAt = Number.NEGATIVE_INFINITY;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private pinging = false;

  constructor(options: PostgresConnectionOptions) {
    this.options = options;
  }

  /** The version this node may use without a read, or undefined (then read it). */
  current(): number | undefined {
    if (!this.usable || performance.now() - this.confirmedAt > VALIDITY_MS) return undefined;
    return this.version;
  }

  start(): void {
    void this.connect();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const config = connectionConfig(this.options);
    const client = new pg.Client({
      ...config,
      application_name: `${config.application_name}-lookups`,
      query_timeout: QUERY_TIMEOUT_MS,
    });
    const broken = () => {
      if (this.client !== client) return;
      this.client = undefined;
      this.usable = false;
      clearInterval(this.timer);
      client.end().catch(() => {});
      if (this.closed) return;
      setTimeout(() => void this.connect(), 1000).unref();
    };
    client.on("error", broken);
    client.on("end", broken);
    client.on("notification", (message) => {
      if (message.channel !== LOOKUP_CHANNEL || this.client !== client) return;
      // Synchronously, before any later answer on this connection is handled: from here until
      // the version is read again, lookups read it themselves.
      this.usable = false;
      this.notified++;
      this.refresh(client);
    });
    // Set before connecting, so that a failure at any step goes through `broken` (reconnect).
    this.client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${LOOKUP_CHANNEL}`);
      await this.register(client);
      this.timer = setInterval(() => this.ping(client), PING_INTERVAL_MS);
      this.timer.unref();
    } catch {
      broken();
    }
  }

  /** A row with no version seen yet (writers wait for it), then the first read. */
  private async register(client: pg.Client): Promise<void> {
    // Rows of backends that are gone (killed nodes): writers skip them, this keeps the table small.
    await client.query(`DELETE FROM lookup_watchers w WHERE NOT ${LIVE}`);
    // registered_at on the database's clock: writers compare it with backend_start (see LIVE).
    await client.query(
      `INSERT INTO lookup_watchers (listener_pid, label, seen_version, registered_at)
       VALUES (pg_backend_pid(), $1, -1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
       ON CONFLICT (listener_pid) DO UPDATE SET label = $1, seen_version = -1,
         registered_at = EXCLUDED.registered_at`,
      [`${hostname()}:${process.pid}`],
    );
    // A read begun before the row existed (a notification during the insert) must not be the
    // one that re-enables the version after an eviction: wait it out, then read afresh.
    while (this.refreshing) await this.refreshing;
    this.refresh(client);
    await this.refreshing;
  }

  /** Reads the version (again while a notification overtook the read), uses it, then acks it. */
  private refresh(client: pg.Client): void {
    if (this.refreshing) return; // the running loop sees `notified` change and reads again
    this.refreshing = (async () => {
      try {
        for (;;) {
          const seen = this.notified;
          const sent = performance.now();
          const { rows } = await client.query("SELECT version FROM lookup_version WHERE id = 1");
          // A connection given up meanwhile may have missed notifications: its read proves nothing.
          if (this.client !== client) return;
          if (this.notified !== seen) continue;
          this.version = Number(rows[0]?.version ?? 0);
          this.confirmedAt = sent;
          this.usable = true;
          // Seen only now that it is in use: a writer that reads this row may return.
          const ack = await client.query(
            "UPDATE lookup_watchers SET seen_version = $1 WHERE listener_pid = pg_backend_pid()",
            [this.version],
          );
          if (ack.rowCount === 0) {
            this.evicted(client);
            return;
          }
          if (this.notified === seen) return;
        }
      } catch {
        if (this.client === client) this.usable = false;
        client.end().catch(() => {}); // 'end' → broken → reconnect
      } finally {
        this.refreshing = undefined;
      }
    })();
  }

  private ping(client: pg.Client): void {
    if (this.pinging || this.client !== client) return;
    this.pinging = true;
    const sent = performance.now();
    client
      .query("SELECT 1 FROM lookup_watchers WHERE listener_pid = pg_backend_pid()")
      .then(
        (result) => {
          if (this.client !== client) return;
          if (result.rowCount === 0) this.evicted(client);
          else if (this.usable) this.confirmedAt = Math.max(this.confirmedAt, sent);
        },
        () => {
          if (this.client === client) this.usable = false;
          client.end().catch(() => {}); // a timed-out query leaves the connection unusable
        },
      )
      .finally(() => {
        this.pinging = false;
      });
  }

  /** A writer gave up waiting for us and removed our row: read nothing stale, register again. */
  private evicted(client: pg.Client): void {
    if (this.client !== client) return;
    this.usable = false;
    this.register(client).catch(() => {
      this.usable = false;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.usable = false;
    clearInterval(this.timer);
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    await this.refreshing;
    await client.query("DELETE FROM lookup_watchers WHERE listener_pid = pg_backend_pid()").catch(() => {});
    await client.end().catch(() => {});
  }
}

/**
 * Called after a write of looked-up rows has committed: returns once every live watcher has seen
 * a version at least as new (normally a millisecond or two), or after `timeoutMs`, having
 * removed the watchers that still lag (see the file comment for why that is safe).
 */
async function awaitLookupPropagation(pool: Pool, timeoutMs = CONFIRM_TIMEOUT_MS): Promise<void> {
  const start = performance.now();
  let pause = 1;
  for (;;) {
    const { rows } = await pool.query<{ listener_pid: number; version: number }>({
      name: "lookup_watchers_lagging",
      text: `SELECT w.listener_pid, v.version FROM lookup_version v
             JOIN lookup_watchers w ON w.seen_version < v.version
             WHERE v.id = 1 AND ${LIVE}`,
    });
    if (rows.length === 0) return;
    if (performance.now() - start >= timeoutMs) {
      await pool.query("DELETE FROM lookup_watchers WHERE listener_pid = ANY($1) AND seen_version < $2", [
        rows.map((r) => r.listener_pid),
        rows[0]!.version,
      ]);
      return;
    }
    await sleep(pause);
    pause = Math.min(pause * 2, 20);
  }
}

/**
 * The Store methods that write looked-up rows (the tables under migration 5's triggers): each
 * returns only once the change has reached every serving node. A method added there that
 * writes those tables belongs here too.
 */
const LOOKUP_WRITERS = [
  "createAccount",
  "insertApiKey",
  "revokeApiKey",
  "addDomain",
  "addDomainWithKeys",
  "removeDomain",
  "addSender",
  "removeSender",
  "addDkimKeys",
  "deleteDkimKey",
  "recordDomainCheck",
] as const;

/** `part` with its LOOKUP_WRITERS waiting for the change to reach every node after they commit. */
export function propagatingLookupWrites<T extends object>(part: T, pool: Pool, timeoutMs?: number): T {
  const copy = { ...part } as Record<string, unknown>;
  for (const name of LOOKUP_WRITERS) {
    const method = copy[name];
    if (typeof method !== "function") continue;
    copy[name] = async (...args: unknown[]) => {
      const result = await (method as (...a: unknown[]) => Promise<unknown>)(...args);
      await awaitLookupPropagation(pool, timeoutMs);
      return result;
    };
  }
  return copy as T;
}

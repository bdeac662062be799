/**
 * PostgreSQL connections for the store: the pools, transactions, migrations and error mapping.
 *
 * - int8 columns (ids, millisecond times, counts) are parsed to numbers: every value we store fits
 *   in 2^53 (ids from sequences, times in ms), and the Store interface speaks numbers.
 * - synchronous_commit is on for the durable pool whatever the server's default: a commit the
 *   store reports is on disk, so `250` means committed. Delivery writes (claims, outcomes,
 *   webhook cursors) use a second, relaxed pool (synchronous_commit off), like SQLite's
 *   synchronous=NORMAL for them: a database crash can then undo the last few of them, which
 *   means one more delivery attempt at most, never lost mail.
 * - Migrations run under a session advisory lock, so nodes starting together apply each version
 *   once; each version is one transaction with its row in petrel_migrations.
 */
import pg from "pg";
import { StoreConflictError } from "../types.js";
import { MIGRATIONS } from "./migrations.js";

export type Pool = pg.Pool;
export type Client = pg.PoolClient;
export type Row = Record<string, unknown>;

/** Advisory lock keys (one namespace for Petrel: the first int4 of the two-int4 form). */
export const LOCK_NAMESPACE = 0x7065_7472; // "petr"
export const LOCK_MIGRATE = 1;
export const LOCK_EVENTS = 2;

export interface PostgresConnectionOptions {
  readonly url: string;
  readonly poolSize?: number;
  readonly statementTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /** Shown in pg_stat_activity. */
  readonly applicationName?: string;
}

const INT8 = 20;
const types = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8 && format !== "binary") return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

export function connectionConfig(
  options: PostgresConnectionOptions,
  durability: "durable" | "relaxed" = "durable",
): pg.PoolConfig {
  return {
    connectionString: options.url,
    // Set per session whatever the server's default: durable sessions wait for the WAL flush.
    options: `-c synchronous_commit=${durability === "durable" ? "on" : "off"}`,
    max: options.poolSize ?? 10,
    statement_timeout: options.statementTimeoutMs || undefined,
    // A transaction left open (a bug, a hung node) would hold row locks and stop vacuum: end it.
    idle_in_transaction_session_timeout: 60_000,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: options.applicationName ?? "petrel",
    // pg 8.23's pipeline mode: a client writes a query without waiting for the previous one's
    // answer, so transaction() sends BEGIN with the first statement (below). Each query still
    // has its own Sync, so an error fails that query alone (and, in a transaction, the rest).
    // Cursors and the `rows` option are refused in this mode; the store uses neither.
    pipeline: true,
    types,
  };
}

export function createPool(options: PostgresConnectionOptions, durability: "durable" | "relaxed"): Pool {
  const pool = new pg.Pool(connectionConfig(options, durability));
  // An idle client losing its connection (database restart) must not crash the process; the
  // pool drops it and the next query connects afresh.
  pool.on("error", () => {});
  // A client checked out of the pool (a transaction between two statements, a query in flight)
  // has no error listener of the pool's: a connection reset there emitted an unhandled 'error'
  // and killed the process (found by test/cluster-outage.test.ts). The statements in flight
  // still fail with the error, and transaction() drops the broken client; this only keeps the
  // process alive so that it reconnects.
  pool.on("connect", (client) => {
    client.on("error", () => {});
  });
  return pool;
}

/** The client's socket (pg keeps it as connection.stream), to send several queries in one write. */
function socketOf(client: Client): { cork(): void; uncork(): void } | undefined {
  return (client as unknown as { connection?: { stream?: { cork(): void; uncork(): void } } }).connection
    ?.stream;
}

/**
 * Runs `fn` in one transaction on one connection: COMMIT when it resolves, ROLLBACK when it
 * throws. A failed COMMIT (connection lost) rejects: the caller must treat the outcome as
 * unknown, never as committed.
 *
 * BEGIN is not waited for: in pipeline mode it leaves in the same socket write as the first
 * statement `fn` sends before it first awaits (the socket is corked while `fn` starts), one write
 * and one round trip fewer per transaction. Each write to a loopback socket cost 30-70 µs of CPU
 * in bench:relay's profile (the kernel delivers to PostgreSQL inside the call), and the group
 * commits, claims and outcome batches are all short transactions. If BEGIN fails, so does every
 * statement behind it, and the error is BEGIN's.
 */
/** COMMITs already sent behind a transaction's last statement (queryThenCommit), by client. */
const SENT_COMMITS = new WeakMap<Client, Promise<pg.QueryResult>>();

/**
 * Sends `query` as the last statement of the running transaction() with its COMMIT right behind
 * it, in one write: no round trip between them, and a lock the statement takes (the event lock)
 * is held for the commit's WAL flush alone. Only for the very last statement of the callback:
 * nothing may be sent after it. If it fails, PostgreSQL answers the COMMIT with ROLLBACK and
 * transaction() rejects.
 */
export function queryThenCommit(client: Client, query: pg.QueryConfig): Promise<pg.QueryResult> {
  const socket = socketOf(client);
  socket?.cork();
  try {
    const result = client.query(query);
    const commit = client.query("COMMIT");
    commit.catch(() => {});
    SENT_COMMITS.set(client, commit);
    return result;
  } finally {
    socket?.uncork();
  }
}

export async function transaction<T>(pool: Pool, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const socket = socketOf(client);
  try {
    socket?.cork();
    const begin = client.query("BEGIN");
    // Awaited below; this only keeps a failed BEGIN from being unhandled if fn throws at once.
    begin.catch(() => {});
    let running: Promise<T>;
    try {
      running = fn(client);
    } finally {
      socket?.uncork();
    }
    // Settle both before deciding: a failed BEGIN also fails fn's statements.
    const [begun, ran] = await Promise.allSettled([begin, running]);
    const sent = SENT_COMMITS.get(client);
    SENT_COMMITS.delete(client);
    if (begun.status === "rejected" || ran.status === "rejected") {
      await sent?.catch(() => {});
      throw begun.status === "rejected" ? begun.reason : (ran as PromiseRejectedResult).reason;
    }
    const committed = await (sent ?? client.query("COMMIT"));
    // COMMIT of a transaction that an error aborted is answered ROLLBACK, without an error.
    if (committed.command !== "COMMIT")
      throw new Error(`the transaction was rolled back (${committed.command})`);
    return ran.value;
  } catch (err) {
    // A connection that cannot even roll back is dropped from the pool, not reused.
    await client.query("ROLLBACK").catch((e: Error) => {
      broken = e;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

/** Turns a uniqueness violation into a StoreConflictError with a message an operator understands. */
export function conflictOr(err: unknown, message: string): unknown {
  if (err instanceof StoreConflictError) return err;
  if ((err as { code?: string }).code === "23505") return new StoreConflictError(message);
  return err;
}

/** Applies the migrations not yet applied, once across every node starting at the same time. */
export async function migrate(pool: Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1, $2)", [LOCK_NAMESPACE, LOCK_MIGRATE]);
    try {
      await client.query(
        `CREATE TABLE IF NOT EXISTS petrel_migrations (
           version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query("SELECT coalesce(max(version), 0) AS v FROM petrel_migrations");
      const current = Number(rows[0].v);
      if (current > MIGRATIONS.length) {
        throw new Error(
          `the database schema is version ${current}, newer than this Petrel (${MIGRATIONS.length}): upgrade Petrel`,
        );
      }
      for (let v = current; v < MIGRATIONS.length; v++) {
        await client.query("BEGIN");
        try {
          await client.query(MIGRATIONS[v]!);
          await client.query("INSERT INTO petrel_migrations (version) VALUES ($1)", [v + 1]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK").catch(() => {});
          throw err;
        }
      }
    } finally {
      await client.query("SELECT pg_advisory_unlock($1, $2)", [LOCK_NAMESPACE, LOCK_MIGRATE]).catch(() => {});
    }
  } finally {
    client.release();
  }
}

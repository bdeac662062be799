/**
 * Fresh PostgreSQL databases for tests: created on the machine's server (trust auth on
 * 127.0.0.1:5432, user postgres; TEST_POSTGRES_URL names another server), named uniquely
 * per process and call so parallel test runs never collide, and dropped by the test.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";

export const POSTGRES_ADMIN_URL =
  process.env.TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

let counter = 0;

export interface FreshDatabase {
  readonly name: string;
  readonly url: string;
  /** Drops the database, ending any connection still open to it. */
  drop(): Promise<void>;
}

export async function freshPostgresDatabase(prefix = "petrel_test"): Promise<FreshDatabase> {
  const name = `${prefix}_${process.pid}_${++counter}_${randomBytes(3).toString("hex")}`;
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

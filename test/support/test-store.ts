/**
 * Which store the end-to-end tests run on: SQLite (default) or, with TEST_STORE=postgres (not a
 * PETREL_ name: those are configuration, and the CLI would reject an unknown key),
 * a fresh PostgreSQL database per data directory (created on first use, dropped by
 * removeDataDir), so the same suites exercise both backends (issue 8).
 *
 * The database's URL is kept in the data directory (petrel-test-store.json), so everything that
 * knows only the directory — `petrel serve` through testConfig(), the CLI through petrelCli(),
 * a test reading the store — finds the same database. psql runs synchronously here because
 * testConfig() is synchronous; it is the machine's client of the machine's server.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { openPostgresStore } from "../../src/store/postgres/postgres-store.js";
import { openSqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import type { Store } from "../../src/store/types.js";
import { POSTGRES_ADMIN_URL } from "./postgres.js";

export const TEST_STORE: "sqlite" | "postgres" =
  process.env.TEST_STORE === "postgres" ? "postgres" : "sqlite";

const MARKER = "petrel-test-store.json";

/** The data directory's PostgreSQL URL (creating its database), or undefined on SQLite. */
export function postgresUrlFor(dataDir: string): string | undefined {
  if (TEST_STORE !== "postgres") return undefined;
  const marker = join(dataDir, MARKER);
  if (existsSync(marker)) return (JSON.parse(readFileSync(marker, "utf8")) as { url: string }).url;
  const name = `petrel_e2e_${basename(dataDir)
    .replace(/[^a-zA-Z0-9]/g, "")
    .toLowerCase()}_${randomBytes(3).toString("hex")}`;
  psql(`CREATE DATABASE ${name}`);
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  writeFileSync(marker, JSON.stringify({ name, url: url.toString() }));
  return url.toString();
}

/** Configuration for the store of `dataDir` (empty on SQLite: the default is right). */
export function storeConfigFor(dataDir: string): Record<string, unknown> {
  const url = postgresUrlFor(dataDir);
  return url ? { store: { driver: "postgres", postgres: { url, poolSize: 4 } } } : {};
}

/** Environment for CLI commands on `dataDir` (PETREL_STORE__* on PostgreSQL). */
export function storeEnvFor(dataDir: string): NodeJS.ProcessEnv {
  const url = postgresUrlFor(dataDir);
  return url ? { PETREL_STORE__DRIVER: "postgres", PETREL_STORE__POSTGRES__URL: url } : {};
}

/** Opens the store of `dataDir` directly (for tests that look inside). */
export async function openTestStore(dataDir: string): Promise<Store> {
  const url = postgresUrlFor(dataDir);
  return url
    ? openPostgresStore({ url, poolSize: 2 })
    : openSqliteStore({ file: join(dataDir, "petrel.db") });
}

/**
 * Plain SQL on the store of `dataDir`, for tests that do what the Store API deliberately cannot
 * (damage a row as a bad restore would). Placeholders are `?` on both backends (numbered for
 * PostgreSQL here); the statement itself must be valid on both.
 */
export interface TestSql {
  /** Runs a statement; returns the number of rows it changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
  all<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export async function openTestSql(dataDir: string): Promise<TestSql> {
  const url = postgresUrlFor(dataDir);
  if (!url) {
    const db = new Database(join(dataDir, "petrel.db"));
    return {
      run: async (sql, params = []) => db.prepare(sql).run(...params).changes,
      all: async <T>(sql: string, params: readonly unknown[] = []) => db.prepare(sql).all(...params) as T[],
      close: async () => void db.close(),
    };
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const numbered = (sql: string) => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  return {
    run: async (sql, params = []) => (await client.query(numbered(sql), [...params])).rowCount ?? 0,
    all: async <T>(sql: string, params: readonly unknown[] = []) =>
      (await client.query(numbered(sql), [...params])).rows as T[],
    close: () => client.end(),
  };
}

/** Drops the data directory's database, if it has one. */
export function dropTestDatabase(dataDir: string): void {
  const marker = join(dataDir, MARKER);
  if (!existsSync(marker)) return;
  const { name } = JSON.parse(readFileSync(marker, "utf8")) as { name: string };
  psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

function psql(sql: string): void {
  execFileSync("psql", [POSTGRES_ADMIN_URL, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], { stdio: "pipe" });
}

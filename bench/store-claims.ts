/**
 * bench:claims — the delivery queue's own cost, without SMTP: claim + outcome cycles on SQLite
 * and on PostgreSQL in the same run (issue 8: goal ≥ 4,000 recipients/s on one node), and the
 * REPEATABLE READ bloat test: steady churn (enqueue, claim, deliver) while another session holds
 * a REPEATABLE READ snapshot open the whole time, comparing the claim+outcome rate of the first
 * and the last window (goal: drop < 10% over 5 minutes).
 *
 * PostgreSQL: a fresh database on 127.0.0.1:5432 (TEST_POSTGRES_URL overrides), dropped at
 * the end. Prints numbers beside their goals; `--json` prints one JSON object.
 *
 * Usage: npm run bench:claims -- [--recipients 20000] [--batch 500] [--bloat-seconds 300]
 *        [--window-seconds 30] [--store sqlite|postgres|both] [--json]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { openPostgresStore } from "../src/store/postgres/postgres-store.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import type { NewMessage, RecipientOutcome, Store } from "../src/store/types.js";
import { removeDataDir, tempDataDir } from "../test/support/petrel-process.js";
import { freshPostgresDatabase } from "../test/support/postgres.js";

const { values: args } = parseArgs({
  options: {
    recipients: { type: "string", default: "20000" },
    batch: { type: "string", default: "500" },
    "bloat-seconds": { type: "string", default: "300" },
    "window-seconds": { type: "string", default: "30" },
    store: { type: "string", default: "both" },
    json: { type: "boolean", default: false },
  },
});
const RECIPIENTS = Number(args.recipients);
const BATCH = Number(args.batch);
const BLOAT_MS = Number(args["bloat-seconds"]) * 1000;
const WINDOW_MS = Number(args["window-seconds"]) * 1000;
const log = (line: string) => {
  if (!args.json) console.log(line);
};

let serial = 0;
function messages(accountId: number, count: number, perMessage: number, at: number): NewMessage[] {
  return Array.from({ length: count }, () => {
    const id = `B${String(++serial).padStart(12, "0")}`;
    return {
      id,
      accountId,
      apiKeyId: null,
      mailFrom: "app@sender.test",
      recipients: Array.from({ length: perMessage }, (_, i) => `user${i}@dest${serial % 20}.test`),
      content: Buffer.alloc(2048, 0x61),
      clientIp: "127.0.0.1",
      receivedAt: at,
      expiresAt: at + 3600_000,
    };
  });
}

function delivered(ids: readonly number[], owner: string): RecipientOutcome[] {
  const at = Date.now();
  return ids.map((recipientId) => ({
    recipientId,
    owner,
    state: "delivered",
    nextAttemptAt: null,
    attempt: {
      at,
      durationMs: 3,
      mxHost: "mx.dest.test",
      ip: "127.0.0.2",
      port: 25,
      sourceIp: null,
      tls: null,
      reply: "250 2.0.0 Ok",
    },
  }));
}

async function fill(store: Store, accountId: number, recipients: number): Promise<void> {
  const perMessage = 5;
  for (let left = recipients; left > 0; left -= 100 * perMessage) {
    await store.enqueueMessages(
      messages(accountId, Math.min(100, Math.ceil(left / perMessage)), perMessage, Date.now() - 1000),
    );
  }
}

/**
 * Claims and records outcomes until nothing is due; returns recipients/s and ms per claim.
 * `overlap`: the next claim runs while the previous outcomes commit, as the delivery worker does
 * (it commits outcomes in the background and keeps claiming); otherwise one after the other.
 */
async function cycles(
  store: Store,
  overlap: boolean,
): Promise<{ perSecond: number; recipients: number; claimMs: number }> {
  const owner = "bench:1:claims";
  let done = 0;
  let claims = 0;
  let claimTime = 0;
  let committing: Promise<void> = Promise.resolve();
  const start = performance.now();
  for (;;) {
    const t = performance.now();
    const got = await store.claimDue({ owner, now: Date.now(), leaseMs: 60_000, limit: BATCH });
    claimTime += performance.now() - t;
    claims++;
    await committing;
    if (got.length === 0) break;
    const ids = got.map((r) => r.id);
    committing = store.recordOutcomes(delivered(ids, owner));
    if (!overlap) await committing;
    done += got.length;
  }
  const seconds = (performance.now() - start) / 1000;
  return { perSecond: done / seconds, recipients: done, claimMs: claimTime / claims };
}

async function measure(store: Store, accountId: number, name: string, goal: string) {
  const result: Record<string, unknown> = {};
  for (const overlap of [false, true]) {
    await fill(store, accountId, RECIPIENTS);
    const r = await cycles(store, overlap);
    const mode = overlap ? "overlapped" : "serial";
    result[mode] = { perSecond: Math.round(r.perSecond), recipients: r.recipients, claimMs: r.claimMs };
    log(
      `${name}  claim+outcome, ${mode.padEnd(10)}: ${Math.round(r.perSecond)} recipients/s (${r.recipients}, batch ${BATCH}, ${r.claimMs.toFixed(1)} ms per claim)${goal}`,
    );
  }
  return result;
}

interface Window {
  readonly from: number;
  perSecond: number;
  claimMs: number;
}

/** Steady churn for BLOAT_MS: each round enqueues BATCH recipients, claims and delivers them. */
async function churn(store: Store, accountId: number): Promise<Window[]> {
  const owner = "bench:1:churn";
  const windows: Window[] = [];
  const start = performance.now();
  let current: { from: number; done: number; busy: number; claims: number; claimTime: number } | undefined;
  while (performance.now() - start < BLOAT_MS) {
    const elapsed = performance.now() - start;
    const index = Math.floor(elapsed / WINDOW_MS);
    if (!current || index * WINDOW_MS !== current.from) {
      if (current) windows.push(close(current));
      current = { from: index * WINDOW_MS, done: 0, busy: 0, claims: 0, claimTime: 0 };
    }
    await store.enqueueMessages(messages(accountId, BATCH / 5, 5, Date.now()));
    const t = performance.now();
    const got = await store.claimDue({ owner, now: Date.now(), leaseMs: 60_000, limit: BATCH });
    const t2 = performance.now();
    await store.recordOutcomes(
      delivered(
        got.map((r) => r.id),
        owner,
      ),
    );
    current.busy += performance.now() - t;
    current.claimTime += t2 - t;
    current.claims++;
    current.done += got.length;
  }
  if (current) windows.push(close(current));
  return windows;

  function close(w: { from: number; done: number; busy: number; claims: number; claimTime: number }): Window {
    return { from: w.from / 1000, perSecond: w.done / (w.busy / 1000), claimMs: w.claimTime / w.claims };
  }
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = {};
  const which = args.store;
  if (which === "sqlite" || which === "both") {
    const dir = tempDataDir("petrel-bench-claims-");
    const store = openSqliteStore({ file: join(dir, "petrel.db") });
    const account = (await store.getAccount("default"))!;
    results.sqlite = await measure(store, account.id, "sqlite  ", "");
    await store.close();
    removeDataDir(dir);
  }
  if (which === "postgres" || which === "both") {
    const db = await freshPostgresDatabase("petrel_bench");
    const store = await openPostgresStore({ url: db.url, poolSize: 4 });
    let snapshot: pg.Client | undefined;
    try {
      const account = (await store.getAccount("default"))!;
      results.postgres = await measure(store, account.id, "postgres", "   goal ≥ 4000");
      if (BLOAT_MS > 0) {
        // A backlog stays in the queue (as in production), and a REPEATABLE READ snapshot taken
        // now stays open until the end: vacuum can remove nothing that dies meanwhile.
        await fill(store, account.id, 5000);
        snapshot = new pg.Client({ connectionString: db.url });
        await snapshot.connect();
        await snapshot.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
        await snapshot.query("SELECT count(*) FROM recipients");
        const windows = await churn(store, account.id);
        const first = windows[0]!;
        const last = windows[windows.length - 1]!;
        const drop = 1 - last.perSecond / first.perSecond;
        const dead = await store.pool.query(
          "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'queue'",
        );
        results.bloat = {
          seconds: BLOAT_MS / 1000,
          windows,
          dropPercent: Math.round(drop * 1000) / 10,
          queueDeadTuples: Number(dead.rows[0]?.n_dead_tup ?? 0),
        };
        for (const w of windows) {
          log(
            `  churn ${String(w.from).padStart(4)} s: ${Math.round(w.perSecond)} recipients/s, ${w.claimMs.toFixed(2)} ms per claim`,
          );
        }
        log(
          `postgres  REPEATABLE READ held ${BLOAT_MS / 1000} s: claim+outcome ${Math.round(first.perSecond)} → ${Math.round(last.perSecond)} recipients/s, drop ${(drop * 100).toFixed(1)}%   goal < 10%   (queue dead tuples: ${dead.rows[0]?.n_dead_tup})`,
        );
      }
    } finally {
      await snapshot?.query("ROLLBACK").catch(() => {});
      await snapshot?.end().catch(() => {});
      await store.close();
      await db.drop();
    }
  }
  if (args.json) console.log(JSON.stringify(results));
}

await main();

/**
 * bench:lookups — what the lookup cache (src/store/lookup-cache.ts, issue 12 item 3) saves per
 * message: the lookups one accepted message makes (sender identities twice — MAIL FROM and end of
 * DATA —, domain statuses twice when sending.requireVerifiedDomains is on, the From domain's
 * signing keys once, the API key once per connection) read from the store and through the cache,
 * on SQLite and PostgreSQL in the same run, MAIL FROM's and DATA's in separate event-loop turns
 * as in a session. Prints µs of wall time per message, the two turns' own cost included (single
 * caller, so wall ≈ CPU of this process; PostgreSQL's own CPU is not counted).
 *
 * Usage: npm run bench:lookups -- [--messages 20000] [--store sqlite|postgres|both] [--json]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { withLookupCache } from "../src/store/lookup-cache.js";
import { openPostgresStore } from "../src/store/postgres/postgres-store.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import type { Store } from "../src/store/types.js";
import { removeDataDir, tempDataDir } from "../test/support/petrel-process.js";
import { freshPostgresDatabase } from "../test/support/postgres.js";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "20000" },
    store: { type: "string", default: "both" },
    json: { type: "boolean", default: false },
  },
});
const messages = Number(args.messages);

async function seed(store: Store): Promise<number> {
  const account = (await store.getAccount("default"))!;
  for (let i = 0; i < 5; i++) await store.addDomain(account.id, `d${i}.example`);
  for (let i = 0; i < 5; i++) await store.addSender(account.id, `s${i}@x${i}.example`);
  await store.insertApiKey({ accountId: account.id, name: "bench", hash: "bench-hash", prefix: "p" });
  return account.id;
}

/** One message's lookups; returns µs per message. */
async function perMessage(store: Store, accountId: number, n: number): Promise<number> {
  // As in a session: MAIL FROM and the end of DATA come in different event-loop turns.
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  const one = async (i: number) => {
    if (i % 10 === 0) await store.findActiveApiKey("bench-hash"); // ten messages per connection
    await store.getSenderIdentities(accountId);
    await store.getDomainStatuses(accountId);
    await turn();
    await store.getSenderIdentities(accountId);
    await store.getDomainStatuses(accountId);
    await store.getSigningKeys("d1.example");
    await turn();
  };
  for (let i = 0; i < Math.min(1000, n); i++) await one(i);
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await one(i);
  return Number(process.hrtime.bigint() - start) / n / 1000;
}

async function measure(name: string, open: () => Promise<{ store: Store; done: () => Promise<void> }>) {
  const { store, done } = await open();
  try {
    const accountId = await seed(store);
    const n = name === "postgres" ? Math.min(messages, 5000) : messages;
    const direct = await perMessage(store, accountId, n);
    const cached = await perMessage(withLookupCache(store), accountId, n);
    return { store: name, messages: n, directMicros: direct, cachedMicros: cached };
  } finally {
    await done();
  }
}

const results = [];
if (args.store !== "postgres") {
  results.push(
    await measure("sqlite", async () => {
      const dir = tempDataDir("petrel-bench-lookups-");
      const store = openSqliteStore({ file: join(dir, "petrel.db") });
      const done = async () => {
        await store.close();
        removeDataDir(dir);
      };
      return { store, done };
    }),
  );
}
if (args.store !== "sqlite") {
  results.push(
    await measure("postgres", async () => {
      const db = await freshPostgresDatabase("petrel_bench_lookups");
      const store = await openPostgresStore({ url: db.url, poolSize: 4 });
      const done = async () => {
        await store.close();
        await db.drop();
      };
      return { store, done };
    }),
  );
}
if (args.json) {
  console.log(JSON.stringify({ results }));
} else {
  for (const r of results) {
    console.log(
      `${r.store.padEnd(8)} lookups per message: ${r.directMicros.toFixed(1)} µs from the store, ` +
        `${r.cachedMicros.toFixed(1)} µs through the cache (${(r.directMicros / r.cachedMicros).toFixed(1)}× less; ${r.messages} messages)`,
    );
  }
}

/**
 * bench:dashboard — every dashboard page served by a real `petrel serve` on loopback with
 * 100,000 messages stored (issue 9: "every page served in under 100 ms"; the message search's
 * p99 under 100 ms). Seeds the SQLite store directly (enqueueMessages in batches of 1,000: each
 * message 1 KB, one recipient among 2,000 addresses, a category on every tenth, received over the
 * last three days), signs in like a browser, then requests each page sequentially and prints
 * p50/p99 per page beside the goal, and the first load's size (HTML + CSS + JS, raw and gzip)
 * beside the 200 KB goal.
 *
 * Usage: npm run bench:dashboard -- [--messages 100000] [--requests 200]
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { ulid } from "ulidx";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import type { NewMessage } from "../src/store/types.js";
import { petrelOk, removeDataDir, startPetrel, tempDataDir } from "../test/support/petrel-process.js";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "100000" },
    requests: { type: "string", default: "200" },
  },
});
const MESSAGES = Number(args.messages);
const REQUESTS = Number(args.requests);
const GOAL_MS = 100;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function seed(dataDir: string): Promise<string> {
  const store = openSqliteStore({ file: join(dataDir, "petrel.db") });
  const account = (await store.getAccount("default"))!;
  const now = Date.now();
  const span = 3 * 86_400_000;
  const body = `${"Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(15)}\r\n`;
  const started = Date.now();
  let last = "";
  for (let done = 0; done < MESSAGES; ) {
    const batch: NewMessage[] = [];
    for (let i = 0; i < 1000 && done < MESSAGES; i++, done++) {
      const receivedAt = now - span + Math.floor((done / MESSAGES) * span);
      const id = ulid(receivedAt);
      const to = `user${done % 2000}@dest${done % 50}.example`;
      last = id;
      batch.push({
        id,
        accountId: account.id,
        apiKeyId: null,
        mailFrom: `app${done % 5}@app.example`,
        recipients: [to],
        content: Buffer.from(
          `From: app@app.example\r\nTo: ${to}\r\nSubject: Order ${done}\r\nMessage-ID: <${id}@app.example>\r\n\r\n${body}`,
        ),
        clientIp: "127.0.0.1",
        receivedAt,
        expiresAt: receivedAt + 72 * 3600_000,
        ...(done % 10 === 0 ? { categories: ["receipts"] } : {}),
      });
    }
    await store.enqueueMessages(batch);
  }
  await store.close();
  console.log(`seeded ${MESSAGES} messages in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return last;
}

async function main(): Promise<void> {
  const dataDir = tempDataDir("petrel-bench-dash-");
  const key = (await petrelOk(dataDir, ["keys", "create", "-n", "bench", "--scopes", "admin"])).trim();
  // Without events.read the overview has no charts: its cost without the stats service's count.
  const noStats = (
    await petrelOk(dataDir, ["keys", "create", "-n", "no-stats", "--scopes", "messages.read,webhooks.write"])
  ).trim();
  const lastId = await seed(dataDir);
  // Delivery stays off (the test default): the 100,000 messages stay queued, the worst case
  // for the overview's queue summary.
  const petrel = await startPetrel(dataDir);
  const base = `http://127.0.0.1:${petrel.ports.http}`;
  try {
    const signIn = async (k: string) => {
      const login = await fetch(`${base}/login`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ key: k }).toString(),
        redirect: "manual",
      });
      return (login.headers.get("set-cookie") ?? "").split(";")[0]!;
    };
    const admin = await signIn(key);
    const noStatsCookie = await signIn(noStats);
    let cookie = admin;
    const get = async (path: string) => {
      const t = performance.now();
      const response = await fetch(`${base}${path}`, { headers: { cookie, "accept-encoding": "identity" } });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`${path}: ${response.status} ${text.slice(0, 200)}`);
      return { ms: performance.now() - t, text };
    };

    // First load: the overview's HTML and the two assets it links.
    const overview = (await get("/")).text;
    const assets = [...overview.matchAll(/(?:href|src)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    let raw = Buffer.byteLength(overview);
    let gz = gzipSync(overview).length;
    for (const a of assets) {
      const text = (await get(a)).text;
      raw += Buffer.byteLength(text);
      gz += gzipSync(text).length;
    }
    console.log(
      `first load (overview + ${assets.length} assets): ${(raw / 1024).toFixed(1)} KB raw, ${(gz / 1024).toFixed(1)} KB gzip  (goal < 200 KB compressed)`,
    );

    const pages: Array<[string, string, string?]> = [
      ["overview", "/"],
      ["overview without charts", "/", noStatsCookie],
      ["message search (newest 50)", "/messages"],
      ["message search to=", "/messages?to=user1234%40dest34.example"],
      ["message search from=", "/messages?from=app3%40app.example"],
      ["message search state=queued", "/messages?state=queued"],
      ["message search category", "/messages?category=receipts"],
      [
        "message search since/until",
        `/messages?since=${new Date(Date.now() - 86_400_000).toISOString().slice(0, 16)}&until=${new Date(Date.now() - 43_200_000).toISOString().slice(0, 16)}`,
      ],
      ["message search by ID", `/messages?id=${lastId}`],
      ["message page", `/messages/${lastId}`],
      ["domains", "/domains"],
      ["keys", "/keys"],
      ["suppressions", "/suppressions"],
      ["webhooks", "/webhooks"],
    ];
    console.log(
      `${REQUESTS} sequential requests per page, ${MESSAGES} messages stored (goal: p99 < ${GOAL_MS} ms)`,
    );
    for (const [name, path, as] of pages) {
      cookie = as ?? admin;
      for (let i = 0; i < 5; i++) await get(path); // warm-up
      const times: number[] = [];
      for (let i = 0; i < REQUESTS; i++) times.push((await get(path)).ms);
      times.sort((a, b) => a - b);
      const p50 = percentile(times, 50);
      const p99 = percentile(times, 99);
      console.log(
        `${name.padEnd(30)} p50 ${p50.toFixed(1).padStart(6)} ms  p99 ${p99.toFixed(1).padStart(6)} ms  ${p99 < GOAL_MS ? "ok" : "OVER GOAL"}`,
      );
    }
  } finally {
    await petrel.stop();
    removeDataDir(dataDir);
  }
}

await main();

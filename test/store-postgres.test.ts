/**
 * The Store conformance suite against PostgreSQL: each test gets a fresh database on the
 * machine's server (test/support/postgres.ts), created and dropped here.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import pg from "pg";
import { incrementUlid, randomUlid } from "../src/events/event-id.js";
import { openPostgresStore, type PostgresStore } from "../src/store/postgres/postgres-store.js";
import type { NewMessage } from "../src/store/types.js";
import { type FreshDatabase, freshPostgresDatabase } from "./support/postgres.js";
import { seededRandom } from "./support/seeded-random.js";
import { storeConformance } from "./support/store-conformance.js";

const databases: FreshDatabase[] = [];
after(async () => {
  for (const db of databases) await db.drop();
});

storeConformance("postgres", async () => {
  const db = await freshPostgresDatabase("petrel_store");
  databases.push(db);
  return openPostgresStore({ url: db.url, poolSize: 4 });
});

// ── Several nodes on one database (issue 8): what a single-store suite cannot show ──────────────

async function twoNodes(): Promise<{ a: PostgresStore; b: PostgresStore; close: () => Promise<void> }> {
  const db = await freshPostgresDatabase("petrel_nodes");
  databases.push(db);
  // Both open a fresh database at once: the migration lock makes one of them migrate.
  const [a, b] = await Promise.all([
    openPostgresStore({ url: db.url, poolSize: 6 }),
    openPostgresStore({ url: db.url, poolSize: 6 }),
  ]);
  return { a, b, close: async () => Promise.all([a.close(), b.close()]).then(() => undefined) };
}

function message(id: string, accountId: number, recipients: string[], at = Date.now()): NewMessage {
  return {
    id,
    accountId,
    apiKeyId: null,
    mailFrom: "app@sender.test",
    recipients,
    content: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
    clientIp: "127.0.0.1",
    receivedAt: at,
    expiresAt: at + 3600_000,
  };
}

describe("PostgreSQL store, several nodes", () => {
  it("gives event ids in commit order: a cursor reader on one node never skips another's events", async () => {
    const { a, b, close } = await twoNodes();
    try {
      const account = (await a.getAccount("default"))!;
      let writing = true;
      const seen: string[] = [];
      // The reader moves its cursor like a webhook endpoint does, while both nodes commit.
      const reader = (async () => {
        let cursor = "";
        for (;;) {
          const done = !writing;
          const events = await b.listEvents({ afterId: cursor, limit: 500 });
          for (const e of events) seen.push(e.id);
          if (events.length > 0) cursor = events[events.length - 1]!.id;
          if (done && events.length === 0) return;
        }
      })();
      const writers = [a, b].map(async (store, n) => {
        // Concurrent transactions per node (the pool has several connections).
        await Promise.all(
          Array.from({ length: 4 }, async (_, lane) => {
            for (let i = 0; i < 25; i++) {
              await store.enqueueMessages([
                message(`N${n}L${lane}M${String(i).padStart(3, "0")}`, account.id, ["x@d.test", "y@d.test"]),
              ]);
            }
          }),
        );
      });
      await Promise.all(writers);
      writing = false;
      await reader;
      const all = (await a.listEvents({ limit: 10_000 })).map((e) => e.id);
      assert.equal(all.length, 2 * 4 * 25 * 2);
      assert.deepEqual(seen, all, "the cursor reader saw every event, in id order");
    } finally {
      await close();
    }
  });

  it("never gives one recipient to two nodes claiming at once, and a NOTIFY wakes the other node", async () => {
    const { a, b, close } = await twoNodes();
    try {
      const account = (await a.getAccount("default"))!;
      const woken = new Promise<number>((resolve) => {
        const stop = b.onDueWork?.((at) => {
          if (at > 0) {
            stop?.();
            resolve(at);
          }
        });
      });
      // Let b's listener connect before a commits.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const at = Date.now();
      const batch = Array.from({ length: 50 }, (_, i) =>
        message(
          `C${String(i).padStart(3, "0")}`,
          account.id,
          ["r1@c.test", "r2@c.test", "r3@c.test", "r4@c.test"],
          at,
        ),
      );
      await a.enqueueMessages(batch);
      assert.equal(await woken, at, "node b heard of node a's commit with its due time");
      const claims = async (store: PostgresStore, owner: string) => {
        const mine: number[] = [];
        for (;;) {
          const got = await store.claimDue({ owner, now: at + 1, leaseMs: 60_000, limit: 7 });
          if (got.length === 0) return mine;
          mine.push(...got.map((r) => r.id));
        }
      };
      // Both pools connected before the race: a slow first connect (under load) let node a claim
      // all 200 before b's first query ran, failing "both nodes got work" without any bug.
      await Promise.all([a.lookupVersion(), b.lookupVersion(), a.lookupVersion()]);
      const [fromA, fromB, fromA2] = await Promise.all([
        claims(a, "a:1:x"),
        claims(b, "b:1:y"),
        claims(a, "a:1:z"),
      ]);
      const all = [...fromA, ...fromB, ...fromA2];
      assert.equal(all.length, 200, "every recipient claimed");
      assert.equal(new Set(all).size, 200, "none claimed twice");
      assert.ok(fromB.length > 0 && fromA.length + fromA2.length > 0, "both nodes got work");
    } finally {
      await close();
    }
  });

  it("takes over a dead node's leases once they expire, and finished rows leave the hot table", async () => {
    const { a, b, close } = await twoNodes();
    try {
      const account = (await a.getAccount("default"))!;
      await a.enqueueMessages([message("D1", account.id, ["p@e.test", "q@e.test"], 5000)]);
      const dead = await a.claimDue({ owner: "a:1:dead", now: 5000, leaseMs: 1000, limit: 10 });
      assert.equal(dead.length, 2);
      assert.equal((await b.claimDue({ owner: "b:1:live", now: 5999, leaseMs: 1000, limit: 10 })).length, 0);
      const taken = await b.claimDue({ owner: "b:1:live", now: 6000, leaseMs: 60_000, limit: 10 });
      assert.deepEqual(taken.map((r) => r.id).sort(), dead.map((r) => r.id).sort());
      await b.recordOutcomes(
        taken.map((r) => ({
          recipientId: r.id,
          owner: "b:1:live",
          state: "delivered" as const,
          nextAttemptAt: null,
          attempt: {
            at: 6001,
            durationMs: 1,
            mxHost: "mx",
            ip: null,
            port: 25,
            sourceIp: null,
            tls: null,
            reply: "250 ok",
          },
        })),
      );
      const { rows } = await a.pool.query("SELECT count(*) AS n FROM queue");
      assert.equal(rows[0].n, 0, "delivered recipients are no longer in the queue table");
      assert.deepEqual((await a.getMessage("D1"))?.states, { delivered: 2 });
    } finally {
      await close();
    }
  });
});

describe("PostgreSQL event ids (migration 10)", () => {
  it("numbers ids server-side exactly as incrementUlid does, carries included, and returns the stored ids", async () => {
    const db = await freshPostgresDatabase("petrel_ulid");
    databases.push(db);
    const store = await openPostgresStore({ url: db.url, poolSize: 2 });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const random = seededRandom(812);
      const cases: Array<[string, number]> = [];
      for (let n = 0; n < 300; n++) {
        let id = randomUlid(Date.now() - Math.floor(random() * 1e9));
        // Tails of the highest digit make the addition carry across several characters.
        const zs = Math.floor(random() * 6);
        if (zs > 0) id = id.slice(0, 26 - zs) + "Z".repeat(zs);
        cases.push([id, Math.floor(random() * (n % 3 === 0 ? 70_000 : 40))]);
      }
      const { rows } = await client.query(
        "SELECT petrel_ulid_plus(u.id, u.k) AS sum FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS u(id, k, n) ORDER BY u.n",
        [cases.map((c) => c[0]), cases.map((c) => c[1])],
      );
      cases.forEach(([id, k], i) => {
        let expected = id;
        for (let j = 0; j < k; j++) expected = incrementUlid(expected);
        assert.equal(rows[i].sum, expected, `${id} + ${k}`);
      });
      // The ids the store returns are the ids stored, in order, after every earlier one.
      const account = (await store.getAccount("default"))!;
      const at = Date.now();
      const event = (recipient: string) => ({
        type: "processed" as const,
        messageId: "m1",
        accountId: account.id,
        recipient,
        at,
      });
      const first = await store.recordEvents([event("a@x.test"), event("b@x.test"), event("c@x.test")]);
      const second = await store.recordEvents([event("d@x.test"), event("e@x.test")]);
      const stored = await client.query("SELECT id, recipient FROM events ORDER BY id");
      assert.deepEqual(
        stored.rows.map((r) => [r.id, r.recipient]),
        [...first, ...second].map((id, i) => [id, `${"abcde"[i]}@x.test`]),
      );
    } finally {
      await client.end();
      await store.close();
    }
  });
});

describe("PostgreSQL accept statement (named, padded batches)", () => {
  it("stores every content of batches of 1 to 9 messages, none padded in, on one connection", async () => {
    const db = await freshPostgresDatabase("petrel_batches");
    databases.push(db);
    // One connection: every batch size reuses (or first prepares) its named form there.
    const store = await openPostgresStore({ url: db.url, poolSize: 1 });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const account = (await store.getAccount("default"))!;
      const ids: string[] = [];
      for (const size of [1, 3, 4, 5, 9, 3, 2]) {
        const batch = Array.from({ length: size }, (_, i) => {
          const id = `b${ids.length + i}`;
          return {
            ...message(id, account.id, [`r${i}@x.test`]),
            content: Buffer.from(`Subject: ${id}\r\n\r\n${"x".repeat(i * 700)}\r\n`),
          };
        });
        await store.enqueueMessages(batch);
        ids.push(...batch.map((m) => m.id));
      }
      for (const [n, id] of ids.entries()) {
        const content = await store.getMessageContent(id);
        assert.match(
          content?.toString() ?? "",
          new RegExp(`^Subject: ${id}\\r\\n`),
          `content of message ${n}`,
        );
      }
      const counted = await client.query(
        "SELECT (SELECT count(*) FROM message_contents)::int AS contents, (SELECT count(*) FROM messages)::int AS messages",
      );
      assert.deepEqual(counted.rows[0], { contents: ids.length, messages: ids.length });
    } finally {
      await client.end();
      await store.close();
    }
  });
});

/**
 * Cluster-wide connection caps in process (issue 8 item 4): three delivery engines, each with
 * its own PostgreSQL store (pools, listener) on one fresh database — three nodes but for the
 * process — deliver to one real test MX, which counts the connections open at once. Without the
 * shared slots each engine would open its own 4 (12 at once); with them the three together stay
 * at the cap, and every slot is given back when they stop. The multi-process tests with HAProxy
 * and a killed node are in cluster-limits-nodes.test.ts. Also here: periodic jobs take one turn
 * per interval across nodes, and the shared AUTH throttle still counts locally when the store
 * cannot be reached.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import pino from "pino";
import { jobTurns } from "../src/app/job-turns.js";
import { SharedAuthThrottle } from "../src/app/shared-auth-throttle.js";
import { deliverySchema } from "../src/config/delivery-schema.js";
import { type DeliveryEngine, startDelivery } from "../src/delivery/engine.js";
import { newQueueId } from "../src/queue/spool.js";
import { openPostgresStore, type PostgresStore } from "../src/store/postgres/postgres-store.js";
import { startDnsServer } from "./support/dns-server.js";
import { tempDataDir } from "./support/petrel-process.js";
import { type FreshDatabase, freshPostgresDatabase } from "./support/postgres.js";
import { startTestMx } from "./support/test-mx.js";
import { waitFor } from "./support/wait.js";

const databases: FreshDatabase[] = [];
after(async () => {
  for (const db of databases) await db.drop();
});

const CAP = 4;

describe("cluster-wide connection caps (three engines, one database)", () => {
  it("never has more than the destination's cap open at the receiver, over all nodes together", async () => {
    const db = await freshPostgresDatabase("petrel_caps");
    databases.push(db);
    const mx = await startTestMx({ slowMs: 60 });
    // Three recipient domains on one MX host: one destination ("mx:mx.shared.test") for all.
    const zone = {
      "mx.shared.test": { A: ["127.0.0.2"] },
      ...Object.fromEntries(
        ["a.test", "b.test", "c.test"].map((d) => [
          d,
          { MX: [{ preference: 10, exchange: "mx.shared.test" }] },
        ]),
      ),
    };
    const dns = await startDnsServer(zone);
    const stores: PostgresStore[] = [];
    const engines: DeliveryEngine[] = [];
    try {
      for (let n = 0; n < 3; n++) stores.push(await openPostgresStore({ url: db.url, poolSize: 4 }));
      const config = deliverySchema.parse({
        port: mx.port,
        maxConnectionsPerDestination: CAP,
        // Short connections: many slots taken and given back during the run.
        maxMessagesPerConnection: 2,
        idleTimeoutMs: 50,
        pollIntervalMs: 10,
        slotRetryMs: 20,
        // Few recipients in memory per node, so that every node claims some of the work.
        maxInFlight: 8,
        retryJitter: 0,
        connectTimeoutMs: 5000,
        greetingTimeoutMs: 5000,
      });
      for (const [n, store] of stores.entries()) {
        engines.push(
          await startDelivery({
            config: {
              delivery: config,
              dns: { servers: [dns.server], timeoutMs: 5000, tries: 2 },
              hostname: `node${n}.test`,
              dataDir: tempDataDir("petrel-caps-"),
            },
            store,
            logger: pino({ level: "silent" }),
          }),
        );
      }
      const account = (await stores[0]!.getAccount("default"))!;
      const now = Date.now();
      const total = 90;
      const batch = Array.from({ length: total }, (_, i) => {
        const id = newQueueId();
        return {
          id,
          accountId: account.id,
          apiKeyId: null,
          mailFrom: "app@sender.test",
          recipients: [`slow+${i}@${["a", "b", "c"][i % 3]}.test`],
          content: Buffer.from(`Subject: ${id}\r\n\r\nbody ${i}\r\n`),
          clientIp: "127.0.0.1",
          receivedAt: now,
          expiresAt: now + 3600_000,
        };
      });
      await stores[0]!.enqueueMessages(batch);
      for (const e of engines) e.worker.poke();
      await mx.waitForMessages(total, 60_000);
      assert.ok(
        mx.stats.peakConcurrent <= CAP,
        `peak ${mx.stats.peakConcurrent} connections at the MX, cap ${CAP}`,
      );
      assert.ok(mx.stats.peakConcurrent >= 2, `the cap was used (peak ${mx.stats.peakConcurrent})`);
      const slotStats = engines.map((e) => e.slots!.stats);
      assert.ok(
        slotStats.filter((s) => s.acquired > 0).length >= 2,
        `more than one node delivered: ${JSON.stringify(slotStats)}`,
      );
      assert.equal(new Set(mx.messages.map((m) => m.to[0])).size, total, "every message arrived once");
      await waitFor(async () => (await stores[0]!.listSlots(Date.now())).length === 0, {
        what: "every slot given back once the connections closed",
        timeoutMs: 10_000,
      });
    } finally {
      for (const e of engines) await e.stop(1000);
      for (const s of stores) await s.close();
      await dns.close();
      await mx.close();
    }
  });
});

describe("a node without a slot gives its claimed mail back", () => {
  it("returns jobs that waited for a slot held elsewhere, uncounted, and claims them again later", async () => {
    const db = await freshPostgresDatabase("petrel_giveback");
    databases.push(db);
    const mx = await startTestMx();
    const dns = await startDnsServer({
      "mx.shared.test": { A: ["127.0.0.2"] },
      "a.test": { MX: [{ preference: 10, exchange: "mx.shared.test" }] },
    });
    const store = await openPostgresStore({ url: db.url, poolSize: 4 });
    let engine: DeliveryEngine | undefined;
    try {
      // Another node holds the destination's only slot (and keeps it while it has mail).
      const holder = "other-node:1:x";
      const slot = await store.acquireSlot({
        destination: "mx:mx.shared.test",
        cap: 1,
        owner: holder,
        now: Date.now(),
        leaseMs: 600_000,
      });
      assert.equal(slot, 0);
      engine = await startDelivery({
        config: {
          delivery: deliverySchema.parse({
            port: mx.port,
            maxConnectionsPerDestination: 1,
            pollIntervalMs: 10,
            // Given back after 8 tries (800 ms), then skipped by claims for as long.
            slotRetryMs: 100,
            retryJitter: 0,
            connectTimeoutMs: 5000,
          }),
          dns: { servers: [dns.server], timeoutMs: 5000, tries: 2 },
          hostname: "node1.test",
          dataDir: tempDataDir("petrel-giveback-"),
        },
        store,
        logger: pino({ level: "silent" }),
      });
      const account = (await store.getAccount("default"))!;
      const now = Date.now();
      const ids = Array.from({ length: 6 }, () => newQueueId());
      await store.enqueueMessages(
        ids.map((id, i) => ({
          id,
          accountId: account.id,
          apiKeyId: null,
          mailFrom: "app@sender.test",
          recipients: [`r${i}@a.test`],
          content: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
          clientIp: "127.0.0.1",
          receivedAt: now,
          expiresAt: now + 3600_000,
        })),
      );
      engine.worker.poke();
      const dispatcher = engine.dispatcher;
      await waitFor(() => dispatcher.stats.slotGiveBacks >= ids.length, {
        what: "the claimed jobs given back for want of a slot",
        describe: () => JSON.stringify(dispatcher.stats),
      });
      // Not claimed again at once (it would only wait for the same slot): claims skip it.
      assert.deepEqual(
        dispatcher.saturatedDomains(() => Number.POSITIVE_INFINITY),
        ["a.test"],
        "claims skip the destination after giving its jobs back",
      );
      // Given back: nothing attempted, nothing counted, nothing sent.
      for (const id of ids) {
        const detail = (await store.getMessage(id))!;
        for (const r of detail.recipientDetails) assert.equal(r.attempts, 0, `${id} ${r.address}`);
      }
      assert.equal(mx.messages.length, 0);
      await store.releaseSlots(holder);
      await mx.waitForMessages(ids.length, 30_000);
      await waitFor(
        async () => {
          const all = await Promise.all(ids.map((id) => store.getMessage(id)));
          return all.every((m) =>
            m!.recipientDetails.every((r) => r.state === "delivered" && r.attempts === 1),
          );
        },
        { what: "every recipient delivered at its first counted attempt" },
      );
      assert.equal(new Set(mx.messages.map((m) => m.to[0])).size, ids.length, "each message once");
      assert.equal(mx.messages.length, ids.length);
    } finally {
      await engine?.stop(1000);
      await store.close();
      await dns.close();
      await mx.close();
    }
  });
});

describe("periodic jobs and AUTH failures across stores", () => {
  it("runs a periodic job on one node per interval, whichever asks first", async () => {
    const db = await freshPostgresDatabase("petrel_jobs");
    databases.push(db);
    const stores = await Promise.all([0, 1, 2].map(() => openPostgresStore({ url: db.url, poolSize: 2 })));
    try {
      const log = pino({ level: "silent" });
      const turns = stores.map((s, n) => jobTurns(s, `node${n}`, log));
      let runs = 0;
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const job = async () => {
        runs++;
        await gate;
      };
      const first = turns.map((t) => t.run("retention", 3600_000, job));
      // Everyone has asked (the one running waits at the gate) before it ends.
      await waitFor(() => runs === 1, { what: "one node running the job" });
      const second = await Promise.all(turns.map((t) => t.run("retention", 3600_000, job)));
      release();
      const ran = await Promise.all(first);
      assert.equal(ran.filter(Boolean).length, 1, "one of three ran it");
      assert.deepEqual(second, [false, false, false], "nobody while it runs, nor within the interval");
      assert.equal(runs, 1);
      assert.equal(await turns[2]!.run("retention", 0, job), true, "its interval over: the next turn");
    } finally {
      for (const s of stores) await s.close();
    }
  });

  it("still locks an address out after its local failures when the store cannot be reached", async () => {
    const db = await freshPostgresDatabase("petrel_auth");
    databases.push(db);
    const store = await openPostgresStore({ url: db.url, poolSize: 2 });
    const throttle = new SharedAuthThrottle({
      store,
      rule: { maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000 },
      logger: pino({ level: "silent" }),
    });
    assert.equal(await throttle.recordFailure("192.0.2.1"), false);
    await store.close(); // every query fails from here on
    assert.equal(await throttle.recordFailure("192.0.2.1"), false);
    assert.equal(await throttle.recordFailure("192.0.2.1"), true, "the third failure locks, counted here");
    assert.equal(throttle.isLocked("192.0.2.1"), true);
    assert.equal(throttle.isLocked("192.0.2.2"), false);
  });
});

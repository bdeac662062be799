/**
 * Issue 8 item 4 with real `petrel serve` processes on one PostgreSQL database
 * (test/support/cluster.ts): the per-destination connection cap holds across three nodes, counted
 * at the receiving test MX, also when one node is SIGKILLed mid-delivery (its slots free within
 * delivery.slotLeaseMs); a webhook endpoint is served by one node at a time, so with three nodes
 * every event arrives exactly once; AUTH failures spread over two nodes lock the address out on
 * both, over SMTP and HTTP.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { describe, it } from "node:test";
import { type Cluster, hasHaproxy, startCluster, waitFor } from "./support/cluster.js";
import { RawSmtpSession } from "./support/raw-smtp.js";
import { startWebhookReceiver } from "./support/webhook-receiver.js";

const CAP = 4;
const SLOT_LEASE_MS = 3000;
/** Not a trusted network: its AUTH attempts count. */
const ATTACKER = "127.0.10.60";

async function withCluster(
  options: Parameters<typeof startCluster>[0],
  fn: (cluster: Cluster) => Promise<void>,
): Promise<void> {
  const cluster = await startCluster(options);
  try {
    const added = await cluster.cli(["senders", "add", "app@sender.test"]);
    assert.equal(added.code, 0, added.stderr);
    await fn(cluster);
  } finally {
    await cluster.close();
  }
}

describe("cluster-wide limits (three petrel serve on one database)", () => {
  it("keeps a destination within its cap over all nodes, also across a node kill, whose slots free within the lease", async (t) => {
    await withCluster(
      {
        nodes: 3,
        haproxy: hasHaproxy(),
        config: {
          delivery: {
            maxConnectionsPerDestination: CAP,
            // Short connections and few recipients per node in memory: every node delivers,
            // and slots are taken and given back all the time.
            maxMessagesPerConnection: 3,
            maxInFlight: 10,
            idleTimeoutMs: 200,
            slotLeaseMs: SLOT_LEASE_MS,
            slotRetryMs: 50,
          },
        },
      },
      async (cluster) => {
        const store = await cluster.store();
        const total = 60;
        // slow@ recipients: the test MX answers RCPT after 300 ms, so connections overlap.
        for (let i = 0; i < total; i += 10) {
          const replies = await Promise.all(
            Array.from({ length: 10 }, (_, k) => cluster.submit(`slow+${i + k}@cluster.test`)),
          );
          for (const r of replies) assert.equal(r.code, 250, r.text);
        }
        // The victim is whichever node is seen holding a slot: a given node may never hold one (a
        // node that waits too long for a slot gives its jobs back to the others, dispatcher.ts).
        let victimIndex = -1;
        await waitFor(
          async () => {
            const owners = (await store.listSlots(Date.now())).map((s) => s.owner);
            victimIndex =
              [0, 1, 2].find((i) => owners.some((o) => o.startsWith(`node${i + 1}.petrel.test:`))) ?? -1;
            return victimIndex >= 0;
          },
          { what: "a node holding a connection slot", timeoutMs: 30_000, intervalMs: 5 },
        );
        const victim = `node${victimIndex + 1}.petrel.test:`;
        t.diagnostic(`killing node ${victimIndex + 1}, which holds a slot`);
        await cluster.kill(victimIndex);
        const killedAt = Date.now();
        await waitFor(
          async () => !(await store.listSlots(Date.now())).some((s) => s.owner.startsWith(victim)),
          { what: "the killed node's slots free", timeoutMs: SLOT_LEASE_MS + 10_000, intervalMs: 20 },
        );
        const freedMs = Date.now() - killedAt;
        t.diagnostic(`killed node's slots free after ${freedMs} ms (slotLeaseMs ${SLOT_LEASE_MS})`);
        assert.ok(freedMs <= SLOT_LEASE_MS + 2000, `slots freed after ${freedMs} ms`);

        // Every message arrives (the dead node's in-flight ones again, after delivery.leaseMs).
        await waitFor(() => new Set(cluster.mx.messages.flatMap((m) => m.to)).size >= total, {
          what: `${total} distinct recipients at the MX`,
          timeoutMs: 60_000,
          describe: () => String(new Set(cluster.mx.messages.flatMap((m) => m.to)).size),
        });
        const peak = cluster.mx.stats.peakConcurrent;
        t.diagnostic(
          `peak ${peak} connections at the MX (cap ${CAP}); ${cluster.mx.stats.connections} in all`,
        );
        assert.ok(peak <= CAP, `peak ${peak} connections at the MX over three nodes, cap ${CAP}`);
        assert.ok(peak >= 2, `the cap was used (peak ${peak})`);
        const senders = new Set(cluster.mx.stats.remoteAddresses);
        assert.ok(senders.size >= 2, `more than one node delivered: ${[...senders].join(", ")}`);
      },
    );
  });

  it("serves each webhook endpoint from one node at a time: every event arrives, none twice", async (t) => {
    const receiver = await startWebhookReceiver();
    try {
      await withCluster(
        {
          nodes: 3,
          // Small batches, sent soon: many POSTs, each a chance for two nodes to send the same one.
          config: { events: { webhooks: { maxBatchEvents: 3, batchWindowMs: 100, pollIntervalMs: 20 } } },
        },
        async (cluster) => {
          const added = await cluster.cli(["webhooks", "add", receiver.url]);
          assert.equal(added.code, 0, added.stderr);
          const store = await cluster.store();
          const total = 20;
          for (let i = 0; i < total; i++) {
            const r = await cluster.submit(`hook${i}@cluster.test`);
            assert.equal(r.code, 250, r.text);
          }
          await cluster.mx.waitForMessages(total, 60_000);
          let expected = 0;
          await waitFor(
            async () => {
              const events = await store.listEvents({ limit: 10_000 });
              expected = events.length;
              // The MX has every message, but the last outcomes may not be committed yet.
              const delivered = events.filter((e) => e.type === "delivered").length;
              return delivered >= total && events.every((e) => receiver.distinct().has(e.id));
            },
            {
              what: "every event at the receiver",
              timeoutMs: 30_000,
              describe: () => `${receiver.distinct().size} of ${expected}`,
            },
          );
          const accepted = receiver.accepted();
          t.diagnostic(`${accepted.length} events in ${receiver.posts.length} POSTs, ${expected} in the log`);
          assert.ok(expected >= 2 * total, `queued and delivered events for ${total} messages`);
          assert.equal(accepted.length, receiver.distinct().size, "no event arrived twice");
          const ids = accepted.map((e) => e.id);
          assert.deepEqual(ids, [...ids].sort(), "in event id order");
        },
      );
    } finally {
      await receiver.close();
    }
  });

  it("locks an address out on every node once its AUTH failures over all nodes reach the limit", async () => {
    await withCluster(
      { nodes: 2, config: { smtp: { allowInsecureAuth: true }, auth: { maxFailures: 4 } } },
      async (cluster) => {
        const [a, b] = cluster.nodes as [Cluster["nodes"][0], Cluster["nodes"][0]];
        const badAuth = async (node: typeof a) => {
          const session = await RawSmtpSession.open({
            host: node.address,
            port: node.submissionPort,
            localAddress: ATTACKER,
          });
          try {
            const token = Buffer.from("\0apikey\0pt_wrong_key").toString("base64");
            return (await session.command(`AUTH PLAIN ${token}`)).code;
          } finally {
            await session.quit().catch(() => {});
          }
        };
        // Two failures on each node: neither reaches 4 alone.
        assert.equal(await badAuth(a), 535);
        assert.equal(await badAuth(a), 535);
        assert.equal(await badAuth(b), 535);
        assert.equal(await badAuth(b), 421, "the fourth failure, on the other node, locks out");
        // Node a hears of it (within a second): refused at connect, and by the HTTP API.
        const refusedAtConnect = async () => {
          try {
            const s = await RawSmtpSession.open({
              host: a.address,
              port: a.submissionPort,
              localAddress: ATTACKER,
            });
            await s.quit().catch(() => {});
            return false;
          } catch (err) {
            return /got 421/.test(String((err as Error).message));
          }
        };
        await waitFor(refusedAtConnect, {
          what: "node a refusing the locked-out address",
          timeoutMs: 10_000,
        });
        assert.equal(await httpStatus(a.http("/v1/domains"), ATTACKER, "pt_wrong_key"), 429);
        assert.equal(await httpStatus(b.http("/v1/domains"), ATTACKER, "pt_wrong_key"), 429);
        // Another address is not affected.
        assert.equal(await httpStatus(a.http("/v1/domains"), "127.0.10.61", "pt_wrong_key"), 401);
      },
    );
  });
});

function httpStatus(url: string, localAddress: string, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress, headers: { authorization: `Bearer ${key}` } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

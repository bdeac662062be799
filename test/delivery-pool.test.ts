/**
 * Connections, counted at the receiving servers: reuse (many messages over one connection,
 * maxMessagesPerConnection), the per-destination and global caps under load, the backoff of a
 * destination that refuses as a whole, and the source-address pool with its EHLO names.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Rig, startRig, statesOf } from "./support/delivery-rig.js";
import { startTestMx, type TestMx, type TestMxOptions } from "./support/test-mx.js";
import { waitFor } from "./support/wait.js";

const zoneFor = (domains: Record<string, string>) =>
  Object.fromEntries(
    Object.entries(domains).flatMap(([domain, ip]) => [
      [domain, { MX: [{ preference: 10, exchange: `mx.${domain}` }] }],
      [`mx.${domain}`, { A: [ip] }],
    ]),
  );

async function scenario(
  mxOptions: TestMxOptions,
  domains: Record<string, string>,
  delivery: Record<string, unknown>,
  fn: (rig: Rig, mx: TestMx) => Promise<void>,
): Promise<void> {
  const mx = await startTestMx(mxOptions);
  const rig = await startRig(zoneFor(domains), { port: mx.port, ...delivery });
  try {
    await fn(rig, mx);
  } finally {
    await rig.close();
    await mx.close();
  }
}

/**
 * `count` messages in one store transaction: the worker claims them together, so the load on the
 * dispatcher is the same however fast or slow this machine enqueues.
 */
function enqueueMany(rig: Rig, count: number, to: (n: number) => string): Promise<string[]> {
  return rig.enqueueBatch(Array.from({ length: count }, (_, n) => [to(n)]));
}

describe("delivery: connection reuse and limits", () => {
  it("sends many messages over one connection, and opens a new one after maxMessagesPerConnection", async () => {
    await scenario(
      { address: "127.0.0.2" },
      { "reuse.test": "127.0.0.2" },
      // A long idle timeout: a stalled test process cannot make a connection idle out early
      // (rig.close() closes idle connections at once).
      { maxConnectionsPerDestination: 1, maxMessagesPerConnection: 10, idleTimeoutMs: 30_000 },
      async (rig, mx) => {
        const ids = await enqueueMany(rig, 30, (n) => `user${n}@reuse.test`);
        for (const id of ids) await rig.settled(id);
        assert.equal(mx.messages.length, 30);
        assert.equal(mx.stats.connections, 3, "30 messages, 10 per connection");
        assert.deepEqual([...mx.stats.perConnection.values()], [10, 10, 10]);
      },
    );
  });

  it("never exceeds the per-destination cap under load", async () => {
    await scenario(
      { address: "127.0.0.2" },
      { "capped.test": "127.0.0.2" },
      { maxConnectionsPerDestination: 3, idleTimeoutMs: 30_000 },
      async (rig, mx) => {
        // Every transaction is held at the MX until three are open at once: the cap is reached
        // for certain (60 jobs wait), and held there while more work waits.
        mx.holdAll = true;
        const ids = await enqueueMany(rig, 60, (n) => `user${n}@capped.test`);
        await mx.waitForHeld(3);
        assert.equal(mx.stats.concurrent, 3);
        mx.holdAll = false;
        mx.release();
        for (const id of ids) await rig.settled(id);
        assert.equal(mx.messages.length, 60);
        assert.equal(mx.stats.peakConcurrent, 3, "the cap is reached and held");
        assert.ok(mx.stats.connections < 60, `connections were reused (${mx.stats.connections})`);
      },
    );
  });

  it("never exceeds the global cap over several destinations, and honours per-route caps", async () => {
    const domains = { "a.test": "127.0.0.2", "b.test": "127.0.0.2", "c.test": "127.0.0.2" };
    await scenario(
      { address: "127.0.0.2" },
      domains,
      {
        maxConnections: 4,
        maxConnectionsPerDestination: 3,
        routes: [{ match: "c.test", transport: "mx", maxConnections: 1 }],
      },
      async (rig, mx) => {
        // Held at the MX until the global cap is reached (7 connections' worth of work waits).
        mx.holdAll = true;
        const ids = await enqueueMany(rig, 60, (n) => `user${n}@${["a", "b", "c"][n % 3]}.test`);
        await mx.waitForHeld(4);
        mx.holdAll = false;
        mx.release();
        for (const id of ids) await rig.settled(id);
        assert.equal(mx.messages.length, 60);
        assert.ok(mx.stats.peakConcurrent <= 4, `peak ${mx.stats.peakConcurrent} ≤ 4`);
        assert.ok(rig.engine.dispatcher.stats.peakConnections <= 4);
      },
    );
  });

  it("backs off a destination that refuses as a whole, instead of trying each message", async () => {
    await scenario(
      { address: "127.0.0.2", refuse: 421 },
      { "down.test": "127.0.0.2" },
      { maxConnectionsPerDestination: 1, destinationFailureThreshold: 3 },
      async (rig, mx) => {
        const ids = await enqueueMany(rig, 20, (n) => `user${n}@down.test`);
        for (const id of ids) await rig.settled(id, ["deferred"]);
        assert.equal(mx.stats.connections, 3, "three refusals, then the destination waits");
        const backoffs = await rig.store.listDestinationBackoffs(rig.clock.now());
        assert.deepEqual(
          backoffs.map((b) => [b.domain, b.failures]),
          [["down.test", 3]],
        );
        const suspended = await rig.store.getMessage(ids.at(-1)!);
        assert.match(
          suspended!.recipientDetails[0]!.lastReply!,
          /^451 4\.4\.1 delivery temporarily suspended: .*421/,
        );
        assert.ok(suspended!.recipientDetails[0]!.nextAttemptAt! >= backoffs[0]!.until);
        // New mail for the destination waits in the store while the backoff lasts. A message to
        // another destination, enqueued in the same transaction, is the sign that the worker has
        // claimed since: it bounced (no such domain) while the suspended one stayed queued.
        const [later, control] = await rig.enqueueBatch([["late@down.test"], ["x@nowhere.test"]]);
        assert.deepEqual(statesOf(await rig.settled(control!)), { "x@nowhere.test": "bounced" });
        assert.deepEqual((await rig.store.getMessage(later!))!.states, { queued: 1 });
        assert.equal(mx.stats.connections, 3);
      },
    );
  });

  it("splits a message's recipients into transactions of maxRecipientsPerTransaction", async () => {
    await scenario(
      { address: "127.0.0.2" },
      { "many.test": "127.0.0.2" },
      { maxRecipientsPerTransaction: 2 },
      async (rig, mx) => {
        const id = await rig.enqueue([
          "a@many.test",
          "b@many.test",
          "c@many.test",
          "d@many.test",
          "e@many.test",
        ]);
        await rig.settled(id);
        assert.deepEqual(
          mx.messages.map((m) => m.to.length),
          [2, 2, 1],
        );
        assert.equal(mx.stats.connections, 1, "over one connection");
      },
    );
  });

  it("gives back the leases of work not started when it stops", async () => {
    await scenario(
      { address: "127.0.0.2" },
      { "stop.test": "127.0.0.2" },
      { maxConnectionsPerDestination: 1 },
      async (rig, mx) => {
        // The first transaction is held at the MX while the other four wait for the connection.
        mx.holdAll = true;
        const ids = await enqueueMany(rig, 5, (n) => `user${n}@stop.test`);
        await mx.waitForHeld(1);
        await waitFor(() => rig.engine.dispatcher.waitingJobs === 4, { what: "four jobs waiting" });
        const stopped = rig.engine.stop(10_000);
        // stop() gives back waiting jobs at once; then the held transaction may finish.
        await waitFor(() => rig.engine.dispatcher.waitingJobs === 0, { what: "waiting jobs released" });
        mx.holdAll = false;
        mx.release();
        await stopped;
        const states = await Promise.all(ids.map(async (id) => (await rig.store.getMessage(id))!.states));
        const first = ids.findIndex((id) => mx.messages.some((m) => m.content.includes(id)));
        assert.deepEqual(states[first], { delivered: 1 }, "the transaction in flight finished");
        assert.equal(mx.messages.length, 1);
        assert.deepEqual(
          states.filter((_, i) => i !== first),
          [{ queued: 1 }, { queued: 1 }, { queued: 1 }, { queued: 1 }],
          "unstarted work is queued again, not leased",
        );
      },
    );
  });

  it("connects from each address of the source pool in turn, with its EHLO name", async () => {
    await scenario(
      { address: "127.0.0.4" },
      { "pool.test": "127.0.0.4" },
      {
        maxMessagesPerConnection: 1,
        maxConnectionsPerDestination: 1,
        sources: [
          { address: "127.0.0.2", ehloName: "out-a.petrel.test" },
          { address: "127.0.0.3", ehloName: "out-b.petrel.test" },
        ],
      },
      async (rig, mx) => {
        const ids = await enqueueMany(rig, 4, (n) => `user${n}@pool.test`);
        for (const id of ids) await rig.settled(id);
        const seen = mx.messages.map((m) => `${m.remoteAddress} ${m.heloName}`).sort();
        assert.deepEqual(seen, [
          "127.0.0.2 out-a.petrel.test",
          "127.0.0.2 out-a.petrel.test",
          "127.0.0.3 out-b.petrel.test",
          "127.0.0.3 out-b.petrel.test",
        ]);
        const attempts = await rig.store.listAttempts(ids[0]!);
        assert.ok(["127.0.0.2", "127.0.0.3"].includes(attempts[0]!.sourceIp!));
      },
    );
  });
});

/**
 * Issue 11, counted at the receiving servers: destinations grouped by MX site (two domains with
 * the same MX hosts share one connection cap), provider rules by MX host suffix (a cap for every
 * domain under it), messages per minute, adaptive throttling on a `[TSS04]` reply (the rate at the
 * receiver drops, then recovers after clean deliveries, with `throttled` records), and a 5xx
 * greeting from every MX bouncing with that greeting. Plus the pure parts: site keys, provider
 * matching and the throttle steps.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_PROVIDERS } from "../src/config/delivery-schema.js";
import { compileSites } from "../src/delivery/providers.js";
import {
  lower,
  RateBucket,
  recover,
  type ThrottleSettings,
  type ThrottleState,
} from "../src/delivery/throttle.js";
import { type Rig, startRig } from "./support/delivery-rig.js";
import { petrelOk } from "./support/petrel-process.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";

async function withRig(
  zone: Parameters<typeof startRig>[0],
  mx: TestMx,
  delivery: Record<string, unknown>,
  fn: (rig: Rig) => Promise<void>,
): Promise<void> {
  const rig = await startRig(zone, { port: mx.port, defaultProviders: false, ...delivery });
  try {
    await fn(rig);
  } finally {
    await rig.close();
    await mx.close();
  }
}

/** In one store transaction: the demand on the caps does not depend on how fast this host enqueues. */
function enqueueMany(rig: Rig, count: number, to: (n: number) => string): Promise<string[]> {
  return rig.enqueueBatch(Array.from({ length: count }, (_, n) => [to(n)]));
}

/** Messages per second at the receiver over messages [from, to) of `times`. */
function rate(times: readonly number[], from: number, to: number): number {
  const span = (times[to - 1]! - times[from]!) / 1000;
  return (to - 1 - from) / Math.max(span, 0.001);
}

/** Resolves when `predicate` holds for a log line, or fails after the deadline. */
async function logLine(rig: Rig, predicate: (l: Record<string, unknown>) => boolean, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = rig.logs.find(predicate);
    if (line) return line;
    if (Date.now() > deadline) assert.fail("no such log line before the deadline");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("delivery shaping: destinations by MX site and provider", () => {
  it("holds the connection cap across two domains with the same MX hosts", async () => {
    const mx = await startTestMx({ address: "127.0.0.2", slowMs: 40 });
    const shared = [
      { preference: 10, exchange: "mx1.shared.test" },
      { preference: 10, exchange: "mx2.shared.test" },
    ];
    const zone = {
      "one.test": { MX: shared },
      "two.test": { MX: [...shared].reverse() },
      "mx1.shared.test": { A: ["127.0.0.2"] },
      "mx2.shared.test": { A: ["127.0.0.2"] },
    };
    await withRig(zone, mx, { maxConnectionsPerDestination: 2 }, async (rig) => {
      const ids = [
        ...(await enqueueMany(rig, 25, (n) => `slow+${n}@one.test`)),
        ...(await enqueueMany(rig, 25, (n) => `slow+${n}@two.test`)),
      ];
      for (const id of ids) await rig.settled(id);
      assert.equal(mx.messages.length, 50);
      assert.equal(mx.stats.peakConcurrent, 2, "one cap of 2 for both domains, reached and held");
      const domainsPerConnection = new Map<string, Set<string>>();
      for (const m of mx.messages) {
        const set = domainsPerConnection.get(m.connection) ?? new Set();
        set.add(m.to[0]!.split("@")[1]!);
        domainsPerConnection.set(m.connection, set);
      }
      assert.ok(
        [...domainsPerConnection.values()].some((s) => s.size === 2),
        "a connection is reused across the two domains",
      );
    });
  });

  it("caps every domain whose MX hosts match a provider rule, whatever their MX sets", async () => {
    const mx = await startTestMx({ address: "127.0.0.2", slowMs: 40 });
    const zone = Object.fromEntries(
      ["c", "d", "e"].flatMap((x) => [
        [`${x}.test`, { MX: [{ preference: 5, exchange: `mx-${x}.eu.bigmail.test` }] }],
        [`mx-${x}.eu.bigmail.test`, { A: ["127.0.0.2"] }],
      ]),
    );
    const providers = [{ name: "bigmail", mx: ["*.bigmail.test"], maxConnections: 2 }];
    await withRig(zone, mx, { maxConnectionsPerDestination: 10, providers }, async (rig) => {
      const ids: string[] = [];
      for (const x of ["c", "d", "e"])
        ids.push(...(await enqueueMany(rig, 15, (n) => `slow+${n}@${x}.test`)));
      for (const id of ids) await rig.settled(id);
      assert.equal(mx.messages.length, 45);
      assert.equal(mx.stats.peakConcurrent, 2, "the provider's cap of 2 for its three domains");
    });
  });

  it("spreads a provider's messages per minute at the receiver", async () => {
    const mx = await startTestMx({ address: "127.0.0.2" });
    const zone = {
      "f.test": { MX: [{ preference: 5, exchange: "in.ratemail.test" }] },
      "in.ratemail.test": { A: ["127.0.0.2"] },
    };
    const providers = [{ name: "ratemail", mx: ["in.ratemail.test"], maxMessagesPerMinute: 600 }];
    await withRig(zone, mx, { providers }, async (rig) => {
      const start = Date.now();
      const ids = await enqueueMany(rig, 30, (n) => `user${n}@f.test`);
      for (const id of ids) await rig.settled(id);
      const times = mx.messages.map((m) => m.at).sort((a, b) => a - b);
      // 600/min = 10/s with at most one second's worth (10) at once: the (i+1)-th message cannot
      // leave before 10 tokens at the start and i-9 more at one per 100 ms, so it cannot arrive
      // before start + (i-9)·100 ms, however busy the host (a slow host only delays arrivals; it
      // can bunch them, so a bound on windows of arrivals would misread latency as a burst).
      for (let i = 10; i < times.length; i++) {
        const earliest = start + (i - 9) * 100 - 20;
        assert.ok(
          times[i]! >= earliest,
          `message ${i + 1} arrived ${earliest - times[i]!} ms too early for 10/s`,
        );
      }
      assert.ok(
        times[29]! - start >= 1980,
        `30 messages at 10/s after a burst of 10 took ${times[29]! - start} ms`,
      );
    });
  });

  it("bounces with the greeting's reply when every MX answers the greeting with 554", async () => {
    const mx1 = await startTestMx({ address: "127.0.0.2", refuse: 554 });
    const mx2 = await startTestMx({ address: "127.0.0.3", refuse: 554 });
    const zone = {
      "refused.test": {
        MX: [
          { preference: 10, exchange: "mx1.refused.test" },
          { preference: 20, exchange: "mx2.refused.test" },
        ],
      },
      "mx1.refused.test": { A: ["127.0.0.2"] },
      "mx2.refused.test": { A: ["127.0.0.3"] },
    };
    try {
      await withRig(zone, mx1, { mxPorts: { "127.0.0.2": mx1.port, "127.0.0.3": mx2.port } }, async (rig) => {
        const id = await rig.enqueue(["ann@refused.test"]);
        const detail = await rig.settled(id);
        const r = detail.recipientDetails[0]!;
        assert.equal(r.state, "bounced");
        assert.match(r.lastReply ?? "", /^554 .*Too busy.*greeting from mx\d\.refused\.test/);
        assert.equal(mx1.stats.connections + mx2.stats.connections, 2, "both MX hosts were tried once");
      });
    } finally {
      await mx2.close();
    }
  });

  it("defers when only some MX hosts answer the greeting with 5xx", async () => {
    const mx1 = await startTestMx({ address: "127.0.0.2", refuse: 554 });
    const mx2 = await startTestMx({ address: "127.0.0.3", refuse: 421 });
    const zone = {
      "mixed.test": {
        MX: [
          { preference: 10, exchange: "mx1.mixed.test" },
          { preference: 20, exchange: "mx2.mixed.test" },
        ],
      },
      "mx1.mixed.test": { A: ["127.0.0.2"] },
      "mx2.mixed.test": { A: ["127.0.0.3"] },
    };
    try {
      await withRig(zone, mx1, { mxPorts: { "127.0.0.2": mx1.port, "127.0.0.3": mx2.port } }, async (rig) => {
        const id = await rig.enqueue(["ann@mixed.test"]);
        const detail = await rig.settled(id, ["deferred"]);
        assert.match(detail.recipientDetails[0]!.lastReply ?? "", /^421 /);
      });
    } finally {
      await mx2.close();
    }
  });
});

describe("delivery shaping: adaptive throttling", () => {
  it("slows a provider after [TSS04], then recovers step by step after clean deliveries", async () => {
    const mx = await startTestMx({ address: "127.0.0.2" });
    const zone = {
      "g.test": { MX: [{ preference: 1, exchange: "mta5.am0.yahoodns.test" }] },
      "h.test": { MX: [{ preference: 1, exchange: "mta6.am0.yahoodns.test" }] },
      "mta5.am0.yahoodns.test": { A: ["127.0.0.2"] },
      "mta6.am0.yahoodns.test": { A: ["127.0.0.2"] },
    };
    const providers = [
      { name: "yahootest", mx: ["*.yahoodns.test"], maxConnections: 4, maxMessagesPerMinute: 1200 },
    ];
    const throttle = {
      // 1200/min → 120/min (2/s: far below what even a busy host delivers), then ×4 steps back.
      factor: 0.1,
      minMessagesPerMinute: 60,
      holdMs: 0,
      recoverAfter: 10,
      recoverFactor: 4,
      settleMs: 5000,
    };
    await withRig(zone, mx, { providers, throttle }, async (rig) => {
      const throttleLines = () => rig.logs.filter((l) => l.throttle !== undefined);
      // Phase A: unthrottled, 1200/min = 20/s.
      for (const id of await enqueueMany(rig, 40, (n) => `a${n}@g.test`)) await rig.settled(id);
      const before = rate(
        mx.messages.map((m) => m.at),
        20,
        40,
      );
      // The throttle reply, for one domain of the provider.
      const throttled = await rig.enqueue(["throttle@g.test"]);
      await rig.settled(throttled, ["deferred"]);
      const lowered = await logLine(rig, (l) => l.throttle === "lowered");
      assert.match(String(lowered.reply), /\[TSS04\]/);
      assert.match(String(lowered.msg), /from 1200\/min, 4 connections to 120\/min, 1 connection/);
      // Recorded for operators: a row `petrel queue list` shows, and a throttled event.
      const deadline = Date.now() + 10_000;
      while ((await rig.store.listThrottles()).length === 0) {
        assert.ok(Date.now() < deadline, "no throttle row before the deadline");
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const listed = await petrelOk(rig.dataDir, ["queue", "list"]);
      assert.match(listed, /Throttled destinations/);
      assert.match(listed, /yahootest .*g\.test.*120\/min, 1 conn .*1200\/min, 4 conn .*\[TSS04\]/);
      const json = JSON.parse(await petrelOk(rig.dataDir, ["queue", "list", "--domain", "g.test", "--json"]));
      assert.deepEqual(json.throttles[0].limits, { messagesPerMinute: 120, connections: 1 });
      // Phase B: the other domain of the same provider is slowed too (120/min = 2/s), then
      // raised after each 10 clean deliveries (480/min, then back to 1200/min).
      const mark = mx.messages.length;
      for (const id of await enqueueMany(rig, 40, (n) => `b${n}@h.test`)) await rig.settled(id);
      const times = mx.messages.map((m) => m.at);
      const during = rate(times, mark + 2, mark + 10);
      await logLine(rig, (l) => l.throttle === "raised");
      await logLine(rig, (l) => l.throttle === "restored");
      const after = rate(times, mark + 30, mark + 40);
      assert.ok(during < before / 2, `throttled: ${during.toFixed(1)}/s, before: ${before.toFixed(1)}/s`);
      assert.ok(after > during * 1.8, `recovered: ${after.toFixed(1)}/s, throttled: ${during.toFixed(1)}/s`);
      assert.deepEqual(
        throttleLines().map((l) => l.throttle),
        ["lowered", "raised", "restored"],
      );
      assert.equal(rig.engine.dispatcher.throttles().length, 0, "no destination throttled any more");
      await rig.engine.worker.flush();
      const events = (await rig.store.listEvents({ types: ["throttled"] })).filter(
        (e) => e.type === "throttled",
      );
      assert.deepEqual(
        events.map((e) => /: (lowered|raised|back)/.exec(e.reason ?? "")?.[1]),
        ["lowered", "raised", "back"],
      );
      assert.equal(
        events[0]!.messageId,
        throttled,
        "the lowering is an event of the message that got the reply",
      );
      assert.match(events[0]!.reply ?? "", /\[TSS04\]/);
      assert.deepEqual(await rig.store.listThrottles(), [], "the row is gone once restored");
    });
  });
});

describe("delivery shaping: pure parts", () => {
  const settings: ThrottleSettings = {
    factor: 0.5,
    minMessagesPerMinute: 10,
    minConnections: 1,
    holdMs: 1000,
    recoverAfter: 3,
    recoverFactor: 2,
    settleMs: 100,
  };

  it("keys an MX host set by its sorted hosts, and matches the shipped provider rules", () => {
    const sites = compileSites({ providers: [], defaultProviders: true });
    const limits = { maxConnections: 10, maxMessagesPerConnection: 100, maxMessagesPerMinute: 0 };
    assert.equal(
      sites(["MX2.example.test.", "mx1.example.test"], limits).key,
      "mx:mx1.example.test,mx2.example.test",
    );
    const google = sites(["aspmx.l.google.com", "alt1.aspmx.l.google.com"], limits);
    assert.equal(google.key, "provider:google");
    assert.equal(google.limits.maxConnections, 5);
    assert.equal(sites(["example-com.mail.protection.outlook.com"], limits).provider, "office365");
    assert.equal(sites(["mta7.am0.yahoodns.net"], limits).provider, "yahoo");
    assert.equal(sites(["google.com.evil.test"], limits).provider, null, "a suffix, not a substring");
    for (const p of DEFAULT_PROVIDERS) assert.ok(p.mx.length > 0 && p.maxConnections! > 0);
    const off = compileSites({ providers: [], defaultProviders: false });
    assert.equal(off(["aspmx.l.google.com"], limits).provider, null);
  });

  it("lowers at once to the floors, ignores replies while settling, and recovers in steps", () => {
    const base = { messagesPerMinute: 0, connections: 8 };
    let step = lower(undefined, base, 120, 0, settings);
    assert.deepEqual(step.change?.to, { messagesPerMinute: 60, connections: 4 });
    const again = lower(step.state, base, 60, 50, settings);
    assert.equal(again.change, null, "within settleMs");
    step = lower(step.state, base, 60, 200, settings);
    assert.deepEqual(step.change?.to, { messagesPerMinute: 30, connections: 2 });
    step = lower(step.state, base, 0, 400, settings);
    step = lower(step.state, base, 0, 600, settings);
    assert.deepEqual(step.state?.limits, { messagesPerMinute: 10, connections: 1 }, "the floors");
    assert.equal(lower(step.state, base, 0, 800, settings).change, null, "no change below the floors");
    let state: ThrottleState | undefined = step.state;
    for (let n = 0; n < 3; n++) state = recover(state, base, 900, settings).state;
    assert.deepEqual(state?.limits, { messagesPerMinute: 10, connections: 1 }, "held for holdMs");
    const steps: string[] = [];
    for (let n = 0; n < 40 && state; n++) {
      const r = recover(state, base, 2000 + n, settings);
      if (r.change)
        steps.push(`${r.change.kind} ${r.change.to.messagesPerMinute}/${r.change.to.connections}`);
      state = r.state;
    }
    assert.deepEqual(steps, ["raised 20/2", "raised 40/4", "raised 80/8", "restored 0/8"]);
  });

  it("gives a token bucket one second's worth at once", () => {
    const bucket = new RateBucket(120, 0);
    assert.equal(bucket.take(0), 0);
    assert.equal(bucket.take(0), 0);
    assert.equal(bucket.take(0), 500, "2/s: the next one in 500 ms");
    assert.equal(bucket.take(500), 0);
    bucket.setRate(0, 500);
    assert.equal(bucket.take(500), 0, "no limit");
  });
});

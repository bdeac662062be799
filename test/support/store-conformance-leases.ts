/**
 * Store conformance, issue 8 item 4 part: cluster-wide limits. Connection slots per destination
 * (never two owners on one slot, the cap counted over every owner, a dead owner's slots free at
 * expiry and not before, renewal only of what the owner still holds), named leases (webhook
 * endpoints), periodic jobs (once per interval across owners) and AUTH failures counted per address
 * with the lockout they cause. Times are the callers' (no waiting on a real clock).
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { Store } from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

const T = 5_000_000;
const DEST = "provider:google";

export function leaseConformance(withStore: WithStore): void {
  it(
    "gives each slot below the cap to one owner at a time, across owners asking at once",
    withStore(async (store) => {
      const ask = (owner: string, now = T) =>
        store.acquireSlot({ destination: DEST, cap: 4, owner, now, leaseMs: 1000 });
      const got = await Promise.all(["a", "b", "a", "c", "b", "c"].map((o, i) => ask(`${o}:${i}`)));
      const slots = got.filter((s): s is number => s !== null);
      assert.deepEqual(
        [...slots].sort(),
        [0, 1, 2, 3],
        "four of six askers got a slot, each a different one",
      );
      assert.equal(got.filter((s) => s === null).length, 2);
      assert.equal((await store.listSlots(T)).length, 4);
      // Another destination has slots of its own.
      assert.equal(
        await store.acquireSlot({ destination: "mx:other", cap: 1, owner: "a:0", now: T, leaseMs: 1000 }),
        0,
      );
      // A lower cap (a throttled node) only looks at the lowest slots: all taken.
      assert.equal(
        await store.acquireSlot({ destination: DEST, cap: 2, owner: "d", now: T, leaseMs: 1000 }),
        null,
      );
      // A given-back slot is free at once, and the lowest free one is taken.
      const holder = (await store.listSlots(T)).find((s) => s.destination === DEST && s.slot === 1)!;
      assert.equal(await store.releaseSlots(holder.owner, [{ destination: DEST, slot: 1 }]), 1);
      assert.equal(await store.releaseSlots("not-the-owner", [{ destination: DEST, slot: 2 }]), 0);
      assert.equal(await ask("e"), 1);
      assert.equal(await ask("f"), null);
      // The cap raised: the new slots exist at once.
      assert.equal(
        await store.acquireSlot({ destination: DEST, cap: 5, owner: "g", now: T, leaseMs: 1000 }),
        4,
      );
    }),
  );

  it(
    "frees a dead owner's slots when their lease expires, not before, and renews only what an owner still holds",
    withStore(async (store) => {
      const req = (owner: string, now: number, leaseMs = 1000) =>
        store.acquireSlot({ destination: DEST, cap: 2, owner, now, leaseMs });
      assert.equal(await req("dead", T), 0);
      assert.equal(await req("live", T), 1);
      assert.equal(await req("other", T + 999), null, "both held until T + 1000");
      // The live owner renews; the dead one does not.
      assert.deepEqual(await store.renewSlots("live", [{ destination: DEST, slot: 1 }], T + 5000), [
        { destination: DEST, slot: 1 },
      ]);
      assert.equal(await req("other", T + 1000), 0, "the dead owner's slot is free at its expiry");
      assert.equal(await req("third", T + 1000), null, "the renewed slot is still held");
      // The dead owner wakes up: its slot is someone else's now, renewing gets nothing back.
      assert.deepEqual(await store.renewSlots("dead", [{ destination: DEST, slot: 0 }], T + 9000), []);
      const held = await store.listSlots(T + 1001);
      assert.deepEqual(
        held.map((s) => [s.slot, s.owner, s.expiresAt]),
        [
          [0, "other", T + 2000],
          [1, "live", T + 5000],
        ],
      );
      assert.equal(await store.releaseSlots("live"), 1, "all of an owner's slots given back");
      assert.deepEqual(
        (await store.listSlots(T + 1001)).map((s) => s.owner),
        ["other"],
      );
      // Pruning forgets rows free since before the bound (the free slot 1, released), not held ones.
      assert.equal(await store.pruneSlots(T + 1), 1);
      assert.deepEqual(
        (await store.listSlots(T + 1001)).map((s) => s.slot),
        [0],
      );
      assert.equal(await req("again", T + 1001), 1, "a pruned slot is created again when needed");
    }),
  );

  it(
    "holds a named lease for one owner until it expires or is given back",
    withStore(async (store) => {
      assert.equal(await store.takeLease("webhook:1", "a", T, 1000), true);
      assert.equal(await store.takeLease("webhook:1", "b", T + 500, 1000), false, "held by a");
      assert.equal(await store.takeLease("webhook:1", "a", T + 900, 1000), true, "a renews");
      assert.equal(await store.takeLease("webhook:1", "b", T + 1500, 1000), false, "renewed to T + 1900");
      assert.equal(await store.takeLease("webhook:2", "b", T + 1500, 1000), true, "another lease");
      assert.equal(await store.takeLease("webhook:1", "b", T + 1900, 1000), true, "expired: b takes it");
      assert.equal(await store.releaseLease("webhook:1", "a"), false, "a no longer holds it");
      assert.equal(await store.releaseLease("webhook:1", "b"), true);
      assert.equal(await store.takeLease("webhook:1", "a", T + 2000, 1000), true, "free at once");
    }),
  );

  it(
    "runs a periodic job once per interval across owners, and again after a dead runner's lease",
    withStore(async (store) => {
      const every = 60_000;
      assert.equal(await store.claimJob("job:retention", "a", T, 10_000, every), true);
      assert.equal(await store.claimJob("job:retention", "b", T + 1, 10_000, every), false, "running on a");
      assert.equal(await store.releaseLease("job:retention", "a"), true);
      assert.equal(await store.claimJob("job:retention", "b", T + 2, 10_000, every), false, "ran just now");
      assert.equal(await store.claimJob("job:other", "b", T + 2, 10_000, every), true, "jobs are apart");
      assert.equal(
        await store.claimJob("job:retention", "b", T + every, 10_000, every),
        true,
        "its turn again",
      );
      // b dies while running: nobody runs it until the interval has passed (and b's lease expired).
      assert.equal(await store.claimJob("job:retention", "a", T + every + 20_000, 10_000, every), false);
      assert.equal(await store.claimJob("job:retention", "a", T + 2 * every, 10_000, every), true);
      assert.equal(await store.claimJob("job:retention", "b", T + 2 * every + 9999, 10_000, every), false);
    }),
  );

  it(
    "counts AUTH failures per address in a window, locks at the limit, and locks again on a failure right after",
    withStore(async (store) => {
      const rule = { maxFailures: 3, windowMs: 1000, lockoutMs: 5000 };
      const ip = "192.0.2.7";
      assert.equal((await store.recordAuthFailure(ip, T, rule)).lockedUntil, 0);
      assert.equal((await store.recordAuthFailure(ip, T + 100, rule)).failures, 2);
      assert.equal((await store.recordAuthFailure("192.0.2.8", T + 100, rule)).failures, 1, "per address");
      const locked = await store.recordAuthFailure(ip, T + 200, rule);
      assert.deepEqual(locked, { ip, failures: 3, lockedUntil: T + 5200, strikeUntil: T + 6200 });
      assert.deepEqual(
        (await store.authLockouts(T + 300)).map((l) => l.ip),
        [ip],
      );
      assert.deepEqual(await store.authLockouts(T + 5200), [], "over at its end");
      // A failure within one window after the lockout locks again at once, for a full lockout.
      const again = await store.recordAuthFailure(ip, T + 5500, rule);
      assert.equal(again.lockedUntil, T + 10_500);
      assert.equal(again.strikeUntil, T + 11_500);
      // Long after: the count starts over.
      const fresh = await store.recordAuthFailure(ip, T + 20_000, rule);
      assert.equal(fresh.failures, 1);
      assert.ok(fresh.lockedUntil < T + 20_000);
      // Failures spread over more than a window do not add up.
      const other = "198.51.100.1";
      await store.recordAuthFailure(other, T, rule);
      await store.recordAuthFailure(other, T + 600, rule);
      assert.equal((await store.recordAuthFailure(other, T + 1100, rule)).failures, 1, "window restarted");
      assert.equal(
        await store.pruneAuthFailures(T + 12_000),
        2,
        "the addresses with nothing in force since then",
      );
    }),
  );
}

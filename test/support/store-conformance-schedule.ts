/**
 * Store conformance, scheduled send and cancel (issue 9): a message with sendAt is not claimed
 * before it and is after; it keeps sendAt; queue counts show its recipients `scheduled`; a held
 * scheduled message released before its send time waits for it again; cancelMessage drops only
 * recipients not yet attempted (not the deferred, not the leased), each with a `dropped` event
 * whose reason is `cancelled`; the bulk queue actions' selection (listMessageIds: a recipient
 * matching domain and state, one account, paged). Called from storeConformance(). Times are
 * explicit numbers.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { NewMessage, Store } from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

const T0 = 5_000_000;
const SEND_AT = T0 + 3_600_000;

async function enqueue(store: Store, id: string, recipients: string[], sendAt?: number): Promise<void> {
  const account = (await store.getAccount("default"))!;
  const message: NewMessage = {
    id,
    accountId: account.id,
    apiKeyId: null,
    mailFrom: "app@sender.test",
    recipients,
    content: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
    clientIp: "127.0.0.1",
    receivedAt: T0,
    expiresAt: (sendAt ?? T0) + 72 * 3600_000,
    ...(sendAt === undefined ? {} : { sendAt }),
  };
  await store.enqueueMessages([message]);
}

const claim = (store: Store, now: number, owner = "n1:1:a") =>
  store.claimDue({ owner, now, leaseMs: 60_000, limit: 10 });

export function scheduleConformance(withStore: WithStore): void {
  it(
    "does not claim a scheduled message before its send time, and does at it",
    withStore(async (store) => {
      await enqueue(store, "SCH1", ["a@one.test", "b@two.test"], SEND_AT);
      await enqueue(store, "NOW1", ["c@one.test"]);
      const message = (await store.getMessage("SCH1"))!;
      assert.equal(message.sendAt, SEND_AT);
      assert.equal(message.expiresAt, SEND_AT + 72 * 3600_000);
      assert.equal((await store.getMessage("NOW1"))!.sendAt, null);
      assert.deepEqual(
        message.recipientDetails.map((r) => [r.state, r.nextAttemptAt]),
        [
          ["queued", SEND_AT],
          ["queued", SEND_AT],
        ],
      );
      const counts = await store.queueCounts({ now: T0 });
      assert.deepEqual(counts.byState, { scheduled: 2, queued: 1 });
      assert.deepEqual((await store.queueCounts({ now: T0, domain: "two.test" })).byState, { scheduled: 1 });
      // Per destination too: one.test has one scheduled and one queued, two.test one scheduled.
      const byDomain = Object.fromEntries(counts.byDestination.map((d) => [d.domain, d.states]));
      assert.deepEqual(byDomain, { "one.test": { scheduled: 1, queued: 1 }, "two.test": { scheduled: 1 } });
      // The filters the shown states `scheduled` and `queued` become (services/queue.ts stateFilter).
      const ids = (list: ReadonlyArray<{ id: string }>) => list.map((m) => m.id).sort();
      const accountId = message.accountId;
      const scheduledOnly = { state: "queued" as const, scheduledAt: T0 };
      const queuedOnly = { state: "queued" as const, unscheduledAt: T0 };
      assert.deepEqual(ids(await store.searchMessages({ accountId, ...scheduledOnly, limit: 10 })), ["SCH1"]);
      assert.deepEqual(ids(await store.searchMessages({ accountId, ...queuedOnly, limit: 10 })), ["NOW1"]);
      assert.deepEqual(ids(await store.listMessages({ ...scheduledOnly })), ["SCH1"]);
      assert.deepEqual(ids(await store.listMessages({ ...queuedOnly })), ["NOW1"]);
      // Once the send time has passed they are plain queued recipients again.
      assert.deepEqual((await store.queueCounts({ now: SEND_AT })).byState, { queued: 3 });

      assert.deepEqual(
        (await claim(store, SEND_AT - 1)).map((r) => r.address),
        ["c@one.test"],
      );
      const due = await claim(store, SEND_AT, "n1:1:b");
      assert.deepEqual(due.map((r) => r.address).sort(), ["a@one.test", "b@two.test"]);
      assert.equal(due[0]!.expiresAt, SEND_AT + 72 * 3600_000);
      const search = await store.searchMessages({ accountId: message.accountId, limit: 10 });
      assert.equal(search.find((m) => m.id === "SCH1")?.sendAt, SEND_AT);
    }),
  );

  it(
    "retry of everything leaves a scheduled message to its send time; a retry of it sends it now",
    withStore(async (store) => {
      await enqueue(store, "SCH3", ["a@one.test"], SEND_AT);
      await enqueue(store, "LATE", ["b@two.test"]);
      // LATE deferred an hour: "retry all" makes it due, not SCH3.
      const [late] = await claim(store, T0);
      await store.recordOutcomes([
        {
          recipientId: late!.id,
          owner: "n1:1:a",
          state: "deferred",
          nextAttemptAt: T0 + 3_600_000,
          attempt: {
            at: T0,
            durationMs: 1,
            mxHost: null,
            ip: null,
            port: null,
            sourceIp: null,
            tls: null,
            reply: "451 4.4.1 later",
          },
        },
      ]);
      assert.equal(await store.retryNow({ all: true }, T0 + 10), 1);
      assert.deepEqual(
        (await claim(store, T0 + 20, "n1:1:b")).map((r) => r.address),
        ["b@two.test"],
      );
      assert.equal(await store.retryNow({ messageId: "SCH3" }, T0 + 30), 1);
      assert.deepEqual(
        (await claim(store, T0 + 40, "n1:1:c")).map((r) => r.address),
        ["a@one.test"],
      );
    }),
  );

  it(
    "releases a held scheduled message to wait for its send time, not to go at once",
    withStore(async (store) => {
      await enqueue(store, "SCH2", ["a@one.test"], SEND_AT);
      assert.equal(await store.holdMessage("SCH2", T0 + 10), 1);
      assert.equal(await store.releaseMessage("SCH2", T0 + 20), 1);
      assert.deepEqual(await claim(store, T0 + 30), []);
      assert.equal((await claim(store, SEND_AT)).length, 1);
    }),
  );

  it(
    "cancels only recipients not yet attempted, each with a dropped event (reason cancelled)",
    withStore(async (store) => {
      await enqueue(store, "CAN1", ["a@one.test", "b@two.test", "c@three.test", "d@four.test"]);
      // b is attempted and deferred, c is being attempted (leased), d is held: a and d go.
      const claimed = await store.claimDue({ owner: "n1:1:a", now: T0, leaseMs: 60_000, limit: 10 });
      const byAddress = new Map(claimed.map((r) => [r.address, r.id]));
      await store.recordOutcomes([
        {
          recipientId: byAddress.get("b@two.test")!,
          owner: "n1:1:a",
          state: "deferred",
          nextAttemptAt: T0 + 600_000,
          attempt: {
            at: T0,
            durationMs: 3,
            mxHost: "mx.test",
            ip: "127.0.0.2",
            port: 25,
            sourceIp: null,
            tls: null,
            reply: "451 4.2.1 try later",
          },
        },
      ]);
      await store.giveBack([byAddress.get("a@one.test")!, byAddress.get("d@four.test")!], "n1:1:a", T0);
      // d held: hold applies to queued/deferred recipients (b too), so release b again after.
      await store.holdMessage("CAN1", T0 + 1);
      await store.releaseMessage("CAN1", T0 + 1);
      await store.holdMessage("CAN1", T0 + 2);

      const before = (await store.listEvents({ messageId: "CAN1", types: ["dropped"] })).length;
      assert.equal(before, 0);
      const cancelled = await store.cancelMessage("CAN1", T0 + 5);
      assert.equal(cancelled, 2, "a (queued) and d (held, never attempted)");
      const states = Object.fromEntries(
        (await store.getMessage("CAN1"))!.recipientDetails.map((r) => [r.address, r.state]),
      );
      assert.deepEqual(states, {
        "a@one.test": "dropped",
        "b@two.test": "held",
        "c@three.test": "delivering",
        "d@four.test": "dropped",
      });
      const dropped = await store.listEvents({ messageId: "CAN1", types: ["dropped"] });
      assert.deepEqual(
        dropped.map((e) => [e.recipient, e.reason, e.timestamp]),
        [
          ["a@one.test", "cancelled", T0 + 5],
          ["d@four.test", "cancelled", T0 + 5],
        ],
      );
      const attempts = await store.listAttempts("CAN1");
      assert.ok(attempts.some((a) => a.recipient === "a@one.test" && a.status === "dropped"));
      // Nothing left to cancel: a second cancel changes nothing and writes no event.
      assert.equal(await store.cancelMessage("CAN1", T0 + 6), 0);
      assert.equal((await store.listEvents({ messageId: "CAN1", types: ["dropped"] })).length, 2);
      // The dropped recipients are never claimed.
      const later = await store.claimDue({
        owner: "n1:1:z",
        now: T0 + 10_000_000,
        leaseMs: 60_000,
        limit: 10,
      });
      assert.ok(
        later.every((r) => r.address === "c@three.test"),
        JSON.stringify(later),
      );
    }),
  );

  it(
    "selects messages by a recipient's domain and state, per account, in id order with paging",
    withStore(async (store) => {
      const other = await store.createAccount("other");
      await enqueue(store, "BULK1", ["a@one.test", "b@two.test"]);
      await enqueue(store, "BULK2", ["c@one.test"]);
      await enqueue(store, "BULK3", ["d@two.test"]);
      await store.enqueueMessages([
        {
          id: "BULK4",
          accountId: other.id,
          apiKeyId: null,
          mailFrom: "x@sender.test",
          recipients: ["e@one.test"],
          content: Buffer.from("Subject: x\r\n\r\nx\r\n"),
          clientIp: "127.0.0.1",
          receivedAt: T0,
          expiresAt: T0 + 3_600_000,
        },
      ]);
      await store.holdMessage("BULK2", T0);
      await store.holdMessage("BULK4", T0);
      const def = (await store.getAccount("default"))!;
      const ids = (filter: Parameters<Store["listMessageIds"]>[0]) => store.listMessageIds(filter);
      assert.deepEqual(await ids({ domain: "one.test", limit: 10 }), ["BULK1", "BULK2", "BULK4"]);
      assert.deepEqual(await ids({ domain: "one.test", accountId: def.id, limit: 10 }), ["BULK1", "BULK2"]);
      assert.deepEqual(await ids({ domain: "one.test", state: "held", accountId: def.id, limit: 10 }), [
        "BULK2",
      ]);
      assert.deepEqual(await ids({ state: "held", limit: 10 }), ["BULK2", "BULK4"]);
      // Domain and state on the same recipient: BULK1's queued recipient at two.test counts, not b's domain with a's state.
      assert.deepEqual(await ids({ domain: "two.test", state: "held", limit: 10 }), []);
      assert.deepEqual(await ids({ domain: "two.test", state: "queued", limit: 10 }), ["BULK1", "BULK3"]);
      assert.deepEqual(await ids({ domain: "two.test", limit: 1 }), ["BULK1"]);
      assert.deepEqual(await ids({ domain: "two.test", limit: 1, after: "BULK1" }), ["BULK3"]);
      assert.deepEqual(await ids({ domain: "none.test", limit: 10 }), []);
      // Bulk retry leaves scheduled messages out.
      await enqueue(store, "BULK5", ["f@one.test"], SEND_AT);
      assert.deepEqual(await ids({ domain: "one.test", state: "queued", accountId: def.id, limit: 10 }), [
        "BULK1",
        "BULK5",
      ]);
      assert.deepEqual(
        await ids({ domain: "one.test", state: "queued", accountId: def.id, unscheduledAt: T0, limit: 10 }),
        ["BULK1"],
      );
    }),
  );
}

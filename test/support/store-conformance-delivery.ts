/**
 * Store conformance, delivery part (issue 3): claims with leases, lease expiry and recovery,
 * outcomes with attempt records, destination backoff and the operator's queue actions. Called
 * from storeConformance() so every backend runs it. Times are explicit numbers (no waiting).
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { NewMessage, RecipientOutcome, Store } from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

const T0 = 1_000_000;

async function enqueue(store: Store, id: string, recipients: string[], receivedAt = T0): Promise<void> {
  const account = (await store.getAccount("default"))!;
  const message: NewMessage = {
    id,
    accountId: account.id,
    apiKeyId: null,
    mailFrom: "app@sender.test",
    recipients,
    content: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
    clientIp: "127.0.0.1",
    receivedAt,
    expiresAt: receivedAt + 72 * 3600_000,
  };
  await store.enqueueMessages([message]);
}

function outcome(
  recipientId: number,
  owner: string,
  state: RecipientOutcome["state"],
  nextAttemptAt: number | null,
  reply: string,
): RecipientOutcome {
  return {
    recipientId,
    owner,
    state,
    nextAttemptAt,
    attempt: {
      at: T0,
      durationMs: 5,
      mxHost: "mx.test",
      ip: "127.0.0.2",
      port: 25,
      sourceIp: null,
      tls: null,
      reply,
    },
  };
}

export function deliveryConformance(withStore: WithStore): void {
  it(
    "claims due recipients once, with a lease, oldest first",
    withStore(async (store) => {
      await enqueue(store, "M1", ["a@one.test", "b@two.test"], T0);
      await enqueue(store, "M2", ["c@one.test"], T0 + 10);
      await enqueue(store, "M3", ["d@one.test"], T0 + 1_000_000);
      const first = await store.claimDue({ owner: "n1:1:a", now: T0 + 100, leaseMs: 60_000, limit: 2 });
      assert.deepEqual(
        first.map((r) => r.address),
        ["a@one.test", "b@two.test"],
      );
      assert.equal(first[0]!.mailFrom, "app@sender.test");
      assert.equal(first[0]!.attempts, 0);
      const second = await store.claimDue({ owner: "n2:1:b", now: T0 + 100, leaseMs: 60_000, limit: 10 });
      assert.deepEqual(
        second.map((r) => r.address),
        ["c@one.test"],
        "leased and not-yet-due recipients are not claimed",
      );
      assert.deepEqual((await store.getMessage("M1"))!.states, { delivering: 2 });
    }),
  );

  it(
    "makes an expired lease due again, and keeps a renewed one",
    withStore(async (store) => {
      await enqueue(store, "M1", ["a@one.test"]);
      await enqueue(store, "M2", ["b@one.test"]);
      const claimed = await store.claimDue({ owner: "n1:1:a", now: T0, leaseMs: 1000, limit: 1 });
      await store.claimDue({ owner: "n1:1:b", now: T0, leaseMs: 1000, limit: 1 });
      assert.equal(await store.renewLeases("n1:1:a", T0 + 5000), 1);
      const later = await store.claimDue({ owner: "n2:1:c", now: T0 + 2000, leaseMs: 1000, limit: 10 });
      assert.deepEqual(
        later.map((r) => r.address),
        ["b@one.test"],
        "only the lease that was not renewed expired",
      );
      assert.equal(claimed[0]!.address, "a@one.test");
    }),
  );

  it(
    "gives back a node's leases by owner prefix",
    withStore(async (store) => {
      await enqueue(store, "M1", ["a@one.test", "b@one.test"]);
      await store.claimDue({ owner: "node-a:10:x", now: T0, leaseMs: 60_000, limit: 1 });
      await store.claimDue({ owner: "node-b:10:y", now: T0, leaseMs: 60_000, limit: 1 });
      assert.equal(await store.releaseLeases("node-a:", T0 + 1), 1);
      const again = await store.claimDue({ owner: "node-a:11:z", now: T0 + 1, leaseMs: 60_000, limit: 10 });
      assert.deepEqual(
        again.map((r) => r.address),
        ["a@one.test"],
      );
    }),
  );

  it(
    "records outcomes with their attempts; a deferral needs the lease, a final outcome does not",
    withStore(async (store) => {
      await enqueue(store, "M1", ["ok@one.test", "no@one.test", "later@one.test", "lost@one.test"]);
      const [ok, no, later, lost] = await store.claimDue({
        owner: "n1:1:a",
        now: T0,
        leaseMs: 1000,
        limit: 10,
      });
      // lost's lease expires and another worker takes it.
      await store.renewLeases("n1:1:a", T0 + 1000);
      await store.recordOutcomes([
        outcome(ok!.id, "n1:1:a", "delivered", null, "250 2.0.0 Ok"),
        outcome(no!.id, "n1:1:a", "bounced", null, "550 5.1.1 No such user"),
        outcome(later!.id, "n1:1:a", "deferred", T0 + 60_000, "451 4.2.1 Busy"),
      ]);
      const stolen = await store.claimDue({ owner: "n2:1:b", now: T0 + 2000, leaseMs: 1_000_000, limit: 10 });
      assert.deepEqual(
        stolen.map((r) => r.id),
        [lost!.id],
      );
      await store.recordOutcomes([outcome(lost!.id, "n1:1:a", "deferred", T0 + 9, "451 late")]);
      const detail = (await store.getMessage("M1"))!;
      const byAddress = new Map(detail.recipientDetails.map((r) => [r.address, r]));
      assert.equal(byAddress.get("ok@one.test")!.state, "delivered");
      assert.equal(byAddress.get("no@one.test")!.state, "bounced");
      assert.equal(byAddress.get("later@one.test")!.state, "deferred");
      assert.equal(byAddress.get("later@one.test")!.nextAttemptAt, T0 + 60_000);
      assert.equal(byAddress.get("later@one.test")!.attempts, 1);
      assert.equal(byAddress.get("later@one.test")!.lastReply, "451 4.2.1 Busy");
      assert.equal(
        byAddress.get("lost@one.test")!.state,
        "delivering",
        "a deferral without the lease is ignored",
      );
      const attempts = await store.listAttempts("M1");
      // Issue 11: the claim whose lease expired unfinished is an attempt of its own (counted when
      // another worker claims it), and the late outcome of that worker is recorded too.
      assert.equal(attempts.length, 5, "every attempt is recorded, even the one that lost its lease");
      assert.deepEqual(
        attempts.filter((a) => a.recipient === "lost@one.test").map((a) => a.reply),
        [
          "451 4.3.0 the delivery attempt did not finish (the delivery worker stopped: crash or hang)",
          "451 late",
        ],
      );
      assert.deepEqual(attempts[0], {
        recipient: "ok@one.test",
        status: "delivered",
        at: T0,
        durationMs: 5,
        mxHost: "mx.test",
        ip: "127.0.0.2",
        port: 25,
        sourceIp: null,
        tls: null,
        reply: "250 2.0.0 Ok",
      });
      // The deferred one is due again at its time, not before.
      assert.equal(
        (await store.claimDue({ owner: "x:1:c", now: T0 + 59_999, leaseMs: 1, limit: 10 })).length,
        0,
      );
      assert.equal(
        (await store.claimDue({ owner: "x:1:c", now: T0 + 60_000, leaseMs: 1, limit: 10 })).length,
        1,
      );
    }),
  );

  it(
    "skips destinations in backoff and domains the caller names, until lifted",
    withStore(async (store) => {
      await enqueue(store, "M1", ["a@down.test", "b@up.test", "c@busy.test"]);
      await store.setDestinationBackoff({
        domain: "down.test",
        until: T0 + 500,
        failures: 3,
        lastError: "421",
      });
      const claimed = await store.claimDue({
        owner: "n:1:a",
        now: T0,
        leaseMs: 1000,
        limit: 10,
        skipDomains: ["busy.test"],
      });
      assert.deepEqual(
        claimed.map((r) => r.domain),
        ["up.test"],
      );
      assert.deepEqual(
        (await store.listDestinationBackoffs(T0)).map((b) => [b.domain, b.failures]),
        [["down.test", 3]],
      );
      const counts = await store.queueCounts();
      assert.equal(counts.byDestination.find((d) => d.domain === "down.test")!.backoffUntil, null);
      assert.equal(
        (await store.claimDue({ owner: "n:1:a", now: T0 + 500, leaseMs: 1000, limit: 10 })).length,
        2,
      );
    }),
  );

  it(
    "holds, releases, retries and drops messages for the operator",
    withStore(async (store) => {
      await enqueue(store, "M1", ["a@one.test", "b@two.test"]);
      await enqueue(store, "M2", ["c@one.test"]);
      assert.equal(await store.holdMessage("M1", T0), 2);
      assert.deepEqual((await store.getMessage("M1"))!.states, { held: 2 });
      const claimed = await store.claimDue({ owner: "n:1:a", now: T0, leaseMs: 1000, limit: 10 });
      assert.deepEqual(
        claimed.map((r) => r.messageId),
        ["M2"],
        "held mail is not claimed",
      );
      await store.recordOutcomes([outcome(claimed[0]!.id, "n:1:a", "deferred", T0 + 3600_000, "451 x")]);
      assert.equal(await store.releaseMessage("M1", T0 + 1), 2);
      assert.deepEqual((await store.getMessage("M1"))!.states, { queued: 2 });
      await store.setDestinationBackoff({
        domain: "one.test",
        until: T0 + 3600_000,
        failures: 3,
        lastError: "x",
      });
      assert.equal(await store.retryNow({ all: true }, T0 + 2), 1, "the deferred recipient is due now");
      assert.equal(
        (await store.listDestinationBackoffs(T0 + 2)).length,
        0,
        "retry lifts destination backoff",
      );
      assert.equal(
        (await store.claimDue({ owner: "n:1:b", now: T0 + 2, leaseMs: 1000, limit: 10 })).length,
        3,
      );
      assert.equal(await store.dropMessage("M2", T0 + 3, "dropped by operator"), 1);
      assert.deepEqual((await store.getMessage("M2"))!.states, { dropped: 1 });
      const attempts = await store.listAttempts("M2");
      assert.equal(attempts.at(-1)!.status, "dropped");
      assert.equal(attempts.at(-1)!.reply, "dropped by operator");
      const counts = await store.queueCounts({ domain: "one.test" });
      assert.deepEqual(counts.byState, { delivering: 1, dropped: 1 });
      assert.deepEqual(
        (await store.listMessages({ domain: "two.test" })).map((m) => m.id),
        ["M1"],
      );
    }),
  );

  it(
    "summarises one account's pending recipients: by state, the oldest message, the destinations",
    withStore(async (store) => {
      const other = await store.createAccount("queue-other");
      await enqueue(store, "M1", ["a@one.test", "b@two.test"], T0);
      await enqueue(store, "M2", ["c@one.test"], T0 + 10);
      await store.enqueueMessages([
        {
          id: "M0",
          accountId: other.id,
          apiKeyId: null,
          mailFrom: "x@other.test",
          recipients: ["z@one.test"],
          content: Buffer.from("Subject: other\r\n\r\nbody\r\n"),
          clientIp: "127.0.0.1",
          receivedAt: T0 - 10,
          expiresAt: T0 + 3600_000,
        },
      ]);
      assert.equal(await store.holdMessage("M2", T0), 1);
      const claimed = await store.claimDue({ owner: "n:1:a", now: T0, leaseMs: 1000, limit: 10 });
      const b = claimed.find((r) => r.address === "b@two.test")!;
      await store.recordOutcomes([outcome(b.id, "n:1:a", "delivered", null, "250 ok")]);
      const account = (await store.getAccount("default"))!;
      const queue = await store.accountQueue(account.id, 100);
      assert.equal(queue.complete, true);
      assert.deepEqual(queue.byState, { delivering: 1, held: 1 });
      assert.deepEqual(queue.oldest, { id: "M1", receivedAt: T0 }, "the other account's M0 is not counted");
      assert.deepEqual(queue.destinations, [{ domain: "one.test", pending: 2 }]);
      assert.deepEqual(await store.accountQueue(other.id, 100), {
        byState: { delivering: 1 },
        oldest: { id: "M0", receivedAt: T0 - 10 },
        destinations: [{ domain: "one.test", pending: 1 }],
        complete: true,
      });
      const capped = await store.accountQueue(account.id, 1);
      assert.equal(capped.complete, false, "two pending recipients, a limit of one");
      assert.equal(
        Object.values(capped.byState).reduce((a, b) => a + b, 0),
        2,
        "limit + 1 read",
      );
      const empty = await store.createAccount("queue-empty");
      assert.deepEqual(await store.accountQueue(empty.id, 100), {
        byState: {},
        oldest: null,
        destinations: [],
        complete: true,
      });
    }),
  );
}

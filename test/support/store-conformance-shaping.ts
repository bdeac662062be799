/**
 * Store conformance, issue 11 part: attempts that never finish (a claim counts before the attempt
 * starts; three unfinished claims hold the recipient with a `held` event; giving a lease back
 * unused does not count), DSNs committed with the outcome that causes them (and not again for a
 * repeated outcome), and throttled destinations with their `throttled` events.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { NewMessage, RecipientOutcome, Store, ThrottleChangeRecord } from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

const T0 = 2_000_000;

function message(
  id: string,
  accountId: number,
  recipients: string[],
  mailFrom = "app@sender.test",
): NewMessage {
  return {
    id,
    accountId,
    apiKeyId: null,
    mailFrom,
    recipients,
    content: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
    clientIp: "127.0.0.1",
    receivedAt: T0,
    expiresAt: T0 + 72 * 3600_000,
  };
}

function bounced(recipientId: number, owner: string): RecipientOutcome {
  return {
    recipientId,
    owner,
    state: "bounced",
    nextAttemptAt: null,
    attempt: {
      at: T0,
      durationMs: 1,
      mxHost: "mx.test",
      ip: "127.0.0.2",
      port: 25,
      sourceIp: null,
      tls: null,
      reply: "550 5.1.1 No such user",
    },
  };
}

export function shapingConformance(withStore: WithStore): void {
  it(
    "counts claims that never finish as attempts and holds the recipient after three, with a held event",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.enqueueMessages([message("P1", account.id, ["poison@one.test"])]);
      for (let n = 0; n < 3; n++) {
        const claimed = await store.claimDue({ owner: `n:${n}:x`, now: T0 + n, leaseMs: 1000, limit: 10 });
        assert.equal(claimed.length, 1, `claim ${n + 1}`);
        assert.equal(claimed[0]!.attempts, n, "the unfinished claims before are counted");
        assert.equal(claimed[0]!.accountId, account.id);
        // The worker dies: its node gives the lease back at restart, without an outcome.
        await store.releaseLeases(`n:${n}:`, T0 + n);
      }
      assert.equal(
        (await store.claimDue({ owner: "n:3:x", now: T0 + 3, leaseMs: 1000, limit: 10 })).length,
        0,
      );
      const detail = (await store.getMessage("P1"))!;
      assert.equal(detail.recipientDetails[0]!.state, "held");
      assert.equal(detail.recipientDetails[0]!.attempts, 3);
      const attempts = await store.listAttempts("P1");
      assert.equal(attempts.length, 3);
      assert.ok(attempts.every((a) => /did not finish/.test(a.reply)));
      const held = (await store.listEvents({ messageId: "P1" })).filter((e) => e.type === "held");
      assert.equal(held.length, 1);
      assert.match(held[0]!.reason ?? "", /worker-crashed/);
      assert.match(held[0]!.reply ?? "", /3 attempts/);
      // Released by the operator: three more tries.
      assert.equal(await store.releaseMessage("P1", T0 + 4), 1);
      assert.equal(
        (await store.claimDue({ owner: "n:4:x", now: T0 + 4, leaseMs: 1000, limit: 10 })).length,
        1,
      );
    }),
  );

  it(
    "does not count a lease given back unused, and an outcome clears the count",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.enqueueMessages([message("G1", account.id, ["a@one.test"])]);
      for (let n = 0; n < 5; n++) {
        const [r] = await store.claimDue({ owner: "g:1:x", now: T0 + n, leaseMs: 1000, limit: 10 });
        assert.equal(r!.attempts, 0);
        assert.equal(await store.giveBack([r!.id], "g:1:x", T0 + n), 1);
      }
      assert.equal(await store.giveBack([12345], "g:1:x", T0), 0, "only leases the owner holds");
      assert.equal((await store.listAttempts("G1")).length, 0);
    }),
  );

  it(
    "queues the DSN in the transaction of the bounce, and not again for a repeated outcome",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.enqueueMessages([message("B1", account.id, ["gone@one.test"])]);
      const [r] = await store.claimDue({ owner: "b:1:x", now: T0, leaseMs: 1000, limit: 10 });
      const dsn = (id: string) => ({
        message: {
          ...message(id, account.id, ["app@sender.test"], ""),
          content: Buffer.from("Subject: DSN\r\n\r\nx\r\n"),
        },
        recipientIds: [r!.id],
      });
      await store.recordOutcomes([bounced(r!.id, "b:1:x")], [dsn("D1")]);
      const d1 = await store.getMessage("D1");
      assert.equal(d1?.mailFrom, "");
      assert.deepEqual(
        d1?.recipientDetails.map((x) => x.address),
        ["app@sender.test"],
      );
      await store.recordOutcomes([bounced(r!.id, "b:1:x")], [dsn("D2")]);
      assert.equal(await store.getMessage("D2"), undefined, "the recipient was already bounced");
    }),
  );

  it(
    "keeps throttled destinations with a throttled event per change, and forgets a node's rows",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.enqueueMessages([message("T1", account.id, ["x@yahoo.test"])]);
      const change = (
        kind: ThrottleChangeRecord["kind"],
        rate: number,
        at: number,
      ): ThrottleChangeRecord => ({
        node: "node-a",
        destination: "provider:yahoo",
        provider: "yahoo",
        domains: ["yahoo.test"],
        kind,
        limits: { messagesPerMinute: rate, connections: 1 },
        configured: { messagesPerMinute: 300, connections: 5 },
        reply: "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
        since: T0,
        messageId: "T1",
        recipient: "x@yahoo.test",
        cause:
          kind === "lowered" ? "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred" : "250 ok",
        at,
        description: `yahoo: ${kind}`,
      });
      await store.recordThrottle(change("lowered", 150, T0));
      await store.recordThrottle(change("raised", 300, T0 + 1));
      const [row] = await store.listThrottles();
      assert.equal(row?.destination, "provider:yahoo");
      assert.deepEqual(row?.limits, { messagesPerMinute: 300, connections: 1 });
      assert.deepEqual(row?.domains, ["yahoo.test"]);
      assert.match(row?.reply ?? "", /TSS04/);
      await store.recordThrottle(change("restored", 300, T0 + 2));
      assert.deepEqual(await store.listThrottles(), []);
      const events = (await store.listEvents({ messageId: "T1" })).filter((e) => e.type === "throttled");
      assert.deepEqual(
        events.map((e) => e.reason),
        ["yahoo: lowered", "yahoo: raised", "yahoo: restored"],
      );
      assert.match(events[0]!.reply ?? "", /TSS04/);
      await store.recordThrottle(change("lowered", 150, T0 + 3));
      assert.equal(await store.clearThrottles("node-b"), 0);
      assert.equal(await store.clearThrottles("node-a"), 1);
    }),
  );
}

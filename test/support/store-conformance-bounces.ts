/**
 * Store conformance, bounces and suppressions (issue 5): the suppression list, node secrets, a
 * hard bounce from delivery suppressing its recipient in the transaction of its event, and late
 * bounces and complaints (recordInboundReport). Called from storeConformance() for every backend.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import type {
  InboundReportRecord,
  InboundReportResult,
  NewMessage,
  RecipientOutcome,
  Store,
} from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

/** One record in a transaction of its own; its result. */
async function one(store: Store, record: InboundReportRecord): Promise<InboundReportResult> {
  const [result] = await store.recordInboundReport([record]);
  assert.ok(result);
  return result;
}

/** A DSN-like message from <> to `to`. */
function notice(id: string, accountId: number, to: string): NewMessage {
  return {
    id,
    accountId,
    apiKeyId: null,
    mailFrom: "",
    recipients: [to],
    content: Buffer.from(`Subject: Undelivered Mail Returned to Sender\r\n\r\n${id}\r\n`),
    clientIp: "127.0.0.1",
    receivedAt: T0 + 6000,
    expiresAt: T0 + 72 * 3600_000,
  };
}

const T0 = 1_000_000;

async function enqueue(
  store: Store,
  id: string,
  recipients: string[],
  accountName = "default",
): Promise<number> {
  const account = (await store.getAccount(accountName)) ?? (await store.createAccount(accountName));
  const message: NewMessage = {
    id,
    accountId: account.id,
    apiKeyId: null,
    mailFrom: "app@sender.test",
    recipients,
    content: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
    clientIp: "127.0.0.1",
    receivedAt: T0,
    expiresAt: T0 + 72 * 3600_000,
  };
  await store.enqueueMessages([message]);
  return account.id;
}

function outcome(
  recipientId: number,
  state: RecipientOutcome["state"],
  reply: string,
  hard: boolean | null,
): RecipientOutcome {
  return {
    recipientId,
    owner: "n1:1:a",
    state,
    nextAttemptAt: null,
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
    bounceClass: hard === null ? null : hard ? "invalid-recipient" : "policy-or-spam",
    bounceHard: hard,
  };
}

export function bounceConformance(withStore: WithStore): void {
  it(
    "keeps a suppression list per account, by lower-cased address, first reason kept",
    withStore(async (store) => {
      const apps = await store.createAccount("apps");
      const def = (await store.getAccount("default"))!;
      const added = await store.addSuppressions([
        { accountId: def.id, address: "Ann@Example.TEST", reason: "manual", detail: "asked us" },
        { accountId: def.id, address: "bob@example.test", reason: "import", createdAt: 42 },
        { accountId: def.id, address: "ann@example.test", reason: "import" },
      ]);
      assert.equal(added, 2, "a second row for the same address is not added");
      const ann = await store.findSuppression(def.id, "ANN@example.test");
      assert.equal(ann?.address, "ann@example.test");
      assert.equal(ann?.reason, "manual");
      assert.equal(ann?.detail, "asked us");
      assert.equal(ann?.eventId, null);
      assert.equal(await store.findSuppression(apps.id, "ann@example.test"), undefined, "per account");
      assert.equal((await store.listSuppressions({ accountId: def.id })).length, 2);
      assert.equal(
        (await store.listSuppressions({ accountId: def.id })).find((s) => s.reason === "import")?.createdAt,
        42,
      );
      assert.equal(await store.removeSuppression(def.id, "Bob@example.test"), true);
      assert.equal(await store.removeSuppression(def.id, "bob@example.test"), false);
      assert.deepEqual(
        (await store.listSuppressions()).map((s) => `${s.accountName}:${s.address}`),
        ["default:ann@example.test"],
      );
    }),
  );

  it(
    "creates a node secret once; every later call gets the same value",
    withStore(async (store) => {
      let calls = 0;
      const make = () => `secret-${++calls}`;
      assert.equal(await store.nodeSecret("verp", make), "secret-1");
      assert.equal(await store.nodeSecret("verp", make), "secret-1");
      assert.equal(calls, 1);
    }),
  );

  it(
    "suppresses a hard bounce from delivery with its bounce event, and not a soft one",
    withStore(async (store) => {
      const accountId = await enqueue(store, "M1", ["gone@one.test", "blocked@one.test"]);
      const [gone, blocked] = await store.claimDue({ owner: "n1:1:a", now: T0, leaseMs: 1000, limit: 10 });
      await store.recordOutcomes([
        outcome(gone!.id, "bounced", "550 5.1.1 no such user", true),
        outcome(blocked!.id, "bounced", "550 5.7.1 blocked using zen.spamhaus.org", false),
      ]);
      const suppression = await store.findSuppression(accountId, "gone@one.test");
      assert.equal(suppression?.reason, "invalid-recipient");
      assert.equal(suppression?.messageId, "M1");
      const bounce = (await store.listEvents({ messageId: "M1", types: ["bounce"] })).find(
        (e) => e.recipient === "gone@one.test",
      );
      assert.equal(suppression?.eventId, bounce?.id);
      assert.equal(bounce?.bounceClass, "invalid-recipient");
      assert.equal(bounce?.bounceHard, true);
      assert.equal(await store.findSuppression(accountId, "blocked@one.test"), undefined);
    }),
  );

  it(
    "drops a queued recipient suppressed after its message was accepted, instead of claiming it",
    withStore(async (store) => {
      const accountId = await enqueue(store, "M1", ["gone@one.test", "ok@one.test"]);
      await store.addSuppressions([{ accountId, address: "GONE@one.test", reason: "manual" }]);
      const claimed = await store.claimDue({ owner: "n1:1:a", now: T0, leaseMs: 1000, limit: 10 });
      assert.deepEqual(
        claimed.map((r) => r.address),
        ["ok@one.test"],
      );
      const states = (await store.getMessage("M1"))!.recipientDetails.map((r) => `${r.address}:${r.state}`);
      assert.deepEqual(states, ["gone@one.test:dropped", "ok@one.test:delivering"]);
      const dropped = await store.listEvents({ messageId: "M1", types: ["dropped"] });
      assert.deepEqual(
        dropped.map((e) => [e.recipient, e.reason]),
        [["gone@one.test", "suppressed"]],
      );
      assert.deepEqual(
        (await store.listAttempts("M1")).map((a) => [a.recipient, a.status]),
        [["gone@one.test", "dropped"]],
      );
    }),
  );

  it(
    "applies a late bounce to a delivered recipient once, with its event and suppression",
    withStore(async (store) => {
      const accountId = await enqueue(store, "M1", ["a@one.test", "b@one.test"]);
      const [a, b] = await store.claimDue({ owner: "n1:1:a", now: T0, leaseMs: 1000, limit: 10 });
      await store.recordOutcomes([outcome(a!.id, "delivered", "250 ok", null)]);
      assert.equal((await store.getBounceTarget("M1", a!.id))?.address, "a@one.test");
      assert.equal(await store.getBounceTarget("M2", a!.id), undefined, "the token's message must match");
      const late = {
        kind: "bounce" as const,
        messageId: "M1",
        recipientId: a!.id,
        at: T0 + 5000,
        reply: "550 5.1.1 The email account that you tried to reach does not exist.",
        enhancedCode: "5.1.1",
        remoteMta: "gmail-smtp-in.l.google.com",
        bounceClass: "invalid-recipient",
        bounceHard: true,
      };
      const first = await one(store, late);
      assert.equal(first.applied, true);
      assert.equal(first.suppressed, true);
      const detail = (await store.getMessage("M1"))!;
      assert.equal(detail.recipientDetails.find((r) => r.address === "a@one.test")?.state, "bounced");
      const events = await store.listEvents({ messageId: "M1", types: ["bounce"] });
      assert.equal(events.length, 1);
      assert.equal(events[0]!.id, first.eventId);
      assert.equal(events[0]!.mxHost, "gmail-smtp-in.l.google.com");
      assert.equal((await store.findSuppression(accountId, "a@one.test"))?.eventId, first.eventId);
      const again = await one(store, late);
      assert.deepEqual([again.applied, again.reason], [false, "recipient is bounced"]);
      // b is still being delivered: a report cannot overtake the delivery in flight.
      const early = await one(store, { ...late, recipientId: b!.id });
      assert.equal(early.applied, false);
      const unknown = await one(store, { ...late, recipientId: 999_999 });
      assert.deepEqual([unknown.applied, unknown.reason], [false, "unknown recipient"]);
      assert.equal((await store.listEvents({ messageId: "M1", types: ["bounce"] })).length, 1);
    }),
  );

  it(
    "records a complaint once as a spamreport and suppresses the address",
    withStore(async (store) => {
      const accountId = await enqueue(store, "M1", ["a@one.test"]);
      const [a] = await store.claimDue({ owner: "n1:1:a", now: T0, leaseMs: 1000, limit: 10 });
      await store.recordOutcomes([outcome(a!.id, "delivered", "250 ok", null)]);
      const report = {
        kind: "spamreport" as const,
        messageId: "M1",
        recipientId: a!.id,
        at: T0,
        feedbackType: "abuse",
        reply: "abuse report from Yahoo!-Mail-Feedback/2.0",
      };
      const first = await one(store, report);
      assert.deepEqual([first.applied, first.suppressed], [true, true]);
      const second = await one(store, report);
      assert.equal(second.applied, false);
      const events = await store.listEvents({ messageId: "M1", types: ["spamreport"] });
      assert.equal(events.length, 1);
      assert.equal(events[0]!.reason, "abuse");
      const suppression = await store.findSuppression(accountId, "a@one.test");
      assert.deepEqual([suppression?.reason, suppression?.eventId], ["spamreport", first.eventId]);
      assert.equal((await store.getMessage("M1"))!.recipientDetails[0]!.state, "delivered");
    }),
  );

  it(
    "queues the DSN to the sender in the report's transaction, only for a bounce that applied",
    withStore(async (store) => {
      const accountId = await enqueue(store, "M1", ["a@one.test", "b@one.test", "c@one.test"]);
      const [a, b, c] = await store.claimDue({ owner: "n1:1:a", now: T0, leaseMs: 1000, limit: 10 });
      await store.recordOutcomes([
        outcome(a!.id, "delivered", "250 ok", null),
        outcome(b!.id, "delivered", "250 ok", null),
      ]);
      const target = await store.getBounceTarget("M1", a!.id);
      assert.deepEqual([target?.mailFrom, target?.receivedAt], ["app@sender.test", T0]);
      const bounce = (recipientId: number): InboundReportRecord => ({
        kind: "bounce",
        messageId: "M1",
        recipientId,
        at: T0 + 5000,
        reply: "550 5.1.1 no such user",
        enhancedCode: "5.1.1",
        remoteMta: null,
        bounceClass: "invalid-recipient",
        bounceHard: false,
      });
      // Two recipients of one message in one report: one DSN about both.
      const results = await store.recordInboundReport(
        [bounce(a!.id), bounce(b!.id)],
        [{ message: notice("DSN1", accountId, "app@sender.test"), recipientIds: [a!.id, b!.id] }],
      );
      assert.deepEqual(
        results.map((r) => r.applied),
        [true, true],
      );
      const dsn = await store.getMessage("DSN1");
      assert.deepEqual([dsn?.mailFrom, dsn?.recipientDetails.map((r) => r.state)], ["", ["queued"]]);
      assert.ok(
        (await store.claimDue({ owner: "n1:1:b", now: T0 + 7000, leaseMs: 1000, limit: 10 })).some(
          (r) => r.messageId === "DSN1",
        ),
        "the DSN is due",
      );
      // The same report again (and one for c, still being delivered): nothing applies, no DSN.
      const again = await store.recordInboundReport(
        [bounce(a!.id), bounce(c!.id)],
        [{ message: notice("DSN2", accountId, "app@sender.test"), recipientIds: [a!.id, c!.id] }],
      );
      assert.deepEqual(
        again.map((r) => r.applied),
        [false, false],
      );
      assert.equal(await store.getMessage("DSN2"), undefined);
      // One transaction: a DSN that cannot be written (its id is taken) undoes the bounce with it.
      await store.recordOutcomes([outcome(c!.id, "delivered", "250 ok", null)]);
      await assert.rejects(
        store.recordInboundReport(
          [bounce(c!.id)],
          [{ message: notice("M1", accountId, "app@sender.test"), recipientIds: [c!.id] }],
        ),
      );
      const after = (await store.getMessage("M1"))!;
      assert.equal(after.recipientDetails.find((r) => r.address === "c@one.test")?.state, "delivered");
      assert.equal((await store.listEvents({ messageId: "M1", types: ["bounce"] })).length, 2);
    }),
  );
}

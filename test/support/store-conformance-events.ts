/**
 * Store conformance, events and webhooks (issue 5): every recipient state change writes its event
 * in the same transaction (both there or both absent), one `deferred` per deferring attempt with
 * the attempt number and next time, metadata returned with every event, ids increasing; webhook
 * endpoints' cursors, batches, failure state and pruning. Called from storeConformance().
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { NewMessage, PetrelEvent, RecipientOutcome, Store } from "../../src/store/types.js";
import { StoreConflictError } from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

const T0 = 1_700_000_000_000;

function message(
  id: string,
  accountId: number,
  recipients: string[],
  extra: Partial<NewMessage> = {},
): NewMessage {
  return {
    id,
    accountId,
    apiKeyId: null,
    mailFrom: "app@sender.test",
    recipients,
    content: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
    clientIp: "127.0.0.1",
    receivedAt: T0,
    expiresAt: T0 + 72 * 3600_000,
    ...extra,
  };
}

function outcome(
  recipientId: number,
  owner: string,
  state: RecipientOutcome["state"],
  reply: string,
  extra: Partial<RecipientOutcome> = {},
): RecipientOutcome {
  return {
    recipientId,
    owner,
    state,
    nextAttemptAt: state === "deferred" ? T0 + 60_000 : null,
    attempt: {
      at: T0,
      durationMs: 3,
      mxHost: "mx.test",
      ip: "127.0.0.2",
      port: 25,
      sourceIp: null,
      tls: null,
      reply,
    },
    ...extra,
  };
}

const brief = (events: readonly PetrelEvent[]) => events.map((e) => `${e.type}:${e.recipient}`);

export function eventConformance(withStore: WithStore): void {
  it(
    "writes a processed event per recipient in the enqueue commit, and none for a failed batch",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.enqueueMessages([
        message("E1", account.id, ["a@one.test", "b@two.test"], {
          metadata: JSON.stringify({ user: 42, plan: "pro" }),
          categories: ["welcome", "onboarding"],
        }),
      ]);
      const events = await store.listEvents();
      assert.deepEqual(brief(events), ["processed:a@one.test", "processed:b@two.test"]);
      for (const e of events) {
        assert.equal(e.messageId, "E1");
        assert.equal(e.account, "default");
        assert.equal(e.timestamp, T0);
        assert.deepEqual(e.metadata, { user: 42, plan: "pro" });
        assert.deepEqual(e.categories, ["welcome", "onboarding"]);
        assert.match(e.id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
      }
      assert.ok(events[0]!.id < events[1]!.id, "ids increase");
      // A batch that fails (duplicate id) keeps neither messages nor events.
      await assert.rejects(
        store.enqueueMessages([
          message("E2", account.id, ["c@x.test"]),
          message("E1", account.id, ["d@x.test"]),
        ]),
      );
      assert.equal((await store.listEvents()).length, 2);
      assert.equal(await store.getMessage("E2"), undefined);
    }),
  );

  it(
    "records deferred (attempt, next time), then delivered, bounce and expired, each once",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.enqueueMessages([message("E3", account.id, ["d@one.test", "b@one.test", "x@one.test"])]);
      let claimed = await store.claimDue({ owner: "w1", now: T0, leaseMs: 60_000, limit: 10 });
      const id = (address: string) => claimed.find((r) => r.address === address)!.id;
      await store.recordOutcomes([
        outcome(id("d@one.test"), "w1", "deferred", "452 4.2.2 Mailbox full"),
        outcome(id("b@one.test"), "w1", "bounced", "550 5.1.1 No such user", {
          bounceClass: "invalid-recipient",
          bounceHard: true,
        }),
        outcome(id("x@one.test"), "w1", "expired", "451 4.4.1 connection refused"),
      ]);
      // The same deferral again (a duplicate commit) and one from a worker that lost the lease change nothing.
      await store.recordOutcomes([outcome(id("d@one.test"), "w1", "deferred", "452 4.2.2 Mailbox full")]);
      await store.recordOutcomes([outcome(id("d@one.test"), "other", "deferred", "452 4.2.2 Mailbox full")]);
      claimed = await store.claimDue({ owner: "w2", now: T0 + 60_000, leaseMs: 60_000, limit: 10 });
      assert.equal(claimed.length, 1);
      await store.recordOutcomes([outcome(claimed[0]!.id, "w2", "delivered", "250 2.0.0 Ok")]);
      // A final outcome for a recipient already final writes nothing either.
      await store.recordOutcomes([outcome(claimed[0]!.id, "w2", "delivered", "250 2.0.0 Ok")]);

      const events = (await store.listEvents()).filter((e) => e.type !== "processed");
      assert.deepEqual(brief(events), [
        "deferred:d@one.test",
        "bounce:b@one.test",
        "expired:x@one.test",
        "delivered:d@one.test",
      ]);
      const [deferred, bounce, expired, delivered] = events as [
        PetrelEvent,
        PetrelEvent,
        PetrelEvent,
        PetrelEvent,
      ];
      assert.equal(deferred.attempt, 1);
      assert.equal(deferred.nextAttemptAt, T0 + 60_000);
      assert.equal(deferred.enhancedCode, "4.2.2");
      assert.equal(deferred.reply, "452 4.2.2 Mailbox full");
      assert.equal(deferred.mxHost, "mx.test");
      assert.equal(deferred.ip, "127.0.0.2");
      assert.equal(bounce.bounceClass, "invalid-recipient");
      assert.equal(bounce.bounceHard, true);
      assert.equal(bounce.enhancedCode, "5.1.1");
      assert.equal(expired.nextAttemptAt, null);
      assert.equal(delivered.attempt, 2);
      assert.equal(delivered.enhancedCode, "2.0.0");
    }),
  );

  it(
    "keeps an outcome and its event together: a failing outcome batch leaves neither",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.enqueueMessages([message("E4", account.id, ["a@one.test", "b@one.test"])]);
      const claimed = await store.claimDue({ owner: "w", now: T0, leaseMs: 60_000, limit: 10 });
      const broken = outcome(claimed[1]!.id, "w", "delivered", "250 ok");
      // The attempt record's reply is NOT NULL: the second outcome fails inside the transaction.
      const failing = { ...broken, attempt: { ...broken.attempt, reply: null as unknown as string } };
      await assert.rejects(
        store.recordOutcomes([outcome(claimed[0]!.id, "w", "delivered", "250 ok"), failing]),
      );
      const detail = (await store.getMessage("E4"))!;
      assert.deepEqual(
        detail.recipientDetails.map((r) => r.state),
        ["delivering", "delivering"],
      );
      assert.deepEqual(brief(await store.listEvents({ types: ["delivered"] })), []);
      await store.recordOutcomes([outcome(claimed[0]!.id, "w", "delivered", "250 ok")]);
      assert.equal((await store.getMessage("E4"))!.recipientDetails[0]!.state, "delivered");
      assert.deepEqual(brief(await store.listEvents({ types: ["delivered"] })), ["delivered:a@one.test"]);
    }),
  );

  it(
    "drops with events: operator deletes (reason operator) and recipients dropped at accept",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.enqueueMessages([
        message("E5", account.id, ["a@one.test", "s@one.test"], {
          dropped: [{ address: "s@one.test", reason: "suppressed" }],
          categories: ["c"],
        }),
      ]);
      assert.deepEqual(
        (await store.getMessage("E5"))!.recipientDetails.map((r) => r.state),
        ["queued", "dropped"],
      );
      assert.equal(await store.dropMessage("E5", T0 + 5, "dropped by operator"), 1);
      assert.equal(await store.dropMessage("E5", T0 + 6, "dropped by operator"), 0);
      const events = await store.listEvents({ messageId: "E5" });
      assert.deepEqual(brief(events), [
        "processed:a@one.test",
        "processed:s@one.test",
        "dropped:s@one.test",
        "dropped:a@one.test",
      ]);
      assert.equal(events[2]!.reason, "suppressed");
      assert.equal(events[3]!.reason, "operator");
      assert.deepEqual(events[3]!.categories, ["c"]);
      // Nothing is left to claim.
      assert.equal((await store.claimDue({ owner: "w", now: T0 + 10, leaseMs: 1000, limit: 10 })).length, 0);
    }),
  );

  it(
    "appends events for other state changes (recordEvents) and filters them",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.enqueueMessages([message("E6", account.id, ["a@one.test", "b@two.test"])]);
      const ids = await store.recordEvents([
        { type: "spamreport", messageId: "E6", recipient: "a@one.test", at: T0 + 9, reason: "abuse" },
        {
          type: "bounce",
          messageId: "E6",
          recipient: "b@two.test",
          at: T0 + 9,
          reply: "550 5.1.1 gone",
          bounceClass: "invalid-recipient",
          bounceHard: true,
        },
      ]);
      assert.equal(ids.length, 2);
      const all = await store.listEvents();
      assert.deepEqual(
        all.slice(-2).map((e) => e.id),
        ids,
      );
      assert.equal(all.at(-1)!.enhancedCode, "5.1.1");
      assert.deepEqual(brief(await store.listEvents({ recipient: "A@ONE.TEST" })), [
        "processed:a@one.test",
        "spamreport:a@one.test",
      ]);
      assert.deepEqual(brief(await store.listEvents({ types: ["bounce", "spamreport"] })), [
        "spamreport:a@one.test",
        "bounce:b@two.test",
      ]);
      assert.deepEqual(brief(await store.listEvents({ limit: 1, newest: true })), ["bounce:b@two.test"]);
      assert.deepEqual(brief(await store.listEvents({ afterId: all[1]!.id, upToId: all[2]!.id })), [
        "spamreport:a@one.test",
      ]);
    }),
  );

  it(
    "keeps webhook endpoints: cursor from the newest event, batches per account and type, failures, disable",
    withStore(async (store) => {
      const def = (await store.getAccount("default"))!;
      const other = await store.createAccount("other");
      await store.enqueueMessages([message("W1", def.id, ["old@one.test"])]);
      const hook = await store.addWebhook({
        accountId: def.id,
        url: "https://hooks.test/a",
        secret: "whsec_s3cret",
        eventTypes: ["delivered", "processed"],
      });
      await assert.rejects(
        store.addWebhook({ accountId: def.id, url: "https://hooks.test/a", secret: "x", eventTypes: null }),
        StoreConflictError,
      );
      assert.equal(hook.secretPrefix, "whsec_s3cr");
      assert.equal("secret" in hook, false);
      await store.enqueueMessages([
        message("W2", other.id, ["o@one.test"]),
        message("W3", def.id, ["n@one.test", "m@one.test"]),
      ]);
      await store.recordEvents([{ type: "bounce", messageId: "W3", recipient: "m@one.test", at: T0 }]);

      const [due] = await store.dueWebhooks(T0);
      assert.equal(due!.secret, "whsec_s3cret");
      const batch = await store.webhookBatch(due!, 1, 100);
      assert.deepEqual(brief(batch.events), ["processed:n@one.test"]);
      const rest = await store.webhookBatch({ ...due!, cursor: batch.cursor }, 10, 100);
      assert.deepEqual(brief(rest.events), ["processed:m@one.test"]);
      assert.equal(
        rest.cursor,
        (await store.listEvents({ newest: true, limit: 1 }))[0]!.id,
        "past the bounce too",
      );

      await store.recordWebhookAttempt({
        webhookId: hook.id,
        kind: "events",
        at: T0,
        durationMs: 4,
        statusCode: 500,
        error: "HTTP 500",
        ok: false,
        events: 1,
        firstEventId: batch.events[0]!.id,
        lastEventId: batch.events[0]!.id,
        failures: 1,
        failingSince: T0,
        nextAttemptAt: T0 + 5000,
      });
      assert.deepEqual(await store.dueWebhooks(T0 + 10), []);
      assert.equal((await store.dueWebhooks(T0 + 5000)).length, 1);
      await store.recordWebhookAttempt({
        webhookId: hook.id,
        kind: "events",
        at: T0 + 5000,
        durationMs: 4,
        statusCode: 200,
        error: null,
        ok: true,
        events: 2,
        firstEventId: batch.events[0]!.id,
        lastEventId: rest.events[0]!.id,
        cursor: rest.cursor,
        failures: 0,
        failingSince: null,
        nextAttemptAt: 0,
      });
      const [listed] = await store.listWebhooks(def.id);
      assert.equal(listed!.cursor, rest.cursor);
      assert.equal(listed!.failures, 0);
      assert.equal(listed!.lastSuccessAt, T0 + 5000);
      // The cursor never moves back.
      await store.advanceWebhookCursor(hook.id, batch.cursor);
      assert.equal((await store.listWebhooks())[0]!.cursor, rest.cursor);

      await store.recordWebhookAttempt({
        webhookId: hook.id,
        kind: "disabled",
        at: T0 + 9000,
        durationMs: 0,
        statusCode: null,
        error: "gave up",
        ok: false,
        events: 0,
        firstEventId: null,
        lastEventId: null,
        disable: "gave up",
      });
      assert.deepEqual(await store.dueWebhooks(T0 + 10_000), []);
      const disabled = (await store.listWebhooks())[0]!;
      assert.equal(disabled.state, "disabled");
      assert.equal(disabled.disabledReason, "gave up");
      const deliveries = await store.listWebhookDeliveries(hook.id);
      assert.deepEqual(
        deliveries.map((d) => [d.kind, d.statusCode]),
        [
          ["disabled", null],
          ["events", 200],
          ["events", 500],
        ],
      );
      assert.equal(await store.enableWebhook(def.id, "https://hooks.test/a"), true);
      assert.equal((await store.dueWebhooks(T0 + 10_000)).length, 1);
      assert.equal(await store.removeWebhook(def.id, "https://hooks.test/a"), true);
      assert.equal(await store.removeWebhook(def.id, "https://hooks.test/a"), false);
    }),
  );

  it(
    "prunes old events only once every active webhook has passed them",
    withStore(async (store) => {
      const def = (await store.getAccount("default"))!;
      const hook = await store.addWebhook({
        accountId: def.id,
        url: "https://hooks.test/p",
        secret: "s",
        eventTypes: null,
      });
      await store.enqueueMessages([message("P1", def.id, ["a@one.test", "b@one.test"])]);
      const future = Date.now() + 3600_000;
      assert.equal(await store.pruneEvents(future), 0, "the webhook has not had them yet");
      const events = await store.listEvents();
      await store.advanceWebhookCursor(hook.id, events[0]!.id);
      assert.equal(await store.pruneEvents(future), 1);
      assert.equal(await store.pruneEvents(0), 0, "none older than the epoch");
      await store.removeWebhook(def.id, "https://hooks.test/p");
      assert.equal(await store.pruneEvents(future), 1);
      assert.deepEqual(await store.listEvents(), []);
    }),
  );
}

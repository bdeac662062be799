/**
 * The Store conformance suite: one set of behaviours every backend must show. Each backend's
 * test file calls storeConformance() with a factory for a fresh, empty store.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type NewMessage, type Store, StoreConflictError } from "../../src/store/types.js";
import { bounceConformance } from "./store-conformance-bounces.js";
import { deliveryConformance } from "./store-conformance-delivery.js";
import { domainConformance } from "./store-conformance-domains.js";
import { eventConformance } from "./store-conformance-events.js";
import { leaseConformance } from "./store-conformance-leases.js";
import { lookupConformance } from "./store-conformance-lookups.js";
import { nodeConformance } from "./store-conformance-nodes.js";
import { scheduleConformance } from "./store-conformance-schedule.js";
import { shapingConformance } from "./store-conformance-shaping.js";
import { statsConformance } from "./store-conformance-stats.js";

export function storeConformance(backend: string, openFresh: () => Promise<Store>): void {
  describe(`Store conformance: ${backend}`, () => {
    const withStore = (fn: (store: Store) => Promise<void>) => async () => {
      const store = await openFresh();
      try {
        await fn(store);
      } finally {
        await store.close();
      }
    };

    it(
      "starts with a default account and refuses duplicate account names",
      withStore(async (store) => {
        assert.deepEqual(
          (await store.listAccounts()).map((a) => a.name),
          ["default"],
        );
        const apps = await store.createAccount("apps");
        assert.equal((await store.getAccount("apps"))?.id, apps.id);
        await assert.rejects(store.createAccount("apps"), StoreConflictError);
      }),
    );

    it(
      "finds active keys by hash only, and a revoked key no longer",
      withStore(async (store) => {
        const account = (await store.getAccount("default"))!;
        const key = await store.insertApiKey({
          accountId: account.id,
          name: "web",
          hash: "h1",
          prefix: "pt_abc",
        });
        assert.equal(key.accountName, "default");
        assert.equal((await store.findActiveApiKey("h1"))?.name, "web");
        assert.equal(await store.findActiveApiKey("nope"), undefined);
        await assert.rejects(
          store.insertApiKey({ accountId: account.id, name: "web", hash: "h2", prefix: "p" }),
          StoreConflictError,
        );
        assert.equal(await store.revokeApiKey("web"), true);
        assert.equal(await store.revokeApiKey("web"), false);
        assert.equal(await store.findActiveApiKey("h1"), undefined);
        // The name is free again once the old key is revoked.
        await store.insertApiKey({ accountId: account.id, name: "web", hash: "h3", prefix: "p" });
        const list = await store.listApiKeys();
        assert.equal(list.length, 2);
        assert.equal(list.filter((k) => k.revokedAt === null).length, 1);
      }),
    );

    it(
      "records key use monotonically",
      withStore(async (store) => {
        const account = (await store.getAccount("default"))!;
        const key = await store.insertApiKey({ accountId: account.id, name: "k", hash: "h", prefix: "p" });
        await store.recordApiKeyUse([{ id: key.id, at: 2000 }]);
        await store.recordApiKeyUse([{ id: key.id, at: 1000 }]);
        assert.equal((await store.findActiveApiKey("h"))?.lastUsedAt, 2000);
      }),
    );

    it(
      "keeps each sender domain and address with one account",
      withStore(async (store) => {
        const def = (await store.getAccount("default"))!;
        const other = await store.createAccount("other");
        await store.addDomain(def.id, "Your-App.com");
        await store.addSender(def.id, "Noreply@Solo.example");
        await assert.rejects(store.addDomain(other.id, "your-app.com"), StoreConflictError);
        await assert.rejects(store.addSender(other.id, "x@your-app.com"), StoreConflictError);
        await assert.rejects(store.addDomain(other.id, "solo.example"), StoreConflictError);
        const ids = await store.getSenderIdentities(def.id);
        assert.deepEqual([...ids.domains], ["your-app.com"]);
        assert.deepEqual([...ids.addresses], ["Noreply@solo.example"]);
        assert.equal((await store.getSenderIdentities(other.id)).domains.size, 0);
        assert.equal((await store.listDomains(other.id)).length, 0);
        assert.equal(await store.removeDomain("YOUR-APP.COM"), true);
        assert.equal(await store.removeSender("Noreply@solo.example"), true);
        assert.equal((await store.listSenders()).length, 0);
      }),
    );

    it(
      "commits a batch of messages with their content byte for byte",
      withStore(async (store) => {
        const account = (await store.getAccount("default"))!;
        const content = Buffer.from("Subject: x\r\n\r\nbody \xff\x00 bytes\r\n", "latin1");
        const messages: NewMessage[] = [1, 2, 3].map((n) => ({
          id: `01TEST${n}`,
          accountId: account.id,
          apiKeyId: null,
          mailFrom: "a@your-app.com",
          recipients: [`r${n}@example.com`, `s${n}@Example.NET`],
          content,
          clientIp: "127.0.0.1",
          receivedAt: 1000 + n,
          expiresAt: 9000,
        }));
        await store.enqueueMessages(messages);
        const list = await store.listMessages();
        assert.deepEqual(
          list.map((m) => m.id),
          ["01TEST1", "01TEST2", "01TEST3"],
        );
        assert.deepEqual(list[0]!.states, { queued: 2 });
        const detail = (await store.getMessage("01TEST2"))!;
        assert.deepEqual(detail.recipients, ["r2@example.com", "s2@Example.NET"]);
        assert.equal(detail.size, content.length);
        assert.ok((await store.getMessageContent("01TEST3"))!.equals(content));
        assert.equal((await store.listMessages({ state: "delivered" })).length, 0);
        assert.equal((await store.listMessages({ state: "queued" })).length, 3);
      }),
    );

    it(
      "keeps nothing of a batch whose commit fails",
      withStore(async (store) => {
        const account = (await store.getAccount("default"))!;
        const message = (id: string): NewMessage => ({
          id,
          accountId: account.id,
          apiKeyId: null,
          mailFrom: "a@b.c",
          recipients: ["x@y.z"],
          content: Buffer.from("x"),
          clientIp: "127.0.0.1",
          receivedAt: 1,
          expiresAt: 2,
        });
        // The duplicate id makes the second insert fail inside the transaction.
        await assert.rejects(store.enqueueMessages([message("A1"), message("A2"), message("A1")]));
        assert.equal((await store.listMessages()).length, 0);
        assert.equal(await store.getMessageContent("A2"), undefined);
      }),
    );

    // Delivery (issue 3): claims, leases, outcomes, backoff, queue actions.
    deliveryConformance(withStore);
    shapingConformance(withStore);

    // Sender domains (issue 4): DKIM keys, checks, key switches, events.
    domainConformance(withStore);

    // Events and webhooks (issue 5): an event per state change, in its transaction; endpoints.
    eventConformance(withStore);
    statsConformance(withStore);
    scheduleConformance(withStore);
    bounceConformance(withStore);
    lookupConformance(withStore);
    leaseConformance(withStore);

    // Cluster nodes (issue 8 item 5): the registry behind `petrel nodes`.
    nodeConformance(withStore);
  });
}

/**
 * Conformance: the lookup version (issue 12) changes with every change the per-message lookups
 * would see, and not with the writes of the hot path; and the lookup cache over it is never stale.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { withLookupCache } from "../../src/store/lookup-cache.js";
import type { DomainCheck, Store } from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

const domainCheck = (domain: string, at: number, outcome: DomainCheck["outcome"]): DomainCheck => ({
  domain,
  at,
  outcome,
  records: [],
  promote: [],
});

export function lookupConformance(withStore: WithStore): void {
  it(
    "changes the lookup version on identity, key and domain changes, not on key use",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      let last = await store.lookupVersion();
      const changed = async (what: string, change: () => Promise<unknown>, expect = true) => {
        await change();
        const now = await store.lookupVersion();
        if (expect) assert.ok(now > last, `${what} changes the version (${last} → ${now})`);
        else assert.equal(now, last, `${what} leaves the version alone`);
        last = now;
      };
      await changed("adding a domain", () => store.addDomain(account.id, "look.example"));
      await changed("adding a sender", () => store.addSender(account.id, "a@solo.example"));
      const key = await store.insertApiKey({ accountId: account.id, name: "k", hash: "hk", prefix: "p" });
      last = await store.lookupVersion();
      await changed(
        "recording a key's use",
        () => store.recordApiKeyUse([{ id: key.id, at: Date.now() }]),
        false,
      );
      await changed("revoking a key", () => store.revokeApiKey("k"));
      const check = (at: number, outcome: DomainCheck["outcome"]) => () =>
        store.recordDomainCheck(domainCheck("look.example", at, outcome));
      await changed("a check that verifies a domain", check(1, "pass"));
      await changed("the same outcome again", check(2, "pass"), false);
      await changed("a check that fails it", check(3, "fail"));
      await changed("removing a sender", () => store.removeSender("a@solo.example"));
      await changed("removing a domain", () => store.removeDomain("look.example"));
    }),
  );

  it(
    "serves lookups from the cache until something changes, then reads again",
    withStore(async (raw) => {
      const store = withLookupCache(raw);
      const account = (await store.getAccount("default"))!;
      await store.addDomain(account.id, "cached.example");
      const before = await store.getSenderIdentities(account.id);
      assert.deepEqual([...before.domains], ["cached.example"]);
      const misses = store.lookupCacheStats.misses;
      assert.equal((await store.getSenderIdentities(account.id)).domains.has("cached.example"), true);
      assert.equal(store.lookupCacheStats.misses, misses, "the second read is a hit");
      // A write through the cache's own store is seen at once, even within the same turn.
      await store.addSender(account.id, "x@other.example");
      assert.equal((await store.getSenderIdentities(account.id)).addresses.has("x@other.example"), true);
      // A write through another handle (as another process's would be) is seen from the next turn.
      const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
      await raw.insertApiKey({ accountId: account.id, name: "web", hash: "hw", prefix: "p" });
      await nextTurn();
      assert.equal((await store.findActiveApiKey("hw"))?.name, "web");
      assert.equal((await store.findActiveApiKey("hw"))?.name, "web");
      await raw.revokeApiKey("web");
      await nextTurn();
      assert.equal(
        await store.findActiveApiKey("hw"),
        undefined,
        "a revoked key is never served from memory",
      );
      await raw.addSender(account.id, "y@other.example");
      await nextTurn();
      assert.equal((await store.getSenderIdentities(account.id)).addresses.has("y@other.example"), true);
      assert.equal(await store.getSigningKeys("CACHED.example").then((k) => k?.status), "unverified");
      await raw.removeDomain("cached.example");
      await nextTurn();
      assert.equal(await store.getSigningKeys("cached.example"), undefined);
      assert.equal((await store.getDomainStatuses(account.id)).size, 0);
    }),
  );

  it(
    "gives one message one view: a change after its first lookup applies from the next view",
    withStore(async (raw) => {
      const store = withLookupCache(raw);
      const account = (await store.getAccount("default"))!;
      await store.addDomain(account.id, "view.example");
      const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
      await nextTurn();
      // A message's view reads the version at its first lookup (MAIL FROM)...
      const message = store.lookupView();
      assert.deepEqual([...(await message.getSenderIdentities(account.id)).domains], ["view.example"]);
      assert.equal((await message.getSigningKeys("view.example"))?.status, "unverified");
      // ...another process removes the domain (as `petrel domains remove` would)...
      await raw.removeDomain("view.example");
      await nextTurn();
      // ...the message in progress keeps its view; a new message, and a plain lookup, see it gone.
      assert.equal((await message.getSigningKeys("view.example"))?.status, "unverified");
      assert.equal(await store.lookupView().getSigningKeys("view.example"), undefined);
      assert.equal(await store.getSigningKeys("view.example"), undefined);
      const next = store.lookupView();
      assert.equal((await next.getSenderIdentities(account.id)).domains.size, 0);
      // One version read serves the whole view: its later lookups are hits without a read.
      const reads = { n: 0 };
      const counting = withLookupCache({
        ...raw,
        lookupVersion: () => {
          reads.n++;
          return raw.lookupVersion();
        },
      });
      const view = counting.lookupView();
      await view.getSenderIdentities(account.id);
      await nextTurn();
      await view.getDomainStatuses(account.id);
      await nextTurn();
      await view.getSigningKeys("none.example");
      assert.equal(reads.n, 1, "one version read for the view's three lookups in three turns");
    }),
  );
}

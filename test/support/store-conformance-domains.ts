/**
 * Store conformance for sender domains (issue 4): DKIM keys per domain, checks and their status
 * transitions, key switches, events. Called from storeConformance() for every backend.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { DomainCheck, NewDkimKey, RecordCheck, Store } from "../../src/store/types.js";
import { StoreConflictError } from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

const key = (selector: string, kind: "rsa" | "ed25519", state: "active" | "pending"): NewDkimKey => ({
  selector,
  kind,
  privateKeyPem: `-----BEGIN PRIVATE KEY-----\n${selector}\n-----END PRIVATE KEY-----\n`,
  publicKey: `PUB${selector}`,
  state,
});

const record = (purpose: string, result: RecordCheck["result"], required = true): RecordCheck => ({
  name: "x.example",
  type: "TXT",
  purpose,
  required,
  expected: "v",
  found: [],
  result,
});

const check = (
  domain: string,
  at: number,
  outcome: DomainCheck["outcome"],
  promote: string[] = [],
): DomainCheck => ({
  domain,
  at,
  outcome,
  records: [record("dkim", outcome === "pass" ? "match" : "missing")],
  promote,
});

export function domainConformance(withStore: WithStore): void {
  it(
    "adds a domain with its first keys, lists them without private keys, signs with active ones",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.addDomainWithKeys(account.id, "Keys.example", [
        key("p1", "rsa", "active"),
        key("p1-ed25519", "ed25519", "active"),
      ]);
      const detail = await store.getDomain("keys.example");
      assert.equal(detail?.dkimGeneration, 1);
      assert.equal(detail?.status, "unverified");
      assert.deepEqual(detail?.lastCheck, []);
      const keys = await store.listDkimKeys("keys.example");
      assert.deepEqual(
        keys.map((k) => [k.selector, k.kind, k.state, k.generation, k.publicKey]),
        [
          ["p1", "rsa", "active", 1, "PUBp1"],
          ["p1-ed25519", "ed25519", "active", 1, "PUBp1-ed25519"],
        ],
      );
      assert.ok(!JSON.stringify(keys).includes("PRIVATE KEY"), "listings carry no private key");
      const signing = (await store.getSigningKeys("KEYS.example"))!.keys;
      assert.deepEqual(
        signing.map((k) => k.selector),
        ["p1", "p1-ed25519"],
        "RSA first",
      );
      assert.match(signing[0]!.privateKeyPem, /BEGIN PRIVATE KEY/);
      assert.match((await store.getDkimPrivateKey("keys.example", "p1"))!, /p1/);
      assert.equal(await store.getDkimPrivateKey("keys.example", "nope"), undefined);
      // The plain addDomain keeps working (no keys), and a taken domain is still a conflict.
      await assert.rejects(
        store.addDomainWithKeys(account.id, "keys.example", [key("q", "rsa", "active")]),
        StoreConflictError,
      );
      await store.addDomain(account.id, "bare.example");
      assert.deepEqual(await store.getSigningKeys("bare.example"), { status: "unverified", keys: [] });
      assert.equal(await store.getSigningKeys("none.example"), undefined);
      assert.deepEqual([...(await store.getDomainStatuses(account.id))].sort(), [
        ["bare.example", "unverified"],
        ["keys.example", "unverified"],
      ]);
    }),
  );

  it(
    "moves status by check outcome and records events for changes only",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.addDomainWithKeys(account.id, "status.example", [key("p1", "rsa", "active")]);
      assert.equal(
        (await store.recordDomainCheck(check("status.example", 1000, "fail"))).status,
        "unverified",
      );
      assert.equal(
        (await store.recordDomainCheck(check("status.example", 1500, "unknown"))).status,
        "unverified",
      );
      const pass = await store.recordDomainCheck(check("status.example", 2000, "pass"));
      assert.deepEqual([pass.previous, pass.status], ["unverified", "verified"]);
      assert.equal(
        (await store.recordDomainCheck(check("status.example", 2500, "unknown"))).status,
        "verified",
      );
      const fail = await store.recordDomainCheck(check("status.example", 3000, "fail"));
      assert.deepEqual([fail.previous, fail.status], ["verified", "failing"]);
      assert.equal((await store.recordDomainCheck(check("status.example", 3500, "fail"))).status, "failing");
      assert.equal((await store.recordDomainCheck(check("status.example", 4000, "pass"))).status, "verified");
      const detail = (await store.getDomain("status.example"))!;
      assert.equal(detail.lastCheckedAt, 4000);
      assert.equal(detail.verifiedAt, 4000);
      assert.deepEqual(detail.lastCheck, [record("dkim", "match")]);
      const events = await store.listDomainEvents("status.example");
      assert.deepEqual(
        events.map((e) => [e.at, e.fromStatus, e.toStatus]),
        [
          [4000, "failing", "verified"],
          [3000, "verified", "failing"],
          [2000, "unverified", "verified"],
        ],
      );
      assert.match(events[1]!.detail, /dkim x\.example missing/);
      await assert.rejects(store.recordDomainCheck(check("nope.example", 1, "pass")), StoreConflictError);
    }),
  );

  it(
    "switches to a pending key only when promoted, retiring the old key of that kind",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      await store.addDomainWithKeys(account.id, "rotate.example", [
        key("p1", "rsa", "active"),
        key("p1-ed25519", "ed25519", "active"),
      ]);
      await store.addDkimKeys("rotate.example", 2, [key("p2", "rsa", "pending")]);
      await assert.rejects(
        store.addDkimKeys("rotate.example", 2, [key("p2b", "rsa", "pending")]),
        StoreConflictError,
      );
      assert.equal((await store.getDomain("rotate.example"))?.dkimGeneration, 2);
      assert.deepEqual(
        (await store.getSigningKeys("rotate.example"))!.keys.map((k) => k.selector),
        ["p1", "p1-ed25519"],
      );
      // A check that does not see the new record changes nothing about the keys.
      const before = await store.recordDomainCheck(check("rotate.example", 1000, "pass"));
      assert.deepEqual(before.activated, []);
      const after = await store.recordDomainCheck(check("rotate.example", 2000, "pass", ["p2", "unknown"]));
      assert.deepEqual([after.activated, after.retired], [["p2"], ["p1"]]);
      assert.deepEqual(
        (await store.getSigningKeys("rotate.example"))!.keys.map((k) => k.selector),
        ["p2", "p1-ed25519"],
      );
      const keys = await store.listDkimKeys("rotate.example");
      assert.deepEqual(
        keys.map((k) => [k.selector, k.state, k.activatedAt, k.retiredAt]),
        [
          ["p1", "retired", keys[0]!.activatedAt, 2000],
          ["p1-ed25519", "active", keys[1]!.activatedAt, null],
          ["p2", "active", 2000, null],
        ],
      );
      assert.match(
        (await store.listDomainEvents("rotate.example"))[0]!.detail,
        /signing with p2 \(retired p1\)/,
      );
      assert.deepEqual(await store.listDomainsToRecheck(1500), []);
      await store.addDkimKeys("rotate.example", 3, [key("p3", "rsa", "pending")]);
      assert.equal(await store.deleteDkimKey("rotate.example", "p1"), true);
      assert.equal(await store.deleteDkimKey("rotate.example", "p1"), false);
      assert.deepEqual(
        (await store.listDkimKeys("rotate.example")).map((k) => k.selector),
        ["p1-ed25519", "p2", "p3"],
      );
      // Removing the domain removes its keys and events with it.
      assert.equal(await store.removeDomain("rotate.example"), true);
      assert.deepEqual(await store.listDkimKeys("rotate.example"), []);
      assert.deepEqual(await store.listDomainEvents("rotate.example"), []);
    }),
  );

  it(
    "lists for re-check the verified, failing and rotating domains whose last check is old",
    withStore(async (store) => {
      const account = (await store.getAccount("default"))!;
      for (const name of ["new.example", "ok.example", "bad.example", "rot.example", "fresh.example"]) {
        await store.addDomainWithKeys(account.id, name, [key("p1", "rsa", "active")]);
      }
      await store.recordDomainCheck(check("ok.example", 1000, "pass"));
      await store.recordDomainCheck(check("bad.example", 1000, "pass"));
      await store.recordDomainCheck(check("bad.example", 1100, "fail"));
      await store.addDkimKeys("rot.example", 2, [key("p2", "rsa", "pending")]);
      await store.recordDomainCheck(check("fresh.example", 9000, "pass"));
      assert.deepEqual(await store.listDomainsToRecheck(5000), ["rot.example", "ok.example", "bad.example"]);
    }),
  );
}

/**
 * Sender-domain verification (issue 4) through the DomainsService, a real SQLite store and a real
 * DNS server on loopback: zones with every record right, one missing, one wrong, long TXT split
 * into strings; status changes and events; rotation switching keys only once the new record is
 * seen; the periodic re-check. Comparison rules are tested on plain data at the end.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { configSchema, type PetrelConfig } from "../src/config/schema.js";
import { formatZone, splitTxtValue } from "../src/dkim/records.js";
import { createResolver } from "../src/dns/resolver.js";
import { startDomainRechecker } from "../src/domains/recheck.js";
import { DomainsService } from "../src/domains/service.js";
import { createMessageSigning } from "../src/domains/signer.js";
import { compareDkim, compareDmarc, compareSpf } from "../src/domains/verify.js";
import { createLogger } from "../src/log.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import type { Store } from "../src/store/types.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { publishRecords, publishZone, zoneToRecords } from "./support/domain-zone.js";
import { tempDataDir } from "./support/petrel-process.js";

let dns: TestDnsServer;
let store: Store;
let accountId: number;

function config(extra: Record<string, unknown> = {}): PetrelConfig {
  return configSchema.parse({
    hostname: "petrel.test",
    domains: { spf: { ips: ["127.0.0.1", "2001:db8::/48"] }, returnPath: { inboundHost: "mx.petrel.test" } },
    ...extra,
  });
}

function service(cfg = config()): DomainsService {
  return new DomainsService({
    store,
    config: cfg,
    resolver: createResolver({ servers: [dns.server], timeoutMs: 5000, tries: 2, cache: false }),
  });
}

before(async () => {
  dns = await startDnsServer({});
  store = openSqliteStore({ file: join(tempDataDir("petrel-domains-"), "petrel.db") });
  accountId = (await store.getAccount("default"))!.id;
});

after(async () => {
  await store.close();
  await dns.close();
});

/** A fresh domain with every record published from the zone text `add` would print. */
async function addPublished(domain: string, svc = service()): Promise<string> {
  const { records } = await svc.add(accountId, domain);
  const zone = formatZone(records);
  publishZone(dns, zone);
  return zone;
}

describe("domains verify against a loopback DNS server", () => {
  it("verifies a domain whose zone has every record right, the DKIM TXT split into strings", async () => {
    const zone = await addPublished("right.example");
    // The 2048-bit key's record is longer than one character-string: the zone splits it.
    const dkim = zoneToRecords(zone).get("petrel1._domainkey.right.example")!;
    assert.ok(dkim.TXT[0]!.length >= 2, "DKIM TXT split into several strings");
    assert.ok(dkim.TXT[0]!.every((s) => Buffer.byteLength(s) <= 255));
    const report = await service().verify("right.example");
    assert.deepEqual(
      report.checks.map((c) => [c.purpose, c.result, c.required]),
      [
        ["dkim", "match", true],
        ["return-path-mx", "match", true],
        ["return-path-spf", "match", true],
        ["spf", "match", false],
        ["dmarc", "match", false],
      ],
    );
    assert.equal(report.outcome, "pass");
    assert.deepEqual([report.change.previous, report.change.status], ["unverified", "verified"]);
    const detail = (await store.getDomain("right.example"))!;
    assert.equal(detail.status, "verified");
    assert.ok(detail.lastCheckedAt !== null && detail.verifiedAt === detail.lastCheckedAt);
    assert.equal(detail.lastCheck.length, 5);
    // The strings were joined back into the one value the key record is (RFC 6376 §3.6.2.2).
    assert.equal(report.checks[0]!.found[0], report.checks[0]!.expected);
  });

  it("reports a missing record and leaves the domain unverified", async () => {
    await addPublished("missing.example");
    dns.set("bounces.missing.example", { TXT: [`v=spf1 ip4:127.0.0.1 ip6:2001:db8::/48 -all`] });
    const report = await service().verify("missing.example");
    const mx = report.checks.find((c) => c.purpose === "return-path-mx")!;
    assert.deepEqual([mx.result, mx.found, mx.expected], ["missing", [], "10 mx.petrel.test"]);
    assert.equal(report.outcome, "fail");
    assert.equal(report.change.status, "unverified");
    assert.equal((await store.getDomainStatuses(accountId)).get("missing.example"), "unverified");
  });

  it("reports a wrong record with what was expected and what was found", async () => {
    await addPublished("wrong.example");
    const other = await service().add(accountId, "other-key.example");
    // The selector publishes someone else's key; the return-path SPF lacks our IPv6 range.
    const otherKey = other.records.find((r) => r.purpose === "dkim")!.value;
    dns.set("petrel1._domainkey.wrong.example", { TXT: [splitTxtValue(otherKey)] });
    dns.set("bounces.wrong.example", {
      MX: [{ preference: 10, exchange: "mx.petrel.test" }],
      TXT: ["v=spf1 ip4:127.0.0.1 -all", "google-site-verification=abc"],
    });
    const report = await service().verify("wrong.example");
    const dkim = report.checks.find((c) => c.purpose === "dkim")!;
    assert.equal(dkim.result, "different");
    assert.deepEqual(dkim.found, [otherKey]);
    assert.match(dkim.detail!, /different public key/);
    const spf = report.checks.find((c) => c.purpose === "return-path-spf")!;
    assert.deepEqual(
      [spf.result, spf.found, spf.detail],
      ["different", ["v=spf1 ip4:127.0.0.1 -all"], "missing ip6:2001:db8::/48"],
    );
    assert.equal(report.change.status, "unverified");
  });

  it("does not need the advisory From-domain SPF and DMARC records", async () => {
    await addPublished("advice.example");
    dns.remove("_dmarc.advice.example");
    // The operator merged our mechanisms into the domain's existing SPF record: that matches.
    dns.set("advice.example", {
      TXT: ["v=spf1 include:_spf.google.com ip4:127.0.0.1 ip6:2001:db8::/48 ~all", "other text"],
    });
    const report = await service().verify("advice.example");
    assert.equal(report.checks.find((c) => c.purpose === "spf")!.result, "match");
    assert.equal(report.checks.find((c) => c.purpose === "dmarc")!.result, "missing");
    assert.equal(report.change.status, "verified");
  });

  it("leaves the status alone when DNS fails, and marks a verified domain failing when a record goes", async () => {
    await addPublished("flaky.example");
    assert.equal((await service().verify("flaky.example")).change.status, "verified");
    dns.setBehaviour("bounces.flaky.example", "servfail");
    const unknown = await service().verify("flaky.example");
    assert.equal(unknown.outcome, "unknown");
    assert.equal(unknown.checks.find((c) => c.purpose === "return-path-mx")!.result, "tempfail");
    assert.equal(unknown.change.status, "verified");
    dns.remove("bounces.flaky.example");
    const failing = await service().verify("flaky.example");
    assert.deepEqual([failing.change.previous, failing.change.status], ["verified", "failing"]);
    const [event] = await store.listDomainEvents("flaky.example");
    assert.match(event!.detail, /verified → failing: return-path-mx bounces\.flaky\.example missing/);
  });

  it("checks both keys when Ed25519 is enabled", async () => {
    const svc = service(config({ dkim: { ed25519: true } }));
    const zone = await addPublished("both.example", svc);
    assert.match(zone, /petrel1-ed25519\._domainkey\.both\.example\. 3600 IN TXT "v=DKIM1; k=ed25519; p=/);
    const report = await svc.verify("both.example");
    assert.deepEqual(
      report.checks.filter((c) => c.purpose === "dkim").map((c) => [c.name, c.result, c.required]),
      [
        ["petrel1._domainkey.both.example", "match", true],
        ["petrel1-ed25519._domainkey.both.example", "match", true],
      ],
    );
    assert.equal(report.change.status, "verified");
    assert.deepEqual(
      (await store.getSigningKeys("both.example"))!.keys.map((k) => [k.selector, k.kind]),
      [
        ["petrel1", "rsa"],
        ["petrel1-ed25519", "ed25519"],
      ],
    );
  });
});

describe("DKIM rotation", () => {
  it("keeps signing with the old selector until verify sees the new record, then switches", async () => {
    await addPublished("rotate.example");
    const svc = service();
    await svc.verify("rotate.example");
    const rotated = await svc.rotate("rotate.example");
    assert.equal(rotated.immediate, false);
    assert.deepEqual(
      rotated.keys.map((k) => [k.selector, k.state]),
      [["petrel2", "pending"]],
    );
    assert.deepEqual(
      rotated.records.map((r) => r.name),
      ["petrel2._domainkey.rotate.example"],
    );
    const signing = async () => (await store.getSigningKeys("rotate.example"))!.keys.map((k) => k.selector);
    assert.deepEqual(await signing(), ["petrel1"]);

    // Not published yet: the pending key is reported, not required, and nothing switches.
    const waiting = await svc.verify("rotate.example");
    const pending = waiting.checks.find((c) => c.name === "petrel2._domainkey.rotate.example")!;
    assert.deepEqual([pending.result, pending.required], ["missing", false]);
    assert.equal(waiting.change.status, "verified");
    assert.deepEqual(await signing(), ["petrel1"]);

    publishRecords(dns, rotated.records);
    const switched = await svc.verify("rotate.example");
    assert.deepEqual([switched.change.activated, switched.change.retired], [["petrel2"], ["petrel1"]]);
    assert.equal(switched.change.status, "verified");
    assert.deepEqual(await signing(), ["petrel2"]);

    // The retired key no longer counts: its record may go; the domain stays verified.
    dns.remove("petrel1._domainkey.rotate.example");
    const after = await svc.verify("rotate.example");
    assert.equal(after.change.status, "verified");
    assert.ok(!after.checks.some((c) => c.name.startsWith("petrel1.")));

    await assert.rejects(svc.retireSelector("rotate.example", "petrel2"), /only key signing/);
    assert.equal((await svc.retireSelector("rotate.example", "petrel1")).state, "retired");
    assert.deepEqual(
      (await store.listDkimKeys("rotate.example")).map((k) => k.selector),
      ["petrel2"],
    );
    // A selector name is never given out twice.
    assert.deepEqual(
      (await svc.rotate("rotate.example")).keys.map((k) => k.selector),
      ["petrel3"],
    );
    assert.match((await svc.exportKey("rotate.example")).pem, /^-----BEGIN PRIVATE KEY-----/);
    assert.equal((await svc.exportKey("rotate.example", "petrel3")).selector, "petrel3");
  });
});

describe("periodic re-check", () => {
  let now = 0;
  beforeEach(() => {
    now = Date.now();
  });

  it("re-checks due verified domains, logs and records a domain that stops matching", async () => {
    await addPublished("recheck.example");
    const svc = service();
    await svc.verify("recheck.example");
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger({ log: { level: "info", format: "json" } });
    const captured = logger.child({});
    captured.warn = ((obj: Record<string, unknown>, msg: string) => {
      lines.push({ ...obj, msg });
    }) as typeof captured.warn;
    const rechecker = startDomainRechecker(svc, store, captured, { intervalMs: 0, now: () => now });
    dns.remove("petrel1._domainkey.recheck.example");
    // Checked a moment ago: not due yet.
    await rechecker.runOnce();
    assert.equal((await store.getDomain("recheck.example"))!.status, "verified");
    now += 86_400_000 + 1;
    await rechecker.runOnce();
    assert.equal((await store.getDomain("recheck.example"))!.status, "failing");
    const line = lines.find((l) => l.domain === "recheck.example")!;
    assert.equal(line.msg, "sender domain stopped matching its DNS records");
    assert.deepEqual(line.failed, ["dkim petrel1._domainkey.recheck.example: missing"]);
    const [event] = await store.listDomainEvents("recheck.example");
    assert.equal(event!.toStatus, "failing");
    await rechecker.stop();
  });
});

describe("accept-path signer", () => {
  const message = Buffer.from("From: a@sig.example\r\nTo: b@example.com\r\nSubject: s\r\n\r\nbody\r\n");
  it("signs only once the domain is verified, and picks up a key switch at the next message", async () => {
    const signing = createMessageSigning(store);
    await addPublished("sig.example");
    assert.deepEqual((await signing.sign("sig.example", message)).selectors, []);
    assert.deepEqual((await signing.sign("nowhere.example", message)).selectors, []);
    const svc = service();
    await svc.verify("sig.example");
    const first = await signing.sign("SIG.example", message);
    assert.deepEqual(first.selectors, ["petrel1"]);
    assert.match(
      first.content.toString(),
      /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=sig\.example;\r\n\ts=petrel1;/,
    );
    publishRecords(dns, (await svc.rotate("sig.example")).records);
    await svc.verify("sig.example");
    assert.deepEqual((await signing.sign("sig.example", message)).selectors, ["petrel2"]);
  });
  it("fails loudly, without quoting the key, when a stored key is broken", async () => {
    const secret = "-----BEGIN PRIVATE KEY-----\nnot-a-key-SECRET\n-----END PRIVATE KEY-----\n";
    const signing = createMessageSigning({
      getSigningKeys: async () => ({
        status: "verified",
        keys: [{ id: 1, selector: "s1", kind: "rsa", privateKeyPem: secret }],
      }),
    });
    await assert.rejects(signing.sign("broken.example", message), (err: Error) => {
      assert.match(err.message, /s1\._domainkey\.broken\.example/);
      assert.ok(!String(err.stack).includes("SECRET"));
      return true;
    });
  });
});

describe("record comparison", () => {
  const key = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAq8hU";
  it("DKIM: whitespace in p= and missing v=/k= still match; revoked and wrong kind differ", () => {
    const want = `v=DKIM1; k=rsa; p=${key}`;
    assert.equal(compareDkim(want, [`p=${key.slice(0, 20)} ${key.slice(20)}`]).result, "match");
    assert.equal(compareDkim(want, ["v=DKIM1; k=rsa; p="]).detail, "p= is empty (the key is revoked)");
    assert.equal(compareDkim(want, [`v=DKIM1; k=ed25519; p=${key}`]).detail, "k=ed25519, expected k=rsa");
    assert.equal(compareDkim(want, ["some unrelated text"]).result, "missing");
  });
  it("SPF: one record with every mechanism; two records are an error", () => {
    const want = "v=spf1 ip4:127.0.0.1 include:_spf.petrel.test -all";
    assert.equal(
      compareSpf(want, ["v=spf1 +ip4:127.0.0.1 mx INCLUDE:_spf.petrel.test ~all"]).result,
      "match",
    );
    assert.equal(compareSpf(want, ["v=spf1 ip4:127.0.0.1 -all"]).detail, "missing include:_spf.petrel.test");
    assert.equal(compareSpf(want, ["v=spf1 -all", "v=spf1 ip4:127.0.0.1 -all"]).result, "different");
    assert.equal(compareSpf(want, ["v=spf10 nope", "text"]).result, "missing");
  });
  it("DMARC: any one policy matches and is reported", () => {
    assert.deepEqual(compareDmarc("v=DMARC1; p=none", ["v=DMARC1; p=reject; pct=100"]), {
      result: "match",
      detail: "policy p=reject",
      relevant: ["v=DMARC1; p=reject; pct=100"],
    });
  });
});

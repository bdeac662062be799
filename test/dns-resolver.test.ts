/**
 * The resolver against a real DNS server on loopback (test/support/dns-server.ts): record types,
 * the permanent/temporary distinction, TTL caching with an injected clock, TCP fallback.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createResolver, toQueryName } from "../src/dns/resolver.js";
import { parseNameServer } from "../src/dns/servers.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { CLOSED_PORT } from "./support/ports.js";

const LONG_TXT = `v=DKIM1; k=rsa; p=${"A".repeat(600)}`;
const VERY_LONG_TXT = `v=DKIM1; k=rsa; p=${"B".repeat(1400)}`;

let dns: TestDnsServer;

before(async () => {
  dns = await startDnsServer(
    {
      "example.test": {
        ttl: 120,
        MX: [
          { preference: 20, exchange: "mx2.example.test" },
          { preference: 10, exchange: "MX1.example.test." },
          { preference: 30, exchange: "mx3.example.test" },
        ],
        TXT: [["v=spf1 ", "ip4:192.0.2.1 ", "-all"], "another record"],
      },
      "null-mx.test": { MX: [{ preference: 0, exchange: "." }] },
      "a-only.test": { A: ["127.0.0.2"] },
      "host.test": { A: ["127.0.0.1", "127.0.0.3"], AAAA: ["::1", "2001:DB8:0:0:0:0:0:1"] },
      "alias.test": { CNAME: "host.test" },
      "sel._domainkey.long.test": { TXT: [LONG_TXT] },
      "huge.test": { TXT: [VERY_LONG_TXT] },
      "servfail.test": { behaviour: "servfail", MX: [{ preference: 10, exchange: "mx.servfail.test" }] },
      "refused.test": { behaviour: "refused" },
      "timeout.test": { behaviour: "timeout" },
      "xn--bcher-kva.test": { A: ["127.0.0.9"] },
    },
    { soaMinimum: 45 },
  );
});

after(async () => {
  await dns.close();
});

function resolver(extra: Partial<Parameters<typeof createResolver>[0]> = {}) {
  return createResolver({ servers: [dns.server], timeoutMs: 500, tries: 1, ...extra });
}

describe("record types", () => {
  it("returns MX records sorted by preference, lower-cased, without the trailing dot, with the TTL", async () => {
    const answer = await resolver().resolveMx("example.test");
    assert.deepEqual(answer, {
      kind: "ok",
      ttl: 120,
      records: [
        { preference: 10, exchange: "mx1.example.test" },
        { preference: 20, exchange: "mx2.example.test" },
        { preference: 30, exchange: "mx3.example.test" },
      ],
    });
  });

  it('returns a null MX (RFC 7505) as preference 0, exchange "."', async () => {
    const answer = await resolver().resolveMx("null-mx.test");
    assert.deepEqual(answer, { kind: "ok", ttl: 300, records: [{ preference: 0, exchange: "." }] });
  });

  it("answers NODATA (ok, no records) for a name with an A record but no MX", async () => {
    const r = resolver();
    const mx = await r.resolveMx("a-only.test");
    assert.equal(mx.kind, "ok");
    assert.deepEqual(mx.kind === "ok" && mx.records, []);
    // The negative TTL comes from the SOA (RFC 2308 §5).
    assert.equal(mx.kind === "ok" && mx.ttl, 45);
    assert.deepEqual(await r.resolveA("a-only.test"), { kind: "ok", ttl: 300, records: ["127.0.0.2"] });
  });

  it("returns A and AAAA addresses", async () => {
    const r = resolver();
    assert.deepEqual(await r.resolveA("host.test"), {
      kind: "ok",
      ttl: 300,
      records: ["127.0.0.1", "127.0.0.3"],
    });
    assert.deepEqual(await r.resolveAaaa("host.test"), {
      kind: "ok",
      ttl: 300,
      records: ["::1", "2001:db8::1"],
    });
  });

  it("follows a CNAME to the target's records", async () => {
    const answer = await resolver().resolveA("alias.test");
    assert.deepEqual(answer, { kind: "ok", ttl: 300, records: ["127.0.0.1", "127.0.0.3"] });
  });

  it("joins the character-strings of each TXT record and keeps records apart", async () => {
    const answer = await resolver().resolveTxt("example.test");
    assert.equal(answer.kind, "ok");
    assert.deepEqual(answer.kind === "ok" && [...answer.records].sort(), [
      "another record",
      "v=spf1 ip4:192.0.2.1 -all",
    ]);
  });

  it("converts an internationalized name to its A-label before asking", async () => {
    const answer = await resolver().resolveA("bücher.test");
    assert.deepEqual(answer, { kind: "ok", ttl: 300, records: ["127.0.0.9"] });
    assert.equal(dns.queriesFor("xn--bcher-kva.test", "A").length, 1);
  });
});

describe("permanent and temporary failures", () => {
  it("reports NXDOMAIN for an unknown name", async () => {
    assert.deepEqual(await resolver().resolveMx("nope.example.test"), { kind: "nxdomain" });
  });

  it("reports nxdomain without asking for a name that cannot exist", async () => {
    const before = dns.queries.length;
    const r = resolver();
    assert.deepEqual(await r.resolveA("a..b.test"), { kind: "nxdomain" });
    assert.deepEqual(await r.resolveA(`${"x".repeat(64)}.test`), { kind: "nxdomain" });
    assert.deepEqual(await r.resolveA(""), { kind: "nxdomain" });
    assert.equal(dns.queries.length, before);
    assert.equal(toQueryName("Example.TEST."), "example.test");
  });

  it("reports SERVFAIL as tempfail, does not cache it, and recovers when the server does", async () => {
    const r = resolver();
    const first = await r.resolveMx("servfail.test");
    assert.equal(first.kind, "tempfail");
    assert.match(first.kind === "tempfail" ? first.reason : "", /SERVFAIL/);
    dns.setBehaviour("servfail.test", undefined);
    try {
      assert.deepEqual(await r.resolveMx("servfail.test"), {
        kind: "ok",
        ttl: 300,
        records: [{ preference: 10, exchange: "mx.servfail.test" }],
      });
    } finally {
      dns.setBehaviour("servfail.test", "servfail");
    }
  });

  it("reports REFUSED as tempfail", async () => {
    const answer = await resolver().resolveA("refused.test");
    assert.equal(answer.kind, "tempfail");
    assert.match(answer.kind === "tempfail" ? answer.reason : "", /REFUSED/);
  });

  it("reports a server that never answers as tempfail after the timeout", async () => {
    const started = Date.now();
    const answer = await resolver({ timeoutMs: 150, tries: 2 }).resolveMx("timeout.test");
    const elapsed = Date.now() - started;
    assert.equal(answer.kind, "tempfail");
    assert.match(answer.kind === "tempfail" ? answer.reason : "", /timeout after 150 ms/);
    // A lower bound only (both tries waited their timeout); the upper one just says it gave up.
    assert.ok(elapsed >= 280 && elapsed < 20_000, `two tries of 150 ms took ${elapsed} ms`);
    assert.equal(dns.queriesFor("timeout.test", "MX").length, 2);
  });

  it("asks again without EDNS when a server answers FORMERR to it", async () => {
    dns.set("old-server.test", { behaviour: "formerr-on-edns", A: ["127.0.0.10"] });
    assert.deepEqual(await resolver().resolveA("old-server.test"), {
      kind: "ok",
      ttl: 300,
      records: ["127.0.0.10"],
    });
    assert.equal(dns.queriesFor("old-server.test", "A").length, 2);
  });

  it("moves on to the next server when one refuses the connection", async () => {
    const deadPort = CLOSED_PORT;
    // A timeout far longer than the test: only the ICMP port-unreachable can move it on in time.
    const r = createResolver({ servers: [`127.0.0.1:${deadPort}`, dns.server], timeoutMs: 60_000, tries: 1 });
    const started = Date.now();
    assert.deepEqual(await r.resolveA("a-only.test"), { kind: "ok", ttl: 300, records: ["127.0.0.2"] });
    // A connected UDP socket learns of the ICMP port-unreachable at once: no timeout wait.
    assert.ok(Date.now() - started < 30_000);
    assert.deepEqual(r.servers, [`127.0.0.1:${deadPort}`, dns.server]);
  });
});

describe("cache", () => {
  it("serves answers for their TTL by the injected clock, with the remaining TTL", async () => {
    let now = 1_000_000;
    const r = resolver({ now: () => now });
    dns.set("cached.test", { ttl: 30, A: ["127.0.0.4"] });
    assert.deepEqual(await r.resolveA("cached.test"), { kind: "ok", ttl: 30, records: ["127.0.0.4"] });
    dns.set("cached.test", { ttl: 30, A: ["127.0.0.5"] });
    now += 10_000;
    assert.deepEqual(await r.resolveA("cached.test"), { kind: "ok", ttl: 20, records: ["127.0.0.4"] });
    assert.equal(dns.queriesFor("cached.test", "A").length, 1);
    now += 20_500;
    assert.deepEqual(await r.resolveA("cached.test"), { kind: "ok", ttl: 30, records: ["127.0.0.5"] });
    assert.equal(dns.queriesFor("cached.test", "A").length, 2);
  });

  it("caps a long TTL at maxTtl", async () => {
    let now = 0;
    const r = resolver({ now: () => now, maxTtl: 60 });
    dns.set("long-ttl.test", { ttl: 86400, A: ["127.0.0.6"] });
    assert.deepEqual(await r.resolveA("long-ttl.test"), { kind: "ok", ttl: 86400, records: ["127.0.0.6"] });
    now += 59_000;
    await r.resolveA("long-ttl.test");
    assert.equal(dns.queriesFor("long-ttl.test", "A").length, 1);
    now += 2_000;
    await r.resolveA("long-ttl.test");
    assert.equal(dns.queriesFor("long-ttl.test", "A").length, 2);
  });

  it("keeps NXDOMAIN for the SOA minimum and never keeps a tempfail", async () => {
    let now = 0;
    const r = resolver({ now: () => now });
    assert.deepEqual(await r.resolveMx("later.test"), { kind: "nxdomain" });
    dns.set("later.test", { MX: [{ preference: 5, exchange: "mx.later.test" }] });
    now += 44_000;
    assert.deepEqual(await r.resolveMx("later.test"), { kind: "nxdomain" });
    now += 2_000;
    assert.equal((await r.resolveMx("later.test")).kind, "ok");
    assert.equal(dns.queriesFor("later.test", "MX").length, 2);

    assert.equal((await r.resolveA("refused.test")).kind, "tempfail");
    assert.equal((await r.resolveA("refused.test")).kind, "tempfail");
    assert.equal(dns.queriesFor("refused.test", "A").length >= 2, true);
  });

  it("shares one query among concurrent identical lookups; clearCache forgets", async () => {
    const r = resolver();
    dns.set("burst.test", { A: ["127.0.0.7"] });
    const answers = await Promise.all([
      r.resolveA("burst.test"),
      r.resolveA("burst.test"),
      r.resolveA("burst.test"),
    ]);
    for (const a of answers) assert.deepEqual(a, { kind: "ok", ttl: 300, records: ["127.0.0.7"] });
    assert.equal(dns.queriesFor("burst.test", "A").length, 1);
    r.clearCache();
    await r.resolveA("burst.test");
    assert.equal(dns.queriesFor("burst.test", "A").length, 2);
  });

  it("asks every time with the cache off", async () => {
    const r = resolver({ cache: false });
    dns.set("uncached.test", { A: ["127.0.0.8"] });
    await r.resolveA("uncached.test");
    await r.resolveA("uncached.test");
    assert.equal(dns.queriesFor("uncached.test", "A").length, 2);
  });
});

describe("TCP fallback", () => {
  it("retries over TCP when a > 512-byte TXT answer comes back truncated (no EDNS)", async () => {
    const answer = await resolver({ ednsUdpSize: 0 }).resolveTxt("sel._domainkey.long.test");
    assert.deepEqual(answer, { kind: "ok", ttl: 300, records: [LONG_TXT] });
    const transports = dns.queriesFor("sel._domainkey.long.test", "TXT").map((q) => q.transport);
    assert.deepEqual(transports, ["udp", "tcp"]);
  });

  it("gets a > 512-byte answer over UDP with EDNS, and a > 1232-byte one over TCP", async () => {
    const r = resolver();
    assert.deepEqual(await r.resolveTxt("sel._domainkey.long.test"), {
      kind: "ok",
      ttl: 300,
      records: [LONG_TXT],
    });
    assert.deepEqual(
      dns.queriesFor("sel._domainkey.long.test", "TXT").map((q) => q.transport),
      ["udp", "tcp", "udp"],
    );
    assert.deepEqual(await r.resolveTxt("huge.test"), { kind: "ok", ttl: 300, records: [VERY_LONG_TXT] });
    assert.deepEqual(
      dns.queriesFor("huge.test", "TXT").map((q) => q.transport),
      ["udp", "tcp"],
    );
  });
});

describe("server list", () => {
  it("parses IPv4, IPv4:port, bare IPv6 and [IPv6]:port", () => {
    assert.deepEqual(parseNameServer("1.1.1.1"), { host: "1.1.1.1", port: 53, family: 4 });
    assert.deepEqual(parseNameServer("127.0.0.1:5353"), { host: "127.0.0.1", port: 5353, family: 4 });
    assert.deepEqual(parseNameServer("[::1]:53"), { host: "::1", port: 53, family: 6 });
    assert.deepEqual(parseNameServer("2001:db8::53"), { host: "2001:db8::53", port: 53, family: 6 });
    assert.deepEqual(parseNameServer("[2001:db8::53]"), { host: "2001:db8::53", port: 53, family: 6 });
    for (const bad of ["dns.example", "1.2.3.4:0", "1.2.3.4:70000", "[1.2.3.4]:53", "1.2.3.4:53:1", ""]) {
      assert.throws(() => parseNameServer(bad), /Invalid DNS server/, bad);
    }
  });

  it("talks to an IPv6 server, TCP fallback included", async (t) => {
    let v6: TestDnsServer;
    try {
      v6 = await startDnsServer({ "v6.test": { A: ["127.0.0.1"], TXT: [LONG_TXT] } }, { address: "::1" });
    } catch {
      t.skip("no IPv6 loopback here");
      return;
    }
    try {
      const r = createResolver({ servers: [v6.server], timeoutMs: 500, ednsUdpSize: 0 });
      assert.deepEqual(await r.resolveA("v6.test"), { kind: "ok", ttl: 300, records: ["127.0.0.1"] });
      assert.deepEqual(await r.resolveTxt("v6.test"), { kind: "ok", ttl: 300, records: [LONG_TXT] });
      assert.deepEqual(
        v6.queries.map((q) => q.transport),
        ["udp", "udp", "tcp"],
      );
    } finally {
      await v6.close();
    }
  });

  it("falls back to the system's servers when none are configured (without querying them)", () => {
    const r = createResolver({ servers: [] });
    assert.ok(r.servers.length > 0);
  });
});

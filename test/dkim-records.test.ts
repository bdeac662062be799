/**
 * The DNS records for a sender domain: exact content, zone output parsed back, 255-byte TXT
 * splitting of a 2048-bit key, input validation, and a round trip through a real DNS server.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type DkimKey, generateDkimKey, publicKeyFromPrivate } from "../src/dkim/keys.js";
import {
  type DnsRecordSpec,
  formatJson,
  formatTable,
  formatZone,
  parseZone,
  parseZoneLine,
  type SenderDomainInput,
  senderDomainRecords,
  splitTxtValue,
} from "../src/dkim/records.js";
import { createResolver } from "../src/dns/resolver.js";
import { startDnsServer } from "./support/dns-server.js";

let rsa: DkimKey;
let ed: DkimKey;
let input: SenderDomainInput;

before(async () => {
  [rsa, ed] = await Promise.all([generateDkimKey("rsa"), generateDkimKey("ed25519")]);
  input = {
    domain: "Example.com",
    selectors: [
      { selector: "p1", kind: "rsa", publicKeyBase64: rsa.publicKeyBase64 },
      { selector: "p2", kind: "ed25519", publicKeyBase64: ed.publicKeyBase64 },
    ],
    bounceSubdomain: "bounces",
    inboundHost: "mx.petrel.example.net.",
    egressIps: ["192.0.2.10", "2001:db8::25", "198.51.100.0/28"],
    dmarcRua: "dmarc-reports@example.com",
  };
});

describe("keys", () => {
  it("makes a 2048-bit RSA key whose p= is the SPKI, and an Ed25519 key whose p= is the raw 32 bytes", () => {
    assert.equal(rsa.kind, "rsa");
    assert.match(rsa.privateKeyPem, /^-----BEGIN PRIVATE KEY-----/);
    // SPKI DER of a 2048-bit RSA key is 294 bytes.
    assert.equal(Buffer.from(rsa.publicKeyBase64, "base64").length, 294);
    assert.equal(ed.kind, "ed25519");
    assert.equal(Buffer.from(ed.publicKeyBase64, "base64").length, 32);
    assert.deepEqual(publicKeyFromPrivate(rsa.privateKeyPem), {
      kind: "rsa",
      publicKeyBase64: rsa.publicKeyBase64,
    });
    assert.deepEqual(publicKeyFromPrivate(ed.privateKeyPem), {
      kind: "ed25519",
      publicKeyBase64: ed.publicKeyBase64,
    });
    assert.throws(
      () => publicKeyFromPrivate("not a key"),
      (err: Error) => !err.message.includes("not a key"),
    );
  });
});

describe("sender domain records", () => {
  it("lists DKIM, return-path MX and SPF, From-domain SPF and DMARC", () => {
    const records = senderDomainRecords(input);
    const plain = records.map(({ name, type, value, purpose }) => ({ name, type, value, purpose }));
    const spf = "ip4:192.0.2.10 ip6:2001:db8::25 ip4:198.51.100.0/28";
    assert.deepEqual(plain, [
      {
        name: "p1._domainkey.example.com",
        type: "TXT",
        value: `v=DKIM1; k=rsa; p=${rsa.publicKeyBase64}`,
        purpose: "dkim",
      },
      {
        name: "p2._domainkey.example.com",
        type: "TXT",
        value: `v=DKIM1; k=ed25519; p=${ed.publicKeyBase64}`,
        purpose: "dkim",
      },
      {
        name: "bounces.example.com",
        type: "MX",
        value: "10 mx.petrel.example.net",
        purpose: "return-path-mx",
      },
      { name: "bounces.example.com", type: "TXT", value: `v=spf1 ${spf} -all`, purpose: "return-path-spf" },
      { name: "example.com", type: "TXT", value: `v=spf1 ${spf} ~all`, purpose: "spf" },
      {
        name: "_dmarc.example.com",
        type: "TXT",
        value: "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.com",
        purpose: "dmarc",
      },
    ]);
    const dmarc = records.find((r) => r.purpose === "dmarc");
    assert.match(dmarc?.note ?? "", /p=quarantine.*p=reject/);
    assert.match(records.find((r) => r.purpose === "spf")?.note ?? "", /only one v=spf1/);
  });

  it("uses an SPF include alongside or instead of IPs, and leaves rua out when not given", () => {
    const records = senderDomainRecords({
      ...input,
      egressIps: [],
      spfInclude: "_spf.petrel.example.net",
      dmarcRua: undefined,
    });
    assert.equal(
      records.find((r) => r.purpose === "return-path-spf")?.value,
      "v=spf1 include:_spf.petrel.example.net -all",
    );
    assert.equal(records.find((r) => r.purpose === "dmarc")?.value, "v=DMARC1; p=none");
  });

  it("rejects inputs that could not be published or would inject syntax", () => {
    const bad: Partial<SenderDomainInput>[] = [
      { domain: "exa mple.com" },
      { domain: 'example.com" IN TXT "x' },
      { bounceSubdomain: "b;ounces" },
      { inboundHost: "" },
      { egressIps: ["192.0.2.300"] },
      { egressIps: ["192.0.2.0/33"] },
      { egressIps: [], spfInclude: undefined },
      { dmarcRua: "a@example.com; p=reject" },
      { dmarcRua: "a@example.com!10m" },
      { selectors: [{ selector: "s1", kind: "rsa", publicKeyBase64: "abc; t=y" }] },
      { selectors: [{ selector: "s 1", kind: "rsa", publicKeyBase64: "abc" }] },
    ];
    for (const patch of bad) {
      assert.throws(() => senderDomainRecords({ ...input, ...patch }), Error, JSON.stringify(patch));
    }
  });
});

describe("renderers", () => {
  it("writes a zone that parses back to the same records", () => {
    const records = senderDomainRecords(input);
    const zone = formatZone(records);
    const parsed = parseZone(zone);
    assert.deepEqual(
      parsed.map(({ name, ttl, type, value }) => ({ name, ttl, type, value })),
      records.map(({ name, type, value }) => ({ name, ttl: 3600, type, value })),
    );
    assert.match(zone, /^bounces\.example\.com\. 3600 IN MX 10 mx\.petrel\.example\.net\.$/m);
    assert.match(zone, /^; dmarc: Start at p=none/m);
  });

  it("splits a 2048-bit key's TXT into ≤255-byte strings that join back to the value", () => {
    const dkim = senderDomainRecords(input)[0]!;
    assert.ok(dkim.value.length > 400);
    const line = formatZone([dkim], { ttl: 300 })
      .split("\n")
      .find((l) => !l.startsWith(";") && l !== "")!;
    assert.match(line, /^p1\._domainkey\.example\.com\. 300 IN TXT "v=DKIM1; k=rsa; p=[^"]+" "[^"]+"$/);
    const parsed = parseZoneLine(line)!;
    assert.ok(parsed.strings !== undefined && parsed.strings.length === 2);
    for (const s of parsed.strings) assert.ok(Buffer.byteLength(s) <= 255);
    assert.equal(parsed.strings[0]!.length, 255);
    assert.equal(parsed.value, dkim.value);
  });

  it("quotes and escapes awkward TXT text, and splits UTF-8 between characters", () => {
    const value = `say "hi" \\ back ${"é".repeat(200)}`;
    const records: DnsRecordSpec[] = [{ name: "odd.example.com", type: "TXT", value, purpose: "spf" }];
    const [parsed] = parseZone(formatZone(records));
    assert.equal(parsed?.value, value);
    for (const part of splitTxtValue(value)) assert.ok(Buffer.byteLength(part) <= 255);
    assert.equal(splitTxtValue(value).join(""), value);
    assert.deepEqual(splitTxtValue(""), [""]);
  });

  it("renders JSON and a terminal table with whole values and numbered notes", () => {
    const records = senderDomainRecords(input);
    assert.deepEqual(JSON.parse(formatJson(records)), records);
    const table = formatTable(records);
    const lines = table.split("\n");
    assert.match(lines[0]!, /^PURPOSE\s+TYPE\s+NAME\s+VALUE$/);
    for (const r of records) assert.ok(table.includes(r.value), r.name);
    assert.match(table, /^dmarc \[\d\]\s+TXT\s+_dmarc\.example\.com\s+v=DMARC1; p=none/m);
    assert.match(table, /^\[1\] /m);
  });
});

describe("published records resolve back", () => {
  let dns: Awaited<ReturnType<typeof startDnsServer>>;
  before(async () => {
    dns = await startDnsServer({});
  });
  after(async () => {
    await dns.close();
  });

  it("serves the zone's TXT strings and MX through a DNS server and reads the same values", async () => {
    const records = senderDomainRecords(input);
    const byName = new Map<string, { TXT: string[][]; MX: { preference: number; exchange: string }[] }>();
    for (const r of parseZone(formatZone(records))) {
      const entry = byName.get(r.name) ?? { TXT: [], MX: [] };
      if (r.type === "TXT") entry.TXT.push([...(r.strings ?? [])]);
      else {
        const [pref, host] = r.value.split(" ");
        entry.MX.push({ preference: Number(pref), exchange: host! });
      }
      byName.set(r.name, entry);
    }
    for (const [name, entry] of byName) dns.set(name, entry);
    const resolver = createResolver({ servers: [dns.server], timeoutMs: 1000, ednsUdpSize: 0 });
    for (const r of records) {
      if (r.type === "TXT") {
        const answer = await resolver.resolveTxt(r.name);
        assert.ok(answer.kind === "ok" && answer.records.includes(r.value), r.name);
      } else {
        const answer = await resolver.resolveMx(r.name);
        assert.deepEqual(answer.kind === "ok" && answer.records, [
          { preference: 10, exchange: "mx.petrel.example.net" },
        ]);
      }
    }
  });
});

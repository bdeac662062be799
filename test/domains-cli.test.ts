/**
 * `petrel domains` as an operator uses it (issue 4), through the real binary: the three output
 * formats of `add` (the zone lines parse back into the same records as the JSON), `records`,
 * `export-key` (the PEM matches the published key), `retire-selector`'s confirmation, and the
 * exit status of `verify`. Also the sending rule as a pure policy function and the config keys.
 */
import assert from "node:assert/strict";
import { createPublicKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { loadConfig } from "../src/config/load.js";
import { type DnsRecordSpec, parseZone } from "../src/dkim/records.js";
import { checkDomainsVerified } from "../src/policy/sender.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { publishRecords } from "./support/domain-zone.js";
import { petrelCli, tempDataDir, testConfig } from "./support/petrel-process.js";

describe("petrel domains", () => {
  let dns: TestDnsServer;
  let dataDir: string;
  const cli = (args: readonly string[]) =>
    petrelCli(dataDir, [...args, "--config", join(dataDir, "cli.yaml")]);
  const ok = async (args: readonly string[]) => {
    const result = await cli(args);
    assert.equal(result.code, 0, `petrel ${args.join(" ")}: ${result.stderr}`);
    return result;
  };

  before(async () => {
    dns = await startDnsServer({});
    dataDir = tempDataDir("petrel-domains-cli-");
    const config = testConfig(dataDir, {
      dns: { servers: [dns.server], timeoutMs: 5000, tries: 2 },
      domains: {
        spf: { ips: ["192.0.2.10"], include: "_spf.petrel.test" },
        dmarcReports: "reports@petrel.test",
      },
    });
    writeFileSync(join(dataDir, "cli.yaml"), stringify(config));
  });

  after(async () => {
    await dns.close();
  });

  it("prints the records as a table, as zone lines that parse back, and as JSON", async () => {
    const table = await ok(["domains", "add", "Format.example"]);
    assert.match(table.stdout, /^Added domain format\.example to account default/);
    assert.match(table.stdout, /^PURPOSE\s+TYPE\s+NAME\s+VALUE$/m);
    assert.match(table.stdout, /^dkim\s+TXT\s+petrel1\._domainkey\.format\.example\s+v=DKIM1; k=rsa; p=/m);
    assert.match(table.stdout, /Then run: petrel domains verify format\.example/);

    const json: DnsRecordSpec[] = JSON.parse(
      (await ok(["domains", "records", "format.example", "--format", "json"])).stdout,
    );
    const zone = await ok(["domains", "records", "format.example", "--format", "zone"]);
    const parsed = parseZone(zone.stdout);
    assert.deepEqual(
      parsed.map((r) => [r.name, r.type, r.value]),
      json.map((r) => [r.name, r.type, r.value]),
    );
    assert.deepEqual(
      json.map((r) => [r.purpose, r.name, r.purpose === "dkim" ? r.value.replace(/p=\S+/, "p=…") : r.value]),
      [
        ["dkim", "petrel1._domainkey.format.example", "v=DKIM1; k=rsa; p=…"],
        ["return-path-mx", "bounces.format.example", "10 petrel.test"],
        ["return-path-spf", "bounces.format.example", "v=spf1 ip4:192.0.2.10 include:_spf.petrel.test -all"],
        ["spf", "format.example", "v=spf1 ip4:192.0.2.10 include:_spf.petrel.test ~all"],
        ["dmarc", "_dmarc.format.example", "v=DMARC1; p=none; rua=mailto:reports@petrel.test"],
      ],
    );
    // Each zone TXT string fits in 255 bytes; the DKIM key needed two.
    assert.equal(parsed[0]!.strings!.length, 2);

    // add --format zone keeps stdout to the zone lines (the prose goes to stderr), for pasting.
    const added = await ok(["domains", "add", "zone.example", "--format", "zone"]);
    assert.ok(parseZone(added.stdout).length === 5);
    assert.match(added.stderr, /Added domain zone\.example/);
  });

  it("exports the private key of the published public key; keeps it out of every listing", async () => {
    const exported = await ok(["domains", "export-key", "format.example"]);
    assert.match(exported.stdout, /^-----BEGIN PRIVATE KEY-----\n[\s\S]*-----END PRIVATE KEY-----\n$/);
    const json: DnsRecordSpec[] = JSON.parse(
      (await ok(["domains", "records", "format.example", "--format", "json"])).stdout,
    );
    const published = /p=(\S+)$/.exec(json[0]!.value)![1];
    const derived = createPublicKey(exported.stdout)
      .export({ type: "spki", format: "der" })
      .toString("base64");
    assert.equal(derived, published);
    for (const args of [
      ["domains", "list", "--json"],
      ["domains", "show", "format.example", "--json"],
      ["config", "--json"],
    ]) {
      assert.ok(!(await ok(args)).stdout.includes("PRIVATE KEY"), args.join(" "));
    }
  });

  it("verify exits 1 until the records are published, then 0", async () => {
    const missing = await cli(["domains", "verify", "format.example"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stdout, /^missing\s+dkim\s+TXT\s+petrel1\._domainkey\.format\.example$/m);
    assert.match(missing.stdout, /^\s+expected: v=DKIM1; k=rsa; p=/m);
    assert.match(missing.stderr, /format\.example is unverified/);
    const json: DnsRecordSpec[] = JSON.parse(
      (await ok(["domains", "records", "format.example", "--format", "json"])).stdout,
    );
    publishRecords(dns, json);
    const verified = await ok(["domains", "verify", "format.example"]);
    assert.match(verified.stdout, /^format\.example: verified \(was unverified\)$/m);
    const list = await ok(["domains", "list"]);
    assert.match(list.stdout, /^DOMAIN\s+ACCOUNT\s+STATUS\s+SELECTORS\s+LAST CHECKED\s+ADDED$/m);
    assert.match(list.stdout, /^format\.example\s+default\s+verified\s+petrel1\s+\d{4}-\d\d-\d\dT/m);
    assert.match(list.stdout, /^zone\.example\s+default\s+unverified\s+petrel1\s+-\s/m);
  });

  it("rotates, and retires a selector only when confirmed and not the last signing key", async () => {
    const rotated = await ok(["domains", "rotate-dkim", "format.example"]);
    assert.match(rotated.stdout, /New DKIM selector petrel2 for format\.example/);
    assert.match(rotated.stdout, /keeps signing with the current key until it sees this record/);
    const unconfirmed = await cli(["domains", "retire-selector", "format.example", "petrel2"]);
    assert.equal(unconfirmed.code, 1);
    assert.match(unconfirmed.stderr, /Add --yes to confirm/);
    const last = await cli(["domains", "retire-selector", "format.example", "petrel1", "--yes"]);
    assert.equal(last.code, 1);
    assert.match(last.stderr, /petrel1 is the only key signing for format\.example/);
    // Abandoning the rotation: the pending key goes.
    await ok(["domains", "retire-selector", "format.example", "petrel2", "--yes"]);
    const shown = JSON.parse((await ok(["domains", "show", "format.example", "--json"])).stdout);
    assert.deepEqual(
      shown.keys.map((k: { selector: string }) => k.selector),
      ["petrel1"],
    );
    const unknown = await cli(["domains", "verify", "nope.example"]);
    assert.match(unknown.stderr, /no domain nope\.example/);
  });
});

describe("sending.requireVerifiedDomains as policy", () => {
  const identities = {
    domains: new Set(["new.example", "ok.example"]),
    addresses: new Set(["solo@new.example"]),
  };
  const statuses = new Map([
    ["new.example", "unverified" as const],
    ["ok.example", "verified" as const],
    ["shaky.example", "failing" as const],
  ]);
  it("refuses an unverified domain with 550 5.7.1 naming the fix", () => {
    assert.deepEqual(checkDomainsVerified(identities, statuses, ["ok.example@x", "app@New.Example"]), {
      kind: "reject",
      smtpCode: 550,
      enhancedCode: "5.7.1",
      message:
        "Sender domain new.example is not verified: the Petrel operator must publish its DNS records and run: petrel domains verify new.example",
      reason: "sender domain new.example of app@New.Example is not verified",
    });
  });
  it("lets verified and failing domains, single senders and other addresses through", () => {
    for (const address of ["a@ok.example", "a@shaky.example", "solo@new.example", "x@elsewhere.example"]) {
      assert.equal(checkDomainsVerified(identities, statuses, [address]).kind, "accept", address);
    }
  });
});

describe("sender-domain configuration", () => {
  it("has defaults, environment overrides and validation", () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.sending.requireVerifiedDomains, true);
    assert.deepEqual(config.dkim, { ed25519: false, selectorPrefix: "petrel" });
    assert.equal(config.domains.returnPath.subdomain, "bounces");
    assert.equal(config.domains.recheckIntervalMs, 86_400_000);
    const env = loadConfig({
      env: { PETREL_DKIM__ED25519: "true", PETREL_SENDING__REQUIRE_VERIFIED_DOMAINS: "false" },
    });
    assert.equal(env.dkim.ed25519, true);
    assert.equal(env.sending.requireVerifiedDomains, false);
    assert.throws(
      () => loadConfig({ env: { PETREL_DKIM__SELECTOR_PREFIX: "Bad Prefix" } }),
      /dkim\.selectorPrefix/,
    );
    assert.throws(
      () => loadConfig({ env: { PETREL_DOMAINS__SPF__IPS: "[not-an-ip]" } }),
      /domains\.spf\.ips\.0/,
    );
  });
});

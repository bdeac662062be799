/**
 * Sender domains and DKIM end to end (issue 4), with the real `petrel` binary: the operator's
 * commands (`domains add --format json`, `verify`, `rotate-dkim`), a real DNS server on loopback
 * serving the records `add` printed, `petrel serve` with sending.requireVerifiedDomains on and
 * delivery to a test MX, Nodemailer's SMTP client, and two independent verifiers (dkimpy, mailauth):
 * - an unverified domain is refused at MAIL FROM with the exact reply, and in From at DATA;
 * - a verified domain's message is stored signed with d= the From domain and verifies, and still
 *   verifies as the receiving MX got it (nothing after signing changes it);
 * - Ed25519 beside RSA; a single sender is accepted unsigned;
 * - rotation: the old selector signs until `verify` sees the new record, then the new one;
 * - serve's periodic re-check logs and records a domain that stops matching;
 * - issue 13 item 7: a verified domain whose key cannot be loaded gets 451 4.3.0 at the end of a
 *   real submission, an error log naming the domain, the refusal in /metrics, and nothing stored.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { stringify } from "yaml";
import type { DnsRecordSpec } from "../src/dkim/records.js";
import type { Store } from "../src/store/types.js";
import { verifyBoth } from "./support/dkim-verifiers.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { publishRecords } from "./support/domain-zone.js";
import {
  type PetrelProcess,
  petrelCli,
  petrelOk,
  removeDataDir,
  startPetrel,
  tempDataDir,
  testConfig,
} from "./support/petrel-process.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";
import { openTestSql, openTestStore } from "./support/test-store.js";
import { waitFor } from "./support/wait.js";

let dns: TestDnsServer;
let mx: TestMx;

/** The configuration both the CLI and serve use: loopback DNS, SPF addresses, this test's MX. */
function domainConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    dns: { servers: [dns.server], timeoutMs: 5000, tries: 2 },
    sending: { requireVerifiedDomains: true },
    domains: { spf: { ips: ["127.0.0.1"] }, recheckIntervalMs: 0 },
    delivery: { enabled: true, port: mx.port, pollIntervalMs: 20, idleTimeoutMs: 500 },
    ...extra,
  };
}

/** Runs `petrel` with the test's configuration file. */
function cli(dataDir: string, args: readonly string[], env: NodeJS.ProcessEnv = {}) {
  return petrelCli(dataDir, [...args, "--config", join(dataDir, "cli.yaml")], env);
}

async function cliOk(dataDir: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const result = await cli(dataDir, args, env);
  assert.equal(result.code, 0, `petrel ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

/** `domains add --format json`, published in the loopback DNS, then `domains verify`. */
async function addVerified(
  dataDir: string,
  domain: string,
  env: NodeJS.ProcessEnv = {},
): Promise<DnsRecordSpec[]> {
  const records = JSON.parse(await cliOk(dataDir, ["domains", "add", domain, "--format", "json"], env));
  publishRecords(dns, records);
  assert.match(
    await cliOk(dataDir, ["domains", "verify", domain]),
    new RegExp(`${domain}: verified \\(was unverified\\)`),
  );
  return records;
}

function message(from: string, subject: string, extra = ""): Buffer {
  return Buffer.from(
    `From: App <${from}>\r\nTo: user@example.com\r\nSubject: ${subject}\r\n${extra}` +
      `MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello — ${subject}.\r\n`,
  );
}

before(async () => {
  mx = await startTestMx({ address: "127.0.0.2" });
  dns = await startDnsServer({
    "example.com": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
    "mx.example.com": { A: ["127.0.0.2"] },
  });
});

after(async () => {
  await mx.close();
  await dns.close();
});

describe("sender domains and DKIM through petrel serve", () => {
  let dataDir: string;
  let petrel: PetrelProcess;
  let store: Store;
  let key: string;
  let ca: Buffer;

  before(async () => {
    dataDir = tempDataDir("petrel-dkim-");
    writeFileSync(join(dataDir, "cli.yaml"), stringify(testConfig(dataDir, domainConfig())));
    key = (await cliOk(dataDir, ["keys", "create", "--name", "dkim"])).trim();
    await addVerified(dataDir, "signed.example");
    await addVerified(dataDir, "both.example", { PETREL_DKIM__ED25519: "true" });
    await addVerified(dataDir, "broken.example");
    await cliOk(dataDir, ["domains", "add", "pending.example"]);
    await cliOk(dataDir, ["senders", "add", "solo@single.example"]);
    petrel = await startPetrel(dataDir, {
      config: domainConfig({ http: { metricsNetworks: ["127.0.0.1/32"] } }),
    });
    store = await openTestStore(dataDir);
    ca = readFileSync(petrel.caFile);
  });

  after(async () => {
    await store.close();
    await petrel.stop();
    removeDataDir(dataDir);
  });

  /** One message over STARTTLS with AUTH (Nodemailer's client): "250 …", or "<command>: <reply>". */
  async function send(from: string, content: Buffer): Promise<string> {
    const connection = new SMTPConnection({
      host: "127.0.0.1",
      port: petrel.ports.submission!,
      requireTLS: true,
      tls: { ca, servername: "localhost" },
    });
    try {
      await new Promise<void>((resolve, reject) =>
        connection.connect((err) => (err ? reject(err) : resolve())),
      );
      await new Promise<void>((resolve, reject) =>
        connection.login({ user: "apikey", pass: key }, (err) => (err ? reject(err) : resolve())),
      );
      return await new Promise<string>((resolve) =>
        connection.send({ from, to: ["user@example.com"] }, content, (err, info) =>
          resolve(
            err
              ? `${(err as { command?: string }).command}: ${(err as { response?: string }).response}`
              : info.response,
          ),
        ),
      );
    } finally {
      connection.close();
    }
  }

  /** Submits; returns the stored content and what the MX received. */
  async function submit(from: string, content: Buffer): Promise<{ stored: Buffer; delivered: Buffer }> {
    const count = mx.messages.length;
    const reply = await send(from, content);
    assert.match(reply, /^250 /);
    const id = /queued as (\S+)/.exec(reply)![1]!;
    const stored = (await store.getMessageContent(id))!;
    await mx.waitForMessages(count + 1);
    const delivered = mx.messages.find((m) => m.content.includes(`id ${id}`))!.content;
    return { stored, delivered };
  }

  it("refuses an added but unverified domain at MAIL FROM with the exact reply", async () => {
    assert.equal(
      await send("app@pending.example", message("app@pending.example", "x")),
      "MAIL FROM: 550 5.7.1 Sender domain pending.example is not verified: the Petrel operator must publish its DNS records and run: petrel domains verify pending.example",
    );
    // The same rule for the From header, at the end of DATA.
    assert.match(
      await send("app@signed.example", message("app@pending.example", "x")),
      /^DATA: 550 5\.7\.1 Sender domain pending\.example is not verified/,
    );
  });

  it("signs a verified domain's message with d= the From domain; it verifies stored and delivered", async () => {
    const { stored, delivered } = await submit(
      "app@signed.example",
      message("app@signed.example", "signed", "List-Unsubscribe: <https://signed.example/u>\r\n"),
    );
    assert.match(
      stored.toString("latin1"),
      /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=signed\.example;/,
    );
    const h = /h=([^;]+);/.exec(stored.toString("latin1").replace(/\r\n\s+/g, ""))![1]!;
    assert.deepEqual(h.split(":").slice(0, 2), ["From", "From"], "From oversigned");
    assert.ok(h.includes("List-Unsubscribe"));
    const expected = [{ result: "pass", domain: "signed.example", selector: "petrel1" }];
    for (const [where, content] of [
      ["stored", stored],
      ["delivered", delivered],
    ] as const) {
      assert.deepEqual(await verifyBoth(dns, content), { dkimpy: expected, mailauth: expected }, where);
    }
  });

  it("signs with RSA and Ed25519 when the domain has both keys", async () => {
    const { delivered } = await submit("app@both.example", message("app@both.example", "both"));
    const expected = [
      { result: "pass", domain: "both.example", selector: "petrel1" },
      { result: "pass", domain: "both.example", selector: "petrel1-ed25519" },
    ];
    assert.deepEqual(await verifyBoth(dns, delivered), { dkimpy: expected, mailauth: expected });
  });

  it("answers 451 4.3.0 for a verified domain whose key cannot be loaded: logged, counted, nothing kept", async () => {
    // The key as a damaged database or a bad restore would leave it: no longer a PEM key.
    const db = await openTestSql(dataDir);
    try {
      const changed = await db.run(
        "UPDATE dkim_keys SET private_key = 'not a key' WHERE domain_id = (SELECT id FROM sender_domains WHERE domain = ?)",
        ["broken.example"],
      );
      assert.ok(changed > 0, "the domain has a key");
    } finally {
      await db.close();
    }
    const metric = async (): Promise<number> => {
      const response = await fetch(`http://127.0.0.1:${petrel.ports.http}/metrics`);
      assert.equal(response.status, 200);
      const line = /^petrel_dkim_signing_refused_total (\d+)$/m.exec(await response.text());
      assert.ok(line, "the metric is exported");
      return Number(line[1]);
    };
    const refusedBefore = await metric();
    const storedBefore = (await store.listMessages({ limit: 100_000 })).length;
    const reply = await send("app@broken.example", message("app@broken.example", "broken key"));
    assert.match(reply, /^DATA: 451 4\.3\.0 /);
    assert.equal(await metric(), refusedBefore + 1);
    assert.equal((await store.listMessages({ limit: 100_000 })).length, storedBefore, "nothing kept");
    // The server's log reaches this process through a pipe, possibly after the reply (CI saw the
    // check run before the line arrived): wait for it, then check there is exactly one.
    const refusals = () =>
      petrel
        .logRecords()
        .filter(
          (r) => r.level === 50 && r.domain === "broken.example" && /DKIM signing failed/.test(String(r.msg)),
        );
    await waitFor(() => refusals().length > 0, {
      what: "the error log naming the domain",
      timeoutMs: 10_000,
    });
    const logged = refusals();
    assert.equal(logged.length, 1, "one error log naming the domain");
    assert.match(String(logged[0]!.msg), /broken\.example: message refused with 451 4\.3\.0/);
    assert.doesNotMatch(JSON.stringify(logged[0]), /not a key/, "the key is never logged");
    // Another verified domain still signs.
    const { stored } = await submit("app@signed.example", message("app@signed.example", "still signed"));
    assert.match(stored.toString("latin1"), /^DKIM-Signature: .*d=signed\.example;/);
  });

  it("accepts a single sender without DNS, unsigned", async () => {
    const { stored } = await submit("solo@single.example", message("solo@single.example", "solo"));
    assert.ok(!stored.includes("DKIM-Signature"));
  });

  it("keeps signing with the old selector until verify sees the new record, then switches", async () => {
    const rotated: DnsRecordSpec[] = JSON.parse(
      await cliOk(dataDir, ["domains", "rotate-dkim", "signed.example", "--format", "json"]),
    );
    assert.deepEqual(
      rotated.map((r) => r.name),
      ["petrel2._domainkey.signed.example"],
    );
    const selectorOf = (m: Buffer) => /\bs=([^;]+);/.exec(m.toString("latin1"))![1];
    const before = await submit("app@signed.example", message("app@signed.example", "before"));
    assert.equal(selectorOf(before.stored), "petrel1");

    // Not published yet: verify reports the pending record and nothing switches.
    const waiting = await cliOk(dataDir, ["domains", "verify", "signed.example"]);
    assert.match(waiting, /missing\s+dkim \(advice\)\s+TXT\s+petrel2\._domainkey\.signed\.example/);
    assert.equal(
      selectorOf((await submit("app@signed.example", message("app@signed.example", "still"))).stored),
      "petrel1",
    );

    publishRecords(dns, rotated);
    const switched = await cliOk(dataDir, ["domains", "verify", "signed.example"]);
    assert.match(switched, /Now signing with petrel2; petrel1 retired/);
    const after = await submit("app@signed.example", message("app@signed.example", "after"));
    assert.equal(selectorOf(after.stored), "petrel2");
    const expected = [{ result: "pass", domain: "signed.example", selector: "petrel2" }];
    assert.deepEqual(await verifyBoth(dns, after.delivered), { dkimpy: expected, mailauth: expected });

    const list = JSON.parse(await cliOk(dataDir, ["domains", "list", "--json"]));
    const signed = list.find((d: { domain: string }) => d.domain === "signed.example");
    assert.equal(signed.status, "verified");
    assert.deepEqual(
      signed.keys.map((k: { selector: string; state: string }) => [k.selector, k.state]),
      [
        ["petrel1", "retired"],
        ["petrel2", "active"],
      ],
    );
    assert.ok(!JSON.stringify(list).includes("PRIVATE KEY"), "no private key in list output");
  });
});

describe("periodic re-check in petrel serve", () => {
  it("logs and records a verified domain that stops matching", async () => {
    const dataDir = tempDataDir("petrel-recheck-");
    const config = domainConfig({
      domains: { spf: { ips: ["127.0.0.1"] }, recheckIntervalMs: 300 },
      delivery: { enabled: false },
    });
    writeFileSync(join(dataDir, "cli.yaml"), stringify(testConfig(dataDir, config)));
    await addVerified(dataDir, "recheck.example");
    const petrel = await startPetrel(dataDir, { config });
    try {
      dns.remove("bounces.recheck.example");
      const deadline = Date.now() + 10_000;
      let line: Record<string, unknown> | undefined;
      while (!line && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        line = petrel.logRecords().find((l) => l.msg === "sender domain stopped matching its DNS records");
      }
      assert.ok(line, "log line");
      assert.equal(line.domain, "recheck.example");
      assert.deepEqual(line.failed, [
        "return-path-mx bounces.recheck.example: missing",
        "return-path-spf bounces.recheck.example: missing",
      ]);
      const shown = JSON.parse(await petrelOk(dataDir, ["domains", "show", "recheck.example", "--json"]));
      assert.equal(shown.status, "failing");
      assert.equal(shown.events[0].toStatus, "failing");
      assert.match(shown.events[0].detail, /verified → failing/);
      const list = await petrelOk(dataDir, ["domains", "list"]);
      assert.match(list, /recheck\.example\s+default\s+failing\s+petrel1\s+\d{4}-/);
    } finally {
      await petrel.stop();
      removeDataDir(dataDir);
    }
  });
});

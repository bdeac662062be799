/**
 * Internationalised domains end to end (issue 11), with the real `petrel` binary, a loopback DNS
 * server and a test MX: `senders add 用户@例子.测试` and `domains add 例子.测试` are accepted,
 * stored in one canonical form (A-labels, NFC local part) and shown as U-labels; the DNS records
 * are printed for the A-label and verification looks there; mail from the U-label address is
 * accepted and DKIM-signed with d= the A-label (verified by dkimpy as delivered); a recipient
 * written with U-labels is stored and delivered under its A-label.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import type { DnsRecordSpec } from "../src/dkim/records.js";
import { dkimpyVerify } from "./support/dkim-verifiers.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { publishRecords } from "./support/domain-zone.js";
import {
  type PetrelProcess,
  petrelCli,
  startPetrel,
  tempDataDir,
  testConfig,
} from "./support/petrel-process.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";

const U_DOMAIN = "例子.测试";
const A_DOMAIN = "xn--fsqu00a.xn--0zwm56d";

let dns: TestDnsServer;
let mx: TestMx;

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

before(async () => {
  mx = await startTestMx({ address: "127.0.0.2" });
  dns = await startDnsServer({
    "example.com": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
    // A recipient domain written with U-labels by the app: only its A-label exists in DNS.
    "xn--bcher-kva.example": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
    "mx.example.com": { A: ["127.0.0.2"] },
  });
});

after(async () => {
  await mx.close();
  await dns.close();
});

describe("internationalised domains", () => {
  let dataDir: string;
  let petrel: PetrelProcess;
  let key: string;
  const config = () => ({
    dns: { servers: [dns.server], timeoutMs: 500, tries: 1 },
    domains: { spf: { ips: ["127.0.0.1"] }, recheckIntervalMs: 0 },
    delivery: { enabled: true, port: mx.port, pollIntervalMs: 20, idleTimeoutMs: 500 },
  });

  async function cli(args: string[]) {
    return petrelCli(dataDir, [...args, "--config", join(dataDir, "cli.yaml")]);
  }
  async function cliOk(args: string[]): Promise<string> {
    const result = await cli(args);
    assert.equal(result.code, 0, `petrel ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  }

  before(async () => {
    dataDir = tempDataDir("petrel-idn-");
    writeFileSync(join(dataDir, "cli.yaml"), stringify(testConfig(dataDir, config())));
    key = (await cliOk(["keys", "create", "--name", "idn"])).trim();
  });

  after(async () => {
    await petrel?.stop();
  });

  it("adds a single sender written with U-labels; stores A-labels with an NFC local part, shows U-labels", async () => {
    // "ü" as u + combining diaeresis (NFD): stored as the one code point (NFC).
    const nfd = "mu\u0308ller@bücher.example";
    assert.equal(
      await cliOk(["senders", "add", "用户@例子.测试"]),
      "Added sender 用户@例子.测试 to account default\n",
    );
    assert.equal(
      await cliOk(["senders", "add", nfd]),
      "Added sender m\u00fcller@bücher.example to account default\n",
    );
    const list = JSON.parse(await cliOk(["senders", "list", "--json"])) as Array<{ address: string }>;
    assert.deepEqual(list.map((s) => s.address).sort(), [
      `m\u00fcller@xn--bcher-kva.example`,
      `用户@${A_DOMAIN}`,
    ]);
    const table = await cliOk(["senders", "list"]);
    assert.match(table, /用户@例子\.测试/);
    assert.doesNotMatch(table, /xn--/);
    // The same sender in its A-label form is the same sender.
    const again = await cli(["senders", "add", `用户@${A_DOMAIN}`]);
    assert.notEqual(again.code, 0);
    // Removing by the U-label form finds it.
    assert.equal((await cli(["senders", "remove", "m\u00fcller@BÜCHER.example"])).code, 0);
    // Not a domain at all, in any script.
    const bad = await cli(["senders", "add", "a@xn--zz.example"]);
    assert.match(bad.stderr, /not a valid domain name/);
  });

  it("adds a domain written with U-labels; records are for the A-label, verification looks there", async () => {
    const text = await cliOk(["domains", "add", U_DOMAIN]);
    assert.match(text, new RegExp(`Added domain ${U_DOMAIN} \\(${A_DOMAIN}\\) to account default`));
    assert.match(text, new RegExp(`petrel1\\._domainkey\\.${A_DOMAIN.replace(/\./g, "\\.")}`));
    assert.match(text, new RegExp(`Then run: petrel domains verify ${U_DOMAIN}`));
    const records = JSON.parse(
      await cliOk(["domains", "records", U_DOMAIN, "--format", "json"]),
    ) as DnsRecordSpec[];
    assert.ok(records.length > 0);
    for (const r of records) assert.ok(r.name.endsWith(A_DOMAIN), r.name);
    publishRecords(dns, records);
    assert.match(
      await cliOk(["domains", "verify", U_DOMAIN]),
      new RegExp(`${U_DOMAIN} \\(${A_DOMAIN}\\): verified`),
    );
    // DNS was asked for the A-label only.
    assert.ok(dns.queriesFor(`petrel1._domainkey.${A_DOMAIN}`, "TXT").length > 0);
    const listed = await cliOk(["domains", "list"]);
    assert.match(listed, new RegExp(`${U_DOMAIN}\\s+default\\s+verified`));
    const json = JSON.parse(await cliOk(["domains", "list", "--json"])) as Array<{ domain: string }>;
    assert.deepEqual(
      json.map((d) => d.domain),
      [A_DOMAIN],
    );
    // The A-label form names the same domain.
    assert.notEqual((await cli(["domains", "add", A_DOMAIN.toUpperCase()])).code, 0);
  });

  it("accepts and signs mail from the U-label address; a U-label recipient is delivered at its A-label", async () => {
    petrel = await startPetrel(dataDir, { config: config() });
    const script = join(dataDir, "send.py");
    writeFileSync(
      script,
      `import smtplib
from email.message import EmailMessage
from email import policy
for sender in ["用户@例子.测试", "app@例子.测试"]:
    message = EmailMessage(policy=policy.SMTPUTF8)
    message["Subject"] = "IDN"; message["From"] = sender; message["To"] = "user@bücher.example"
    message.set_content("Hello")
    context = smtplib.ssl.create_default_context(cafile=${JSON.stringify(petrel.caFile)})
    with smtplib.SMTP("127.0.0.1", ${petrel.ports.submission}) as server:
        server.starttls(context=context)
        server.login("apikey", ${JSON.stringify(key)})
        server.sendmail(sender, ["user@bücher.example", "friend@example.com"], message.as_bytes(), mail_options=["SMTPUTF8"])
print("ok")
`,
    );
    const before = mx.messages.length;
    const result = await run("/usr/bin/python3", [script]);
    assert.equal(result.code, 0, result.stderr);
    await mx.waitForMessages(before + 4);
    const received = mx.messages.slice(before);
    // smtp-server (the test MX) shows domains as U-labels whatever was sent; that the mail arrived
    // at all shows the A-label was used: only xn--bcher-kva.example has an MX record.
    const atIdn = received.filter((m) => m.to.includes("user@bücher.example"));
    assert.equal(atIdn.length, 2, "the U-label recipient is delivered");
    assert.ok(dns.queriesFor("xn--bcher-kva.example", "MX").length > 0);
    assert.equal(dns.queriesFor("bücher.example", "MX").length, 0);
    const verdicts = await dkimpyVerify(
      dns.port,
      received.map((m) => m.content),
    );
    for (const v of verdicts)
      assert.deepEqual(v, [{ result: "pass", domain: A_DOMAIN, selector: "petrel1" }]);
    // An ASCII local part at a U-label domain: the envelope becomes ASCII, so the From field's
    // domain is written with A-labels too and the message needs no SMTPUTF8 downstream.
    const ascii = received.find((m) => m.content.includes(`From: app@${A_DOMAIN}`));
    assert.ok(ascii, "From rewritten with the A-label");
    const header = ascii.content.subarray(0, ascii.content.indexOf("\r\n\r\n"));
    assert.ok(!header.some((b) => b > 0x7f));
    const queued = petrel.logRecords().filter((r) => r.msg === "queued");
    const detail = JSON.parse(await cliOk(["queue", "show", String(queued[0]!.queueId), "--json"]));
    assert.equal(detail.mailFrom, `用户@${A_DOMAIN}`);
    assert.deepEqual([...detail.recipients].sort(), ["friend@example.com", "user@xn--bcher-kva.example"]);
  });
});

/**
 * VERP return paths and the bounce listener end to end, through the real `petrel serve` with a
 * verified sender domain (records published in a loopback DNS server, `petrel domains verify`),
 * delivery to a test MX on loopback, and the listener on an ephemeral loopback port:
 * - a verified domain's mail leaves with b+<token>@bounces.<domain>; a single sender keeps its own;
 * - an asynchronous DSN (the shared Gmail sample, its recipient lines adapted to a message Petrel
 *   really sent) for a delivered recipient → `bounce` event tied to that message and recipient,
 *   state bounced, suppressed; the same DSN again changes nothing;
 * - an ARF report (the shared Yahoo-style sample) → `spamreport`, suppressed, still delivered;
 * - a forged token, a token for a recipient that does not exist, and non-token addresses → 550
 *   5.1.1 at RCPT, nothing changed and nothing relayed; no AUTH offered;
 * - bounces.notifySender: a bounce sends an RFC 3464 DSN from <> to the sender; a DSN that
 *   bounces itself gets none (no loops).
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { parseReport } from "../src/bounces/report.js";
import { VerpCodec } from "../src/bounces/verp.js";
import type { PetrelEvent, Store } from "../src/store/types.js";
import { SAMPLES } from "./support/bounce-samples.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { publishRecords } from "./support/domain-zone.js";
import { waitUntil } from "./support/events-rig.js";
import {
  type PetrelProcess,
  petrelCli,
  removeDataDir,
  startPetrel,
  tempDataDir,
  testConfig,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";
import { openTestStore } from "./support/test-store.js";

const DOMAIN = "app.example";
const VERP = /^b\+([0-9a-z]{26})-([0-9a-z]+)-([0-9a-z]{16})@bounces\.app\.example$/;

describe("VERP return paths and the bounce listener", () => {
  let mx: TestMx;
  let dns: TestDnsServer;
  let dataDir: string;
  let petrel: PetrelProcess;
  let store: Store;
  let n = 0;

  const config = () => ({
    auth: { trustedNetworks: [{ network: "127.0.0.1/32", account: "default" }] },
    dns: { servers: [dns.server], timeoutMs: 5000, tries: 2 },
    sending: { requireVerifiedDomains: true },
    domains: { spf: { ips: ["127.0.0.1"] }, recheckIntervalMs: 0 },
    delivery: { enabled: true, port: mx.port, pollIntervalMs: 20, idleTimeoutMs: 500, retryJitter: 0 },
    bounces: { notifySender: true },
  });

  async function cliOk(args: readonly string[]): Promise<string> {
    const result = await petrelCli(dataDir, [...args, "--config", join(dataDir, "cli.yaml")]);
    assert.equal(result.code, 0, `petrel ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  }

  /** Submits one message; returns its queue id. */
  async function submit(from: string, to: string): Promise<string> {
    const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
    try {
      const reply = await session.send({
        from,
        to: [to],
        content: Buffer.from(
          `From: ${from}\r\nTo: ${to}\r\nSubject: listener ${++n}\r\nMessage-ID: <listener-${n}@${DOMAIN}>\r\n\r\nHello\r\n`,
        ),
      });
      const id = /queued as ([0-9A-Z]{26})/.exec(reply.text)?.[1];
      assert.ok(reply.code === 250 && id, `${reply.code} ${reply.text}`);
      return id;
    } finally {
      await session.quit();
    }
  }

  /** Submits and waits until the MX has it; returns the queue id and the envelope sender it saw. */
  async function deliver(from: string, to: string): Promise<{ id: string; returnPath: string }> {
    const before = mx.messages.length;
    const id = await submit(from, to);
    await waitUntil(() => mx.messages.slice(before).some((m) => m.to.includes(to)), `delivery to ${to}`);
    await waitUntil(
      async () => (await store.getMessage(id))?.recipientDetails[0]?.state === "delivered",
      "delivered",
    );
    return { id, returnPath: mx.messages.slice(before).find((m) => m.to.includes(to))!.from };
  }

  /** One SMTP transaction with the bounce listener: every reply, in order. */
  async function report(rcpts: readonly string[], content: string, from = ""): Promise<string[]> {
    const session = await RawSmtpSession.open({ port: petrel.ports.bounces! });
    const replies: string[] = [];
    try {
      const say = async (line: string) => {
        const r = await session.command(line);
        replies.push(`${r.code} ${r.text}`);
        return r.code;
      };
      await say(`MAIL FROM:<${from}>`);
      let accepted = 0;
      for (const rcpt of rcpts) if ((await say(`RCPT TO:<${rcpt}>`)) === 250) accepted++;
      if (accepted > 0 && (await say("DATA")) === 354) {
        const body = content.replace(/\r?\n/g, "\r\n").replace(/^\./gm, "..");
        await session.command(`${body.endsWith("\r\n") ? body : `${body}\r\n`}.`).then((r) => {
          replies.push(`${r.code} ${r.text}`);
        });
      }
      return replies;
    } finally {
      await session.quit();
    }
  }

  async function events(messageId: string): Promise<PetrelEvent[]> {
    return store.listEvents({ messageId });
  }

  before(async () => {
    mx = await startTestMx({ address: "127.0.0.2" });
    dns = await startDnsServer({
      "example.com": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
      "mx.example.com": { A: ["127.0.0.2"] },
    });
    dataDir = tempDataDir("petrel-bounces-");
    writeFileSync(join(dataDir, "cli.yaml"), stringify(testConfig(dataDir, config())));
    const records = JSON.parse(await cliOk(["domains", "add", DOMAIN, "--format", "json"]));
    publishRecords(dns, records);
    assert.match(await cliOk(["domains", "verify", DOMAIN]), /verified/);
    // The sender domain's own MX, for the DSNs Petrel sends back to its senders.
    dns.set(DOMAIN, { MX: [{ preference: 10, exchange: "mx.example.com" }] });
    await cliOk(["senders", "add", "solo@single.example"]);
    petrel = await startPetrel(dataDir, { config: config() });
    assert.ok(petrel.ports.bounces, "the bounce listener runs");
    store = await openTestStore(dataDir);
  });

  after(async () => {
    await store?.close();
    await petrel?.stop();
    await mx.close();
    await dns.close();
    removeDataDir(dataDir);
  });

  it("sends a verified domain's mail with a VERP return path; a single sender keeps its address", async () => {
    const verp = await deliver(`app@${DOMAIN}`, "one@example.com");
    const m = VERP.exec(verp.returnPath);
    assert.ok(m, verp.returnPath);
    assert.equal(m[1]!.toUpperCase(), verp.id, "the token names the message");
    assert.ok(verp.returnPath.split("@")[0]!.length <= 64);
    const solo = await deliver("solo@single.example", "two@example.com");
    assert.equal(solo.returnPath, "solo@single.example");
  });

  it("turns an asynchronous DSN into a bounce of the right message and recipient, once", async () => {
    const { id, returnPath } = await deliver(`app@${DOMAIN}`, "late@example.com");
    const other = await deliver(`app@${DOMAIN}`, "late@example.com");
    // The Gmail sample, about the recipient and message Petrel really sent.
    const dsn = readFileSync(resolve(SAMPLES, "dsn/gmail-550-5.1.1-nosuchuser.eml"), "utf8")
      .replace(/kijitora@(?:gmail\.com|example\.org)/g, "late@example.com")
      .replace(/<ffffff-eeeeee-22@neko\.example\.com>/, `<listener-${n - 1}@${DOMAIN}>`);
    const replies = await report([returnPath], dsn);
    assert.deepEqual(replies.slice(0, 2), ["250 2.1.0 Ok", "250 2.1.5 Ok"]);
    assert.match(replies.at(-1)!, /^250 2\.0\.0 /);

    let bounce: PetrelEvent | undefined;
    await waitUntil(async () => {
      bounce = (await events(id)).find((e) => e.type === "bounce");
      return bounce !== undefined;
    }, "the bounce event");
    assert.equal(bounce!.recipient, "late@example.com");
    assert.equal(bounce!.bounceClass, "invalid-recipient");
    assert.equal(bounce!.bounceHard, true);
    assert.equal(bounce!.enhancedCode, "5.1.1");
    assert.equal(bounce!.mxHost, "gmail-smtp-in.l.google.com");
    assert.equal((await store.getMessage(id))!.recipientDetails[0]!.state, "bounced");
    const account = (await store.getAccount("default"))!;
    assert.equal((await store.findSuppression(account.id, "late@example.com"))?.eventId, bounce!.id);
    // The other message to the same address is untouched: the token named this one.
    assert.equal((await store.getMessage(other.id))!.recipientDetails[0]!.state, "delivered");
    assert.equal((await events(other.id)).filter((e) => e.type === "bounce").length, 0);

    // The same DSN again: accepted, nothing changes.
    const again = await report([returnPath], dsn);
    assert.match(again.at(-1)!, /^250 /);
    assert.equal((await events(id)).filter((e) => e.type === "bounce").length, 1);
  });

  it("turns an ARF complaint into a spamreport and a suppression; the recipient stays delivered", async () => {
    const { id, returnPath } = await deliver(`app@${DOMAIN}`, "complainer@example.com");
    const arf = readFileSync(resolve(SAMPLES, "arf/yahoo-style-fbl-abuse.eml"), "utf8")
      .replace(/user@example\.com/g, "complainer@example.com")
      .replace(/test1@example\.com/g, `app@${DOMAIN}`);
    const replies = await report([returnPath], arf, "fbl@feedback.example");
    assert.match(replies.at(-1)!, /^250 /);
    let complaint: PetrelEvent | undefined;
    await waitUntil(async () => {
      complaint = (await events(id)).find((e) => e.type === "spamreport");
      return complaint !== undefined;
    }, "the spamreport event");
    assert.equal(complaint!.recipient, "complainer@example.com");
    assert.equal(complaint!.reason, "abuse");
    const account = (await store.getAccount("default"))!;
    const suppression = await store.findSuppression(account.id, "complainer@example.com");
    assert.deepEqual([suppression?.reason, suppression?.eventId], ["spamreport", complaint!.id]);
    assert.equal((await store.getMessage(id))!.recipientDetails[0]!.state, "delivered");
  });

  it("refuses forged and unknown tokens and other addresses with 550, changing nothing and relaying nothing", async () => {
    const { id, returnPath } = await deliver(`app@${DOMAIN}`, "safe@example.com");
    const m = VERP.exec(returnPath)!;
    const forgedMac = returnPath.replace(
      m[3]!,
      m[3]!.replace(/.$/, (c) => (c === "a" ? "b" : "a")),
    );
    const otherRecipient = returnPath.replace(
      `-${m[2]}-`,
      `-${(Number.parseInt(m[2]!, 36) + 1).toString(36)}-`,
    );
    // A correctly signed token for a recipient that does not exist (made with the node's key).
    const secret = (await store.nodeSecret("verp-key", () => assert.fail("the key exists"))) as string;
    const unknown = new VerpCodec(Buffer.from(secret, "base64")).address(id, 999_999, `bounces.${DOMAIN}`);
    const before = { events: (await store.listEvents({ limit: 100_000 })).length, mx: mx.messages.length };
    const dsn = readFileSync(resolve(SAMPLES, "dsn/gmail-550-5.1.1-nosuchuser.eml"), "utf8").replace(
      /kijitora@(?:gmail\.com|example\.org)/g,
      "safe@example.com",
    );
    for (const rcpt of [
      forgedMac,
      otherRecipient,
      unknown,
      "safe@example.com",
      `postmaster@bounces.${DOMAIN}`,
      "b+@x.example",
    ]) {
      const replies = await report([rcpt], dsn);
      assert.deepEqual(replies, ["250 2.1.0 Ok", "550 5.1.1 No such user here"], rcpt);
    }
    // No AUTH on an MX, not even after STARTTLS would be offered.
    const session = await RawSmtpSession.open({ port: petrel.ports.bounces! });
    try {
      const ehlo = await session.command("EHLO probe.example");
      assert.doesNotMatch(ehlo.text, /AUTH/);
      assert.equal((await session.command("AUTH PLAIN AGFwaWtleQBzZWNyZXQ=")).code, 502);
    } finally {
      await session.quit();
    }
    assert.equal((await store.getMessage(id))!.recipientDetails[0]!.state, "delivered");
    assert.equal((await store.listEvents({ limit: 100_000 })).length, before.events, "no event written");
    assert.equal(mx.messages.length, before.mx, "nothing relayed");
  });

  it("sends the sender an RFC 3464 DSN from <> when a recipient bounces, and never one about a DSN", async () => {
    const before = mx.messages.length;
    const id = await submit(`permfail@${DOMAIN}`, "permfail@example.com");
    // The DSN to permfail@app.example bounces in turn at the MX (permfail@ is refused there).
    let dsnId: string | undefined;
    await waitUntil(async () => {
      const list = await store.listMessages({ limit: 100_000 });
      dsnId = list.find((m) => m.mailFrom === "" && m.recipients.includes(`permfail@${DOMAIN}`))?.id;
      return dsnId !== undefined && (await events(dsnId)).some((e) => e.type === "bounce");
    }, "the DSN and its own bounce");
    const bounce = (await events(id)).find((e) => e.type === "bounce");
    assert.equal(bounce?.bounceClass, "invalid-recipient");
    // A DSN to a sender that accepts it: its content is a delivery report about the recipient.
    const okId = await submit(`app@${DOMAIN}`, "permfail+2@example.com");
    await waitUntil(
      () => mx.messages.slice(before).some((m) => m.from === "" && m.to.includes(`app@${DOMAIN}`)),
      "a DSN at the MX",
    );
    const delivered = mx.messages.slice(before).find((m) => m.from === "" && m.to.includes(`app@${DOMAIN}`))!;
    const parsed = await parseReport(delivered.content);
    assert.equal(parsed.kind, "dsn");
    if (parsed.kind === "dsn") {
      assert.equal(parsed.recipients[0]?.finalRecipient, "permfail+2@example.com");
      assert.equal(parsed.recipients[0]?.status, "5.1.1");
      assert.equal(parsed.recipients[0]?.action, "failed");
    }
    assert.match(delivered.content.toString(), new RegExp(`X-Petrel-Queue-ID: ${okId}`));
    // No notification about the notification that bounced (its bounce was committed long before
    // the second DSN was delivered): exactly one message from <> to permfail@.
    const fromNull = (await store.listMessages({ limit: 100_000 })).filter(
      (m) => m.mailFrom === "" && m.recipients.includes(`permfail@${DOMAIN}`),
    );
    assert.equal(fromNull.length, 1);
  });
});

describe("the bounce listener's port", () => {
  it("says in one warning line that it cannot listen, and serve runs on without it", async () => {
    const blocker = net.createServer();
    // Never keeps the test process alive, whatever happens below.
    blocker.unref();
    await new Promise<void>((done) => blocker.listen(0, "127.0.0.1", done));
    const port = (blocker.address() as net.AddressInfo).port;
    const dataDir = tempDataDir("petrel-bounces-port-");
    let petrel: PetrelProcess | undefined;
    try {
      petrel = await startPetrel(dataDir, { config: { bounces: { listener: { port } } } });
      assert.equal(petrel.ports.bounces, undefined);
      assert.ok(petrel.ports.submission, "submission listens");
      const warnings = petrel.logRecords().filter((r) => r.listener === "bounces" && r.level === 40);
      assert.equal(warnings.length, 1);
      assert.match(
        String(warnings[0]!.msg),
        new RegExp(
          `^bounce listener not started: cannot listen on 127\\.0\\.0\\.1:${port}: the port is already in use; .*bounces\\.listener\\.port`,
        ),
      );
    } finally {
      await petrel?.stop();
      blocker.close();
      removeDataDir(dataDir);
    }
  });
});

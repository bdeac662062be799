/**
 * Events end to end, through the real `petrel serve` and `petrel` commands, delivering to an MX on
 * loopback (DNS on loopback too) whose behaviour the test chooses:
 * - `452 4.2.2` then `250`: exactly one `deferred` (attempt 1, next attempt time, 4.2.2), then
 *   `delivered` (attempt 2); the sender's metadata and categories are in every event, in the
 *   store, on the webhook and in `petrel events tail`;
 * - invalid metadata is refused at the end of DATA with `550 5.6.0` and a precise text;
 * - metadata is removed before DKIM signing: the message the MX gets has neither field and its
 *   DKIM signature verifies;
 * - `events tail --follow` prints events as they happen; `webhooks test|list|remove`.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SMTPServer } from "smtp-server";
import { stringify } from "yaml";
import { mailauthVerify } from "./support/dkim-verifiers.js";
import type { TestDnsServer } from "./support/dns-server.js";
import { publishRecords } from "./support/domain-zone.js";
import {
  eventsConfig,
  readEvents,
  startZone,
  submitAll,
  testMessage,
  waitUntil,
} from "./support/events-rig.js";
import {
  PETREL_BIN,
  type PetrelProcess,
  petrelCli,
  removeDataDir,
  startPetrel,
  tempDataDir,
  testConfig,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";
import { storeEnvFor } from "./support/test-store.js";
import { signatureValid, startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.js";

const MX_ADDRESS = "127.0.0.6";

interface Received {
  readonly to: string[];
  readonly content: Buffer;
}

/** An MX that answers the first RCPT of each full-once@… address with 452 4.2.2, then accepts. */
async function startFussyMx(): Promise<{ port: number; messages: Received[]; close(): Promise<void> }> {
  const seen = new Set<string>();
  const messages: Received[] = [];
  const server = new SMTPServer({
    logger: false,
    disabledCommands: ["STARTTLS", "AUTH"],
    hideENHANCEDSTATUSCODES: true,
    onRcptTo(rcpt, _session, callback) {
      const address = rcpt.address.toLowerCase();
      if (address.startsWith("full-once") && !seen.has(address)) {
        seen.add(address);
        return callback(
          Object.assign(new Error("4.2.2 Mailbox full, try again later"), { responseCode: 452 }),
        );
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        messages.push({ to: session.envelope.rcptTo.map((r) => r.address), content: Buffer.concat(chunks) });
        callback(null, "2.0.0 Ok: queued");
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, MX_ADDRESS, resolve));
  return {
    port: (server.server.address() as { port: number }).port,
    messages,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("events end to end", () => {
  let dns: TestDnsServer;
  let mx: Awaited<ReturnType<typeof startFussyMx>>;
  let receiver: WebhookReceiver;
  let dataDir: string;
  let petrel: PetrelProcess;
  let secret: string;
  let config: Record<string, unknown>;

  const cli = (args: readonly string[]) =>
    petrelCli(dataDir, [...args, "--config", join(dataDir, "cli.yaml")]);
  const cliOk = async (args: readonly string[]) => {
    const result = await cli(args);
    assert.equal(result.code, 0, `petrel ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };

  before(async () => {
    mx = await startFussyMx();
    dns = await startZone(MX_ADDRESS);
    receiver = await startWebhookReceiver();
    dataDir = tempDataDir("petrel-events-");
    config = {
      ...eventsConfig(dns, mx.port, {}, { retrySchedule: [300] }),
      domains: { spf: { ips: ["127.0.0.1"] }, recheckIntervalMs: 0 },
    };
    writeFileSync(join(dataDir, "cli.yaml"), stringify(testConfig(dataDir, config)));
    await cliOk(["senders", "add", "app@events.example"]);
    const records = JSON.parse(await cliOk(["domains", "add", "signed.events.example", "--format", "json"]));
    publishRecords(dns, records);
    await cliOk(["domains", "verify", "signed.events.example"]);
    secret = (await cliOk(["webhooks", "add", receiver.url])).trim();
    petrel = await startPetrel(dataDir, { config });
  });

  after(async () => {
    await petrel.stop();
    await receiver.close();
    await mx.close();
    await dns.close();
    removeDataDir(dataDir);
  });

  it("452 4.2.2 then 250: one deferred, then delivered, each with the sender's metadata", async () => {
    const headers =
      'X-Petrel-Metadata: {"order": "A-17", "user": {"id": 42}}\r\nX-Petrel-Category: receipts, eu\r\n';
    const [id] = await submitAll(petrel.ports.submission!, [
      testMessage(1, "full-once@example.com", headers),
    ]);
    await waitUntil(
      async () => (await readEvents(dataDir, { messageId: id!, types: ["delivered"] })).length === 1,
      "delivery",
    );
    const events = await readEvents(dataDir, { messageId: id! });
    assert.deepEqual(
      events.map((e) => e.type),
      ["processed", "deferred", "delivered"],
    );
    const [processed, deferred, delivered] = events;
    assert.equal(deferred!.attempt, 1);
    assert.equal(deferred!.enhancedCode, "4.2.2");
    assert.match(deferred!.reply!, /^452 4\.2\.2 Mailbox full/);
    assert.equal(deferred!.mxHost, "mx.example.com");
    assert.equal(deferred!.ip, MX_ADDRESS);
    assert.ok(deferred!.nextAttemptAt! > processed!.timestamp, "the next attempt time");
    assert.ok(delivered!.timestamp >= deferred!.nextAttemptAt! - 50, "delivered at the retry");
    assert.equal(delivered!.attempt, 2);
    assert.equal(delivered!.enhancedCode, "2.0.0");
    for (const e of events) {
      assert.deepEqual(e.metadata, { order: "A-17", user: { id: 42 } });
      assert.deepEqual(e.categories, ["receipts", "eu"]);
      assert.equal(e.recipient, "full-once@example.com");
    }
    await receiver.waitFor(() => events.every((e) => receiver.distinct().has(e.id)), 60_000, "the webhook");
    for (const e of events) assert.deepEqual(receiver.distinct().get(e.id), e);
    for (const post of receiver.posts) assert.ok(signatureValid(secret, post.signature, post.body));

    const tailed = (await cliOk(["events", "tail", "--message", id!, "--json"]))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(tailed, events);
    const table = await cliOk([
      "events",
      "tail",
      "--type",
      "deferred",
      "--recipient",
      "full-once@example.com",
    ]);
    assert.match(
      table,
      new RegExp(`deferred\\s+${id}\\s+full-once@example\\.com\\s+attempt 1, next \\S+Z .*4\\.2\\.2`),
    );
    assert.match(table, /categories=receipts,eu metadata=\{"order":"A-17","user":\{"id":42\}\}/);
  });

  it("refuses invalid metadata at the end of DATA with 550 5.6.0 and keeps nothing", async () => {
    const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
    try {
      const bad = testMessage(2, "user@example.com", 'X-Petrel-Metadata: {"order": "A-18",}\r\n');
      const reply = await session.send(bad);
      assert.equal(reply.code, 550);
      assert.match(reply.text, /^5\.6\.0 X-Petrel-Metadata is not valid JSON \(at position \d+\)$/);
      const list = await session.send(testMessage(3, "user@example.com", "X-Petrel-Metadata: [1]\r\n"));
      assert.equal(list.code, 550);
      assert.equal(list.text, "5.6.0 X-Petrel-Metadata must be a JSON object");
      const ok = await session.send(testMessage(4, "user@example.com"));
      assert.equal(ok.code, 250, "the session goes on");
    } finally {
      session.destroy();
    }
  });

  it("removes the fields before DKIM signing: the MX gets neither, and the signature verifies", async () => {
    const message = {
      from: "app@signed.events.example",
      to: ["signed@example.com"],
      content: Buffer.from(
        "From: App <app@signed.events.example>\r\nTo: signed@example.com\r\nSubject: signed\r\n" +
          'X-Petrel-Metadata: {"k": 1}\r\nX-Petrel-Category: signed\r\nMIME-Version: 1.0\r\n\r\nSigned body\r\n',
      ),
    };
    const [id] = await submitAll(petrel.ports.submission!, [message]);
    const signedOne = () => mx.messages.find((m) => m.to.includes("signed@example.com"));
    await waitUntil(() => signedOne() !== undefined, "the signed message at the MX");
    const received = signedOne()!.content;
    const text = received.toString();
    assert.match(text, /^DKIM-Signature: /m);
    assert.doesNotMatch(text, /X-Petrel/i);
    const results = await mailauthVerify(dns.server, received);
    assert.deepEqual(
      results.map((r) => [r.result, r.domain]),
      [["pass", "signed.events.example"]],
    );
    const events = await readEvents(dataDir, { messageId: id! });
    assert.ok(events.every((e) => e.metadata?.k === 1 && e.categories[0] === "signed"));
  });

  it("tails events as they happen with --follow", async () => {
    const child = spawn(
      process.execPath,
      [
        PETREL_BIN,
        "events",
        "tail",
        "--follow",
        "--json",
        "--type",
        "delivered",
        "-n",
        "0",
        "--interval",
        "100",
        "--data-dir",
        dataDir,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...storeEnvFor(dataDir) } },
    );
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      err += chunk;
    });
    try {
      // It has taken its starting point (the newest event) once it says so.
      await waitUntil(() => err.includes("Following new events"), "events tail --follow to start", 60_000);
      const [id] = await submitAll(petrel.ports.submission!, [testMessage(5, "follow@example.com")]);
      await waitUntil(() => out.includes(id!), "the followed event", 60_000);
      const lines = out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      assert.deepEqual(
        lines.map((e) => [e.type, e.messageId]),
        [["delivered", id]],
      );
    } finally {
      child.kill("SIGINT");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  });

  it("tests, lists and removes webhooks from the command line", async () => {
    const posts = receiver.posts.length;
    assert.match(await cliOk(["webhooks", "test", receiver.url]), /^ok: 200 in \d+ ms$/m);
    // The serve's dispatcher may POST a batch of its own meanwhile: find the test event's POST.
    const post = receiver.posts.slice(posts).find((p) => p.events[0]?.type === ("test" as string));
    assert.ok(post, "the test event was POSTed");
    assert.ok(signatureValid(secret, post.signature, post.body));
    const listing = await cliOk(["webhooks", "list"]);
    assert.ok(listing.includes(receiver.url) && listing.includes(`${secret.slice(0, 10)}…`));
    assert.ok(!listing.includes(secret), "the secret is never shown again");
    assert.match(await cliOk(["webhooks", "deliveries", receiver.url]), /test\s+200\s+1/);
    assert.equal((await cli(["webhooks", "add", receiver.url])).code, 1, "one endpoint per URL and account");
    assert.equal((await cli(["webhooks", "add", "ftp://x.test/"])).code, 1);
    assert.match(
      (await cli(["webhooks", "add", "https://u:p@x.test/"])).stderr,
      /cannot carry user:password@/,
    );
    const other = await cli(["webhooks", "add", "http://127.0.0.1:1/x", "--events", "bounce,nope"]);
    assert.match(other.stderr, /unknown event type nope/);
    assert.match(await cliOk(["webhooks", "remove", receiver.url]), /Removed webhook/);
    assert.match(await cliOk(["webhooks", "list"]), /No webhooks/);
    assert.ok(!petrel.logs.some((l) => l.includes(secret)), "the secret is never logged");
  });
});

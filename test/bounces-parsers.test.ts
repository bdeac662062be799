/**
 * The parsers of untrusted bounce input (design convention 9):
 * - every ARF sample in ../shared/samples/arf/INDEX.tsv: complaints become spam reports, the
 *   DMARC failure report does not; prose bounces (qmail, Exim) and auto-replies;
 * - the VERP codec: round trip, case-insensitive, forged or foreign tokens refused;
 * - fuzzing: thousands of mutated samples (bit flips, truncation, spliced boundaries, shuffled
 *   lines, random bytes) through parseReport + interpret, and through the listener's own hooks on
 *   a real store: nothing ever throws out of the listener, and every reply is 250 or 451.
 * The random source is seeded, so a failure names a case that can be replayed.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import pino from "pino";
import { classifyBounce } from "../src/bounces/classify.js";
import { interpret } from "../src/bounces/interpret.js";
import { createBounceHooks } from "../src/bounces/listener.js";
import { buildDsn, notifySender } from "../src/bounces/notify.js";
import { parseReport } from "../src/bounces/report.js";
import { VerpCodec } from "../src/bounces/verp.js";
import { configSchema } from "../src/config/schema.js";
import type { Envelope, SessionInfo } from "../src/smtp/types.js";
import { openSqliteStore, type SqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { SAMPLES } from "./support/bounce-samples.js";
import { removeDataDir, tempDataDir } from "./support/petrel-process.js";

const QMAIL = `Return-Path: <>
From: MAILER-DAEMON@mail.example.net
To: b+x@bounces.app.example
Subject: failure notice

Hi. This is the qmail-send program at mail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<user@example.net>:
192.0.2.7 does not like recipient.
Remote host said: 550 5.1.1 <user@example.net>... User unknown
Giving up on 192.0.2.7.
`;

const EXIM = `From: Mail Delivery System <Mailer-Daemon@mx.example.org>
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  someone@example.org
    host mx.example.org [192.0.2.9]
    SMTP error from remote mail server after RCPT TO:<someone@example.org>:
    552 5.2.2 Mailbox quota exceeded
`;

const VACATION = `From: someone@example.org
Subject: Out of Office: your message
Auto-Submitted: auto-replied

I am away until Monday.
`;

/** A small deterministic PRNG (mulberry32), so a failing case can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function samples(): Buffer[] {
  const out: Buffer[] = [];
  for (const dir of ["dsn", "arf"]) {
    for (const f of readdirSync(resolve(SAMPLES, dir)).filter((f) => f.endsWith(".eml"))) {
      out.push(readFileSync(resolve(SAMPLES, dir, f)));
    }
  }
  return [...out, Buffer.from(QMAIL), Buffer.from(EXIM), Buffer.from(VACATION)];
}

/** One mutation of `input`, chosen by `rand`. */
function mutate(input: Buffer, rand: () => number): Buffer {
  const pick = (n: number) => Math.floor(rand() * n);
  const bytes = Buffer.from(input);
  switch (pick(8)) {
    case 0: // flip some bits
      for (let i = 0; i < 1 + pick(20); i++) bytes[pick(bytes.length)]! ^= 1 << pick(8);
      return bytes;
    case 1: // truncate
      return bytes.subarray(0, pick(bytes.length));
    case 2: {
      // splice a MIME boundary or header line somewhere
      const junk = [
        "\r\n--\r\n",
        '\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=""\r\n',
        "\r\nContent-Type: message/delivery-status\r\n\r\nStatus: 9.9.9\r\nAction:\r\n",
        "\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@@====\r\n",
        "\r\nFinal-Recipient: rfc822;\r\n\r\n\r\n",
        `\r\nDiagnostic-Code: smtp; ${"5".repeat(5000)}\r\n`,
        "\r\n\t\t\t\t\t\r\n\r\n",
      ][pick(7)]!;
      const at = pick(bytes.length);
      return Buffer.concat([bytes.subarray(0, at), Buffer.from(junk), bytes.subarray(at)]);
    }
    case 3: {
      // shuffle lines
      const lines = bytes.toString("latin1").split("\n");
      for (let i = lines.length - 1; i > 0; i--) {
        const j = pick(i + 1);
        [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      }
      return Buffer.from(lines.join("\n"), "latin1");
    }
    case 4: // random bytes (from the seeded source, so a case can be replayed)
      return Buffer.from(Array.from({ length: pick(4000) }, () => pick(256)));
    case 5: {
      // duplicate a region many times (deep or long structures)
      const start = pick(bytes.length);
      const region = bytes.subarray(start, start + pick(200));
      return Buffer.concat([bytes, ...Array.from({ length: pick(50) }, () => region)]);
    }
    case 6: // line endings: bare CR, bare LF, none
      return Buffer.from(bytes.toString("latin1").replace(/\r?\n/g, ["\r", "\n", ""][pick(3)]!), "latin1");
    default: {
      // delete a region
      const start = pick(bytes.length);
      return Buffer.concat([bytes.subarray(0, start), bytes.subarray(start + pick(400))]);
    }
  }
}

describe("ARF samples and prose bounces", () => {
  const index = readFileSync(resolve(SAMPLES, "arf/INDEX.tsv"), "utf8")
    .split("\n")
    .slice(1)
    .filter((l) => l.trim() !== "")
    .map((l) => l.split("\t") as [string, string, string, string, string]);

  for (const [file, recipient, feedbackType, , expected] of index) {
    it(`${file}: ${feedbackType} → ${expected}`, async () => {
      const report = await parseReport(readFileSync(resolve(SAMPLES, "arf", file)));
      assert.equal(report.kind, "arf");
      if (report.kind !== "arf") return;
      assert.equal(report.feedbackType, feedbackType);
      if (recipient !== "-") assert.equal(report.originalRcptTo, recipient);
      const finding = interpret(report, recipient, classifyBounce);
      assert.equal(finding.kind, expected === "complaint" ? "complaint" : "ignore");
    });
  }

  it("reads a qmail bounce as a hard failure and an Exim one as mailbox-full", async () => {
    const qmail = interpret(await parseReport(QMAIL), "user@example.net", classifyBounce);
    assert.equal(qmail.kind, "bounce");
    if (qmail.kind === "bounce") {
      assert.equal(qmail.classification.class, "invalid-recipient");
      assert.equal(qmail.status, "5.1.1");
    }
    const exim = interpret(await parseReport(EXIM), "someone@example.org", classifyBounce);
    assert.equal(exim.kind === "bounce" && exim.classification.class, "mailbox-full");
  });

  it("ignores auto-replies, delay warnings and success notices", async () => {
    assert.equal((await parseReport(VACATION)).kind, "auto-reply");
    assert.equal(interpret(await parseReport(VACATION), "x@y.example", classifyBounce).kind, "ignore");
    const delayed = readFileSync(resolve(SAMPLES, "dsn/rfc3464-d4-delayed.eml"));
    assert.deepEqual(interpret(await parseReport(delayed), "thomas@de-montfort.ac.uk", classifyBounce), {
      kind: "ignore",
      reason: 'delivery status "delayed"',
    });
  });

  it("builds DSNs that parse back, and none for a null sender", async () => {
    const original = {
      id: "01KB0000000000000000000000",
      accountId: 1,
      mailFrom: "app@app.example",
      receivedAt: 0,
      content: Buffer.from("From: app@app.example\r\nSubject: hi\r\n\r\nbody\r\n"),
    };
    const failed = [
      {
        address: "a@x.example",
        reply: "550 5.1.1 no\r\nInjected: header",
        status: "5.1.1",
        remoteMta: "mx",
        at: 0,
      },
    ];
    const dsn = buildDsn("petrel.test", "01KB0000000000000000000001", original, failed, new Date(0));
    assert.doesNotMatch(dsn.toString(), /^Injected:/m, "a reply cannot add a line");
    // The returned header section is 7bit here, and 8bit once it holds a byte over 0x7f.
    assert.doesNotMatch(dsn.toString(), /^Content-Transfer-Encoding: 8bit/m);
    const eightBit = buildDsn(
      "petrel.test",
      "01KB0000000000000000000002",
      { ...original, content: Buffer.from("From: app@app.example\r\nSubject: Grüße\r\n\r\nbody\r\n") },
      failed,
      new Date(0),
    );
    assert.match(eightBit.toString(), /^Content-Transfer-Encoding: 8bit/m);
    const parsed = await parseReport(dsn);
    assert.equal(parsed.kind === "dsn" && parsed.recipients[0]?.status, "5.1.1");
    let enqueued = 0;
    const store = { enqueueMessages: async () => void enqueued++ };
    const options = { store, hostname: "petrel.test", lifetimeMs: 1000 };
    assert.equal(await notifySender(options, { ...original, mailFrom: "" }, failed), null);
    assert.equal(enqueued, 0);
    assert.match((await notifySender(options, original, failed)) ?? "", /^[0-9A-Z]{26}$/);
    assert.equal(enqueued, 1);
  });
});

describe("VERP tokens", () => {
  const codec = new VerpCodec(randomBytes(32));

  it("round-trips message and recipient, case-insensitively, within 64 octets", () => {
    const address = codec.address("01KB2ZJ8Q7V0M9W1X2Y3Z4A5B6", 123_456_789, "Bounces.App.Example");
    const local = address.split("@")[0]!;
    assert.ok(local.length <= 64, local);
    assert.deepEqual(codec.decode(address), {
      messageId: "01KB2ZJ8Q7V0M9W1X2Y3Z4A5B6",
      recipientId: 123_456_789,
    });
    assert.deepEqual(codec.decode(address.toUpperCase()), codec.decode(address));
  });

  it("refuses a token changed anywhere, or made with another key", () => {
    const address = codec.address("01KB2ZJ8Q7V0M9W1X2Y3Z4A5B6", 42, "bounces.app.example");
    const local = address.split("@")[0]!;
    for (let i = 2; i < local.length; i++) {
      const c = local[i]!;
      const other = c === "0" ? "1" : c === "-" ? "." : "0";
      assert.equal(
        codec.decode(`${local.slice(0, i)}${other}${local.slice(i + 1)}@x`),
        undefined,
        `position ${i}`,
      );
    }
    assert.equal(new VerpCodec(randomBytes(32)).decode(address), undefined);
  });

  it("never throws on random input", () => {
    const rand = prng(7);
    for (let i = 0; i < 2000; i++) {
      const s = randomBytes(Math.floor(rand() * 120)).toString(rand() < 0.5 ? "latin1" : "base64");
      assert.equal(codec.decode(rand() < 0.5 ? `b+${s}` : s), undefined);
    }
  });
});

describe("fuzzing the report parsers and the listener", () => {
  let dataDir: string;
  let store: SqliteStore;
  let target: { messageId: string; recipientId: number; address: string };

  before(async () => {
    dataDir = tempDataDir("petrel-fuzz-");
    store = openSqliteStore({ file: join(dataDir, "petrel.db") });
    const account = (await store.getAccount("default"))!;
    await store.enqueueMessages([
      {
        id: "01KB2ZJ8Q7V0M9W1X2Y3Z4A5B6",
        accountId: account.id,
        apiKeyId: null,
        mailFrom: "app@app.example",
        recipients: ["kijitora@gmail.com"],
        content: Buffer.from("From: app@app.example\r\n\r\nhi\r\n"),
        clientIp: "127.0.0.1",
        receivedAt: 0,
        expiresAt: 1e13,
      },
    ]);
    const [claimed] = await store.claimDue({ owner: "fuzz:1:a", now: 1, leaseMs: 1000, limit: 1 });
    target = { messageId: claimed!.messageId, recipientId: claimed!.id, address: claimed!.address };
    // Delivered, so that the first report that reads as a failure really applies.
    await store.recordOutcomes([
      {
        recipientId: claimed!.id,
        owner: "fuzz:1:a",
        state: "delivered",
        nextAttemptAt: null,
        attempt: {
          at: 1,
          durationMs: 1,
          mxHost: null,
          ip: null,
          port: null,
          sourceIp: null,
          tls: null,
          reply: "250 ok",
        },
      },
    ]);
  });

  after(async () => {
    await store.close();
    removeDataDir(dataDir);
  });

  it("parseReport and interpret never throw on 3,000 mutated reports", async () => {
    const rand = prng(20261127);
    const inputs = samples();
    const kinds = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      let input = inputs[i % inputs.length]!;
      for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) input = mutate(input, rand);
      const report = await parseReport(input);
      kinds.add(report.kind);
      const finding = interpret(report, "kijitora@gmail.com", classifyBounce);
      assert.ok(["bounce", "complaint", "ignore"].includes(finding.kind), `case ${i}`);
    }
    assert.ok(kinds.has("dsn") && kinds.has("unknown"), [...kinds].join(","));
  });

  it("the listener's hooks answer 250 or 451 to 500 mutated reports and never throw", async () => {
    const codec = new VerpCodec(randomBytes(32));
    const hooks = createBounceHooks({
      config: configSchema.parse({}),
      store,
      codec,
      classify: classifyBounce,
      logger: pino({ level: "silent" }),
      tls: { key: "", cert: "" },
    });
    const session = { id: "fuzz", remoteAddress: "127.0.0.1" } as SessionInfo<{ kind: "mx" }>;
    const rcpt = codec.address(target.messageId, target.recipientId, "bounces.app.example");
    const rand = prng(42);
    const inputs = samples();
    for (let i = 0; i < 500; i++) {
      const envelope: Envelope = { mailFrom: "", rcptTo: [], smtpUtf8: false, body8bit: false };
      const verdict = await hooks.onRcptTo!(session, envelope, rcpt);
      assert.equal(verdict.ok, true);
      envelope.rcptTo.push(rcpt);
      const reply = await hooks.onData(session, envelope, mutate(inputs[i % inputs.length]!, rand));
      assert.ok(reply.code === 250 || reply.code === 451, `case ${i}: ${reply.code}`);
    }
    // At most one of them bounced the recipient; the rest changed nothing.
    assert.ok((await store.listEvents({ messageId: target.messageId, types: ["bounce"] })).length <= 1);
    // Garbage addresses are refused, never thrown on.
    for (let i = 0; i < 200; i++) {
      const envelope: Envelope = { mailFrom: "", rcptTo: [], smtpUtf8: false, body8bit: false };
      const junk = `b+${randomBytes(Math.floor(rand() * 60)).toString("latin1")}@bounces.app.example`;
      assert.equal((await hooks.onRcptTo!(session, envelope, junk)).ok, false);
    }
  });
});

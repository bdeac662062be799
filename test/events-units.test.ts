/**
 * Units of issue 5's events: sender metadata (parsing, limits, removal from the header section
 * byte for byte), webhook signatures, and event ids that increase in commit order across two
 * connections writing the same SQLite file (the property webhook cursors rely on), and the
 * webhook dispatcher's lease writes (few: not one per POST and per poll).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import pino from "pino";
import { eventsSchema } from "../src/config/events-schema.js";
import { eventIdsAfter, incrementUlid, randomUlid, ulidTime } from "../src/events/event-id.js";
import { readAttachedMetadata, removeFields } from "../src/events/metadata.js";
import { generateWebhookSecret, signatureHeader, verifySignature } from "../src/events/signature.js";
import { WebhookDispatcher } from "../src/events/webhook-dispatcher.js";
import { readHeaderSection } from "../src/message/headers.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { messageMaker } from "./support/new-messages.js";
import { tempDataDir } from "./support/petrel-process.js";
import { signatureValid, startWebhookReceiver } from "./support/webhook-receiver.js";

const LIMITS = { maxBytes: 10_240, maxCategories: 10 };
const read = (text: string) => {
  const content = Buffer.from(text, "latin1");
  return readAttachedMetadata(content, readHeaderSection(content), LIMITS);
};

describe("sender metadata", () => {
  it("reads the object and the categories, and removes both fields (folded ones too)", () => {
    const text =
      'From: a@b.test\r\nX-Petrel-Metadata: {"user": 42,\r\n  "plan": "pro"}\r\nSubject: hi\r\n' +
      "x-petrel-category: welcome, onboarding\r\nX-Petrel-Category: welcome,beta\r\nTo: c@d.test\r\n\r\n" +
      'X-Petrel-Metadata: {"in": "the body"}\r\n';
    const result = read(text);
    assert.ok(result.ok);
    assert.equal(result.metadata, '{"user":42,"plan":"pro"}');
    assert.deepEqual(result.categories, ["welcome", "onboarding", "beta"]);
    assert.equal(
      result.content.toString("latin1"),
      'From: a@b.test\r\nSubject: hi\r\nTo: c@d.test\r\n\r\nX-Petrel-Metadata: {"in": "the body"}\r\n',
    );
  });

  it("returns the same buffer when neither field is there, and handles a last field and no body", () => {
    const content = Buffer.from("From: a@b.test\r\nSubject: x\r\n\r\nbody\r\n");
    const result = readAttachedMetadata(content, readHeaderSection(content), LIMITS);
    assert.ok(result.ok);
    assert.equal(result.content, content);
    const last = read("From: a@b.test\r\nX-Petrel-Category: c\r\n");
    assert.ok(last.ok);
    assert.equal(last.content.toString(), "From: a@b.test\r\n");
    const first = read("X-Petrel-Metadata: {}\r\nFrom: a@b.test\r\n\r\nb\r\n");
    assert.ok(first.ok);
    assert.equal(first.metadata, "{}");
    assert.equal(first.content.toString(), "From: a@b.test\r\n\r\nb\r\n");
  });

  it("keeps UTF-8 in metadata and categories", () => {
    const content = Buffer.from(
      'From: a@b.test\r\nX-Petrel-Metadata: {"name": "Zoë ✓"}\r\nX-Petrel-Category: café\r\n\r\nx\r\n',
    );
    const result = readAttachedMetadata(content, readHeaderSection(content), LIMITS);
    assert.ok(result.ok);
    assert.deepEqual(JSON.parse(result.metadata!), { name: "Zoë ✓" });
    assert.deepEqual(result.categories, ["café"]);
  });

  it("refuses invalid metadata with a precise text that never quotes the input", () => {
    const cases: Array<[string, RegExp]> = [
      ['{"a": 1', /^X-Petrel-Metadata is not valid JSON/],
      ["[1, 2]", /^X-Petrel-Metadata must be a JSON object$/],
      ['"text"', /^X-Petrel-Metadata must be a JSON object$/],
      ["null", /^X-Petrel-Metadata must be a JSON object$/],
      [`{"big": "${"x".repeat(10_300)}"}`, /^X-Petrel-Metadata is larger than 10240 bytes$/],
    ];
    for (const [value, expected] of cases) {
      const result = read(`From: a@b.test\r\nX-Petrel-Metadata: ${value}\r\n\r\nx\r\n`);
      assert.equal(result.ok, false, value.slice(0, 20));
      if (!result.ok) {
        assert.match(result.text, expected);
        assert.doesNotMatch(result.text, /"a"|text|xxxx/);
      }
    }
    const twice = read("From: a@b.test\r\nX-Petrel-Metadata: {}\r\nX-Petrel-Metadata: {}\r\n\r\nx\r\n");
    assert.deepEqual(twice, { ok: false, text: "X-Petrel-Metadata may appear only once" });
    const many = read(
      `From: a@b.test\r\nX-Petrel-Category: ${Array.from({ length: 11 }, (_, i) => `c${i}`).join(",")}\r\n\r\n`,
    );
    assert.deepEqual(many, { ok: false, text: "X-Petrel-Category has more than 10 categories" });
    const long = read(`From: a@b.test\r\nX-Petrel-Category: ${"c".repeat(101)}\r\n\r\n`);
    assert.equal(long.ok, false);
  });

  it("removes only the named fields, leaving every other byte", () => {
    const text = "A: 1\r\nX-Drop: 2\r\n\t3\r\nB: 4\r\n X\r\nX-Drop: 5\r\n\r\nX-Drop: body\r\n";
    const content = Buffer.from(text);
    const out = removeFields(content, readHeaderSection(content).end, ["x-drop"]);
    assert.equal(out.toString(), "A: 1\r\nB: 4\r\n X\r\n\r\nX-Drop: body\r\n");
  });
});

describe("webhook signatures", () => {
  it("verifies what it signs, and refuses a changed body, another secret or an old timestamp", () => {
    const secret = generateWebhookSecret();
    assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
    const body = '[{"id":"01X","type":"delivered"}]';
    const now = Math.floor(Date.now() / 1000);
    const header = signatureHeader(secret, now, body);
    assert.match(header, /^t=\d+,v1=[0-9a-f]{64}$/);
    assert.equal(verifySignature(secret, header, body), true);
    assert.equal(signatureValid(secret, header, body), true, "the receiver-side recipe agrees");
    assert.equal(verifySignature(secret, header, `${body} `), false);
    assert.equal(verifySignature(generateWebhookSecret(), header, body), false);
    assert.equal(verifySignature(secret, signatureHeader(secret, now - 3600, body), body), false, "replay");
    assert.equal(verifySignature(secret, "t=1,v1=zz", body), false);
    assert.equal(verifySignature(secret, "garbage", body), false);
  });
});

describe("event ids", () => {
  it("are ULIDs that carry the time and increase, carrying into the time part at the end", () => {
    const id = randomUlid(1_795_000_000_123);
    assert.equal(ulidTime(id), 1_795_000_000_123);
    assert.equal(incrementUlid("01M8F8MHR4000000000000000Z"), "01M8F8MHR40000000000000010");
    assert.equal(incrementUlid("01M8F8MHR4ZZZZZZZZZZZZZZZZ"), "01M8F8MHR50000000000000000");
    const next = eventIdsAfter("01M8F8MHR4ZZZZZZZZZZZZZZZA", 0);
    const a = next();
    const b = next();
    assert.ok(a > "01M8F8MHR4ZZZZZZZZZZZZZZZA" && b > a, "after the last one even when the clock is behind");
  });

  it("increase in commit order across two connections writing the same file", async () => {
    const file = join(tempDataDir("petrel-event-ids-"), "petrel.db");
    const one = openSqliteStore({ file });
    const two = openSqliteStore({ file, enqueueThread: true });
    try {
      const account = (await one.getAccount("default"))!;
      const base = {
        accountId: account.id,
        apiKeyId: null,
        mailFrom: "a@b.test",
        content: Buffer.from("Subject: x\r\n\r\nx\r\n"),
        clientIp: "127.0.0.1",
        receivedAt: 1,
        expiresAt: 2,
      };
      // Alternating writers, one commit after the other (often within one millisecond): each
      // commit's ids must sort after every id committed before it, whichever connection wrote it.
      const order: string[] = [];
      for (let i = 0; i < 200; i++) {
        const store = i % 2 === 0 ? one : two;
        const id = `M${String(i).padStart(4, "0")}`;
        await store.enqueueMessages([{ ...base, id, recipients: [`r${i}@x.test`] }]);
        order.push(id);
        if (i % 3 === 0) {
          await one.recordEvents([{ type: "spamreport", messageId: id, recipient: `r${i}@x.test`, at: 1 }]);
          order.push(`${id}:spam`);
        }
      }
      const events = await one.listEvents({ limit: 10_000 });
      assert.deepEqual(
        events.map((e) => (e.type === "processed" ? e.messageId : `${e.messageId}:spam`)),
        order,
        "id order is commit order",
      );
      assert.equal(new Set(events.map((e) => e.id)).size, events.length, "unique");
    } finally {
      await two.close();
      await one.close();
    }
  });
});

describe("webhook leases", () => {
  it("renews only when half is gone, keeps the lease while a batch is due soon, gives it back when caught up", async () => {
    const dir = tempDataDir("petrel-webhook-lease-");
    const store = openSqliteStore({ file: join(dir, "petrel.db") });
    const receiver = await startWebhookReceiver();
    const writes = { take: 0, release: 0 };
    // The dispatcher's clock; a "slow POST" (below) moves it on by slowPostMs per recorded POST.
    let offset = 0;
    let slowPostMs = 0;
    const counted = {
      ...store,
      recordWebhookAttempt: (...a: Parameters<typeof store.recordWebhookAttempt>) => {
        offset += slowPostMs;
        return store.recordWebhookAttempt(...a);
      },
      takeLease: (...a: Parameters<typeof store.takeLease>) => {
        writes.take++;
        return store.takeLease(...a);
      },
      releaseLease: (...a: Parameters<typeof store.releaseLease>) => {
        writes.release++;
        return store.releaseLease(...a);
      },
    };
    // leaseMs 4 s (twice the POST timeout): renewed once less than 2 s are left.
    const config = eventsSchema.parse({
      webhooks: { maxBatchEvents: 5, batchWindowMs: 600, pollIntervalMs: 10, timeoutMs: 2000, leaseMs: 4000 },
    }).webhooks;
    const dispatcher = new WebhookDispatcher({
      store: counted,
      config,
      logger: pino({ level: "silent" }),
      now: () => Date.now() + offset,
    });
    try {
      const account = (await store.getAccount("default"))!;
      const hook = await store.addWebhook({
        accountId: account.id,
        url: receiver.url,
        secret: "whsec_lease",
        eventTypes: null,
      });
      const lease = `webhook:${hook.id}`;
      const message = messageMaker(account.id, Date.now);
      const enqueue = (count: number) => store.enqueueMessages(Array.from({ length: count }, message));
      const events = async (count: number) =>
        receiver.waitFor(() => receiver.distinct().size >= count, 10_000, `${count} events`);

      // 40 events: eight full batches in one serve, under one take of the lease.
      await enqueue(40);
      dispatcher.start();
      await events(40);
      assert.equal(receiver.posts.length, 8);
      assert.equal(writes.take, 1, "one take for eight POSTs");

      // Caught up, it was given back. Two events: a batch due in 600 ms (< half the lease): the
      // first poll takes the lease, the polls until the batch is due keep it without a write, so
      // another node cannot take it.
      assert.equal(writes.release, 1);
      await enqueue(2);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const held = writes.take;
      assert.equal(held, 2, "taken again for the waiting batch");
      await new Promise((resolve) => setTimeout(resolve, 250));
      assert.equal(receiver.distinct().size, 40, "the batch waits for its window");
      assert.equal(await store.takeLease(lease, "other-node", Date.now(), 4000), false, "still held");
      assert.equal(writes.take, held, "no take by the polls while held");
      assert.equal(writes.release, 1, "not given back while the batch is due soon");
      await events(42);

      // Caught up again: given back, another node may take it.
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(writes.release, 2);
      assert.equal(await store.takeLease(lease, "other-node", Date.now(), 10), true, "given back");
      await new Promise((resolve) => setTimeout(resolve, 20));

      // A serve longer than half the lease renews it before a POST: with 900 ms per POST, six
      // POSTs of one serve start 0, 0.9, 1.8, 2.7 (renewed: 1.3 s left), 3.6 and 4.5 s after the
      // take.
      const takes = writes.take;
      slowPostMs = 900;
      await enqueue(30);
      await events(72);
      assert.equal(writes.take, takes + 2, "one take and one renewal for six POSTs");
    } finally {
      await dispatcher.stop(1000);
      await receiver.close();
      await store.close();
    }
  });
});

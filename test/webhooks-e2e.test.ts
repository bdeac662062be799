/**
 * Webhooks end to end: the real `petrel serve` delivers to a test MX on loopback (DNS on loopback
 * too) and POSTs events to a real HTTP receiver in the test.
 * - 1,000 messages: the receiver gets every event exactly as the store recorded it, in id order,
 *   in batches of at most 100, each signature valid for the secret `webhooks add` printed.
 * - The receiver answers 500 for a while, then recovers: every event arrives; duplicates only
 *   with the same id (and identical content); the failures are in `webhooks deliveries`.
 * - kill -9 after events are written and before they are sent (a batch window longer than the
 *   test), and kill -9 with a POST in flight: after the restart every event arrives.
 * - A receiver that never answers is given up on after timeoutMs (the request closed) and the
 *   batch sent again; a 3xx is a failure (no redirect followed) and the batch is retried.
 * - An endpoint failing for `disableAfterMs` is disabled (log, store record); `enable` resumes it
 *   from where it stopped.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PetrelEvent } from "../src/store/types.js";
import type { TestDnsServer } from "./support/dns-server.js";
import {
  eventsConfig,
  readEvents,
  startZone,
  submitAll,
  testMessage,
  waitUntil,
} from "./support/events-rig.js";
import { petrelOk, removeDataDir, startPetrel, tempDataDir } from "./support/petrel-process.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";
import { signatureValid, startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.js";

const MX_ADDRESS = "127.0.0.5";

/** A data directory with a sender and a webhook to `receiver`; returns it and the secret. */
async function prepare(receiver: WebhookReceiver): Promise<{ dataDir: string; secret: string }> {
  const dataDir = tempDataDir("petrel-webhooks-");
  await petrelOk(dataDir, ["senders", "add", "app@events.example"]);
  const secret = (await petrelOk(dataDir, ["webhooks", "add", receiver.url])).trim();
  assert.match(secret, /^whsec_/);
  return { dataDir, secret };
}

const byId = (events: Iterable<PetrelEvent>) => [...events].sort((a, b) => (a.id < b.id ? -1 : 1));

describe("webhooks end to end", () => {
  let dns: TestDnsServer;
  let mx: TestMx;

  before(async () => {
    mx = await startTestMx({ address: MX_ADDRESS });
    dns = await startZone(MX_ADDRESS);
  });

  after(async () => {
    await mx.close();
    await dns.close();
  });

  it("delivers every event of 1,000 messages exactly as recorded, signed, in order", async () => {
    const receiver = await startWebhookReceiver();
    const { dataDir, secret } = await prepare(receiver);
    const petrel = await startPetrel(dataDir, { config: eventsConfig(dns, mx.port) });
    try {
      const messages = Array.from({ length: 1000 }, (_, n) =>
        testMessage(
          n,
          `user${n}@example.com`,
          `X-Petrel-Metadata: {"n": ${n}}\r\nX-Petrel-Category: bulk, n${n % 3}\r\n`,
        ),
      );
      const ids = await submitAll(petrel.ports.submission!, messages);
      await receiver.waitFor(() => receiver.distinct().size >= 2000, 180_000, "2,000 events");
      const recorded = await readEvents(dataDir);
      assert.equal(recorded.length, 2000);
      assert.deepEqual(byId(receiver.distinct().values()), recorded, "exactly as recorded");
      const types = new Map<string, number>();
      for (const e of recorded) types.set(e.type, (types.get(e.type) ?? 0) + 1);
      assert.deepEqual(Object.fromEntries(types), { processed: 1000, delivered: 1000 });

      for (const e of recorded) {
        const n = ids.indexOf(e.messageId);
        assert.deepEqual(e.metadata, { n }, "metadata in every event");
        assert.deepEqual(e.categories, ["bulk", `n${n % 3}`]);
      }
      let previous = "";
      for (const post of receiver.posts) {
        assert.ok(signatureValid(secret, post.signature, post.body), "signature verifies");
        assert.ok(post.events.length >= 1 && post.events.length <= 100);
        for (const e of post.events) {
          assert.ok(e.id > previous, "events arrive in id order");
          previous = e.id;
        }
      }
      assert.ok(receiver.posts.length >= 20, `batched: ${receiver.posts.length} POSTs`);
      assert.equal(
        receiver.accepted().length,
        2000,
        "no event sent twice when the receiver always answers 200",
      );
      // The fields were removed before delivery: recipients never see them.
      for (const m of mx.messages.slice(-1000))
        assert.doesNotMatch(m.content.toString(), /X-Petrel-(Metadata|Category)/i);
    } finally {
      await petrel.stop();
      await receiver.close();
      removeDataDir(dataDir);
    }
  });

  it("retries while the receiver answers 500, then delivers every event (duplicates only by id)", async () => {
    let failUntil = Number.POSITIVE_INFINITY;
    const receiver = await startWebhookReceiver(() => (Date.now() < failUntil ? 500 : 200));
    const { dataDir, secret } = await prepare(receiver);
    const petrel = await startPetrel(dataDir, { config: eventsConfig(dns, mx.port, { maxBatchEvents: 20 }) });
    try {
      const messages = Array.from({ length: 100 }, (_, n) => testMessage(n, `retry${n}@example.com`));
      await submitAll(petrel.ports.submission!, messages);
      await waitUntil(
        async () => (await readEvents(dataDir, { types: ["delivered"] })).length === 100,
        "deliveries",
      );
      await receiver.waitFor(
        () => receiver.posts.filter((p) => p.status === 500).length >= 3,
        60_000,
        "failed POSTs",
      );
      failUntil = Date.now() + 1000;
      await receiver.waitFor(() => receiver.distinct().size >= 200, 120_000, "every event");
      const recorded = await readEvents(dataDir);
      assert.deepEqual(byId(receiver.distinct().values()), recorded);
      for (const post of receiver.posts) assert.ok(signatureValid(secret, post.signature, post.body));
      const deliveries = JSON.parse(
        await petrelOk(dataDir, ["webhooks", "deliveries", receiver.url, "--json", "-n", "1000"]),
      );
      const statuses = new Set(deliveries.map((d: { statusCode: number }) => d.statusCode));
      assert.ok(statuses.has(500) && statuses.has(200), `statuses ${[...statuses]}`);
      const [listed] = JSON.parse(await petrelOk(dataDir, ["webhooks", "list", "--json"]));
      assert.equal(listed.failures, 0);
      assert.equal(listed.state, "active");
    } finally {
      await petrel.stop();
      await receiver.close();
      removeDataDir(dataDir);
    }
  });

  it("sends after kill -9 what was written but not sent, and what was in flight", async () => {
    const receiver = await startWebhookReceiver();
    const { dataDir } = await prepare(receiver);
    // First run: a batch window far longer than the test, so events are written and never sent.
    let petrel = await startPetrel(dataDir, {
      config: eventsConfig(dns, mx.port, { batchWindowMs: 3_600_000 }),
    });
    try {
      await submitAll(
        petrel.ports.submission!,
        Array.from({ length: 30 }, (_, n) => testMessage(n, `k${n}@example.com`)),
      );
      await waitUntil(async () => (await readEvents(dataDir)).length === 60, "60 events written");
      assert.equal(await petrel.stop("SIGKILL"), "SIGKILL");
      assert.equal(receiver.posts.length, 0, "nothing was sent before the kill");

      // Second run: the receiver holds the first POST without answering; kill -9 while it hangs.
      receiver.respond = ({ n }) => (n === 0 ? "hang" : 200);
      petrel = await startPetrel(dataDir, {
        config: eventsConfig(dns, mx.port, { batchWindowMs: 0, maxBatchEvents: 25 }),
      });
      await receiver.waitFor(() => receiver.posts.length >= 1, 60_000, "the hanging POST");
      assert.equal(await petrel.stop("SIGKILL"), "SIGKILL");
      const inFlight = receiver.posts[0]!.events.map((e) => e.id);
      assert.equal(inFlight.length, 25);

      // Third run: everything arrives, the batch that was in flight included.
      receiver.respond = () => 200;
      petrel = await startPetrel(dataDir, { config: eventsConfig(dns, mx.port, { batchWindowMs: 0 }) });
      await receiver.waitFor(() => receiver.distinct().size >= 60, 60_000, "60 events after restart");
      const recorded = await readEvents(dataDir);
      assert.equal(recorded.length, 60);
      assert.deepEqual(byId(receiver.distinct().values()), recorded);
      for (const id of inFlight) assert.ok(receiver.distinct().has(id));
    } finally {
      await petrel.stop();
      await receiver.close();
      removeDataDir(dataDir);
    }
  });

  it("gives up on a receiver that never answers after timeoutMs, closes the request and sends the batch again", async () => {
    const receiver = await startWebhookReceiver(({ n }) => (n === 0 ? "hang" : 200));
    const { dataDir } = await prepare(receiver);
    const petrel = await startPetrel(dataDir, {
      config: eventsConfig(dns, mx.port, { timeoutMs: 1000, retrySchedule: [200], batchWindowMs: 0 }),
    });
    try {
      await submitAll(petrel.ports.submission!, [testMessage(1, "webhook-hangs@example.com")]);
      await receiver.waitFor(() => receiver.distinct().size >= 2, 60_000, "both events after the hang");
      assert.equal(receiver.posts[0]!.status, "hang");
      // The batch that hung is sent again first, with the same events.
      const hung = receiver.posts[0]!.events.map((e) => e.id);
      assert.deepEqual(receiver.posts[1]!.events.map((e) => e.id).slice(0, hung.length), hung);
      await receiver.waitFor(() => receiver.hanging() === 0, 60_000, "Petrel to close the hung request");
      const deliveries = JSON.parse(
        await petrelOk(dataDir, ["webhooks", "deliveries", receiver.url, "--json", "-n", "100"]),
      ) as Array<{ statusCode: number | null; error: string | null }>;
      assert.ok(
        deliveries.some((d) => d.statusCode === null && /no response within 1000 ms/.test(String(d.error))),
        JSON.stringify(deliveries),
      );
      assert.ok(deliveries.some((d) => d.statusCode === 200));
      assert.deepEqual(byId(receiver.distinct().values()), await readEvents(dataDir));
    } finally {
      await petrel.stop();
      await receiver.close();
      removeDataDir(dataDir);
    }
  });

  it("counts a 3xx as a failure: no redirect followed, the batch retried until a 2xx", async () => {
    const elsewhere = await startWebhookReceiver(() => 200);
    const receiver = await startWebhookReceiver(({ n }) => (n < 2 ? 302 : 200));
    receiver.redirectTo = elsewhere.url;
    const { dataDir } = await prepare(receiver);
    const petrel = await startPetrel(dataDir, {
      config: eventsConfig(dns, mx.port, { retrySchedule: [200], batchWindowMs: 0 }),
    });
    try {
      await submitAll(petrel.ports.submission!, [testMessage(1, "moved@example.com")]);
      await receiver.waitFor(() => receiver.distinct().size >= 2, 60_000, "both events after two 302s");
      assert.deepEqual(
        receiver.posts.slice(0, 3).map((p) => p.status),
        [302, 302, 200],
      );
      const first = receiver.posts[0]!.events.map((e) => e.id);
      assert.deepEqual(receiver.posts[2]!.events.map((e) => e.id).slice(0, first.length), first);
      assert.equal(elsewhere.posts.length, 0, "a signed batch is never replayed to the Location");
      const deliveries = JSON.parse(
        await petrelOk(dataDir, ["webhooks", "deliveries", receiver.url, "--json", "-n", "100"]),
      ) as Array<{ statusCode: number | null; error: string | null }>;
      const redirects = deliveries.filter((d) => d.statusCode === 302);
      assert.equal(redirects.length, 2, JSON.stringify(deliveries));
      assert.ok(
        redirects.every((d) => /^HTTP 302/.test(String(d.error))),
        JSON.stringify(redirects),
      );
      assert.deepEqual(byId(receiver.distinct().values()), await readEvents(dataDir));
    } finally {
      await petrel.stop();
      await receiver.close();
      await elsewhere.close();
      removeDataDir(dataDir);
    }
  });

  it("disables an endpoint that keeps failing, and resumes it from where it stopped when enabled", async () => {
    const receiver = await startWebhookReceiver(() => 503);
    const { dataDir } = await prepare(receiver);
    // A second endpoint that always answers 200: its POSTs show the dispatcher at work.
    const control = await startWebhookReceiver(() => 200);
    await petrelOk(dataDir, ["webhooks", "add", control.url]);
    const petrel = await startPetrel(dataDir, {
      config: eventsConfig(dns, mx.port, { disableAfterMs: 1500, retrySchedule: [200] }),
    });
    try {
      await submitAll(petrel.ports.submission!, [testMessage(1, "off@example.com")]);
      // The list is ordered by URL: pick the failing endpoint by its own.
      const failing = async () => {
        type Listed = { url: string; state: string; disabledReason: string; secret: string };
        const all = JSON.parse(await petrelOk(dataDir, ["webhooks", "list", "--json"])) as Listed[];
        return all.find((w) => w.url === receiver.url)!;
      };
      await waitUntil(async () => (await failing()).state === "disabled", "the endpoint disabled");
      const listed = await failing();
      assert.match(listed.disabledReason, /^no successful delivery for [\d.]+ h \(last: HTTP 503/);
      assert.match(listed.secret, /^whsec_.{4}…$/, "the secret is masked");
      const deliveries = JSON.parse(
        await petrelOk(dataDir, ["webhooks", "deliveries", receiver.url, "--json"]),
      );
      assert.equal(deliveries[0].kind, "disabled");
      assert.ok(petrel.logRecords().some((r) => String(r.msg).startsWith("webhook endpoint disabled")));
      const posts = receiver.posts.length;
      // New events: the control endpoint gets them; the disabled one gets nothing, not even retries.
      await submitAll(petrel.ports.submission!, [testMessage(2, "off2@example.com")]);
      await control.waitFor(() => control.distinct().size >= 4, 60_000, "the new events at the control");
      assert.equal(receiver.posts.length, posts, "nothing more is sent to a disabled endpoint");

      receiver.respond = () => 200;
      await petrelOk(dataDir, ["webhooks", "enable", receiver.url]);
      await receiver.waitFor(() => receiver.distinct().size >= 4, 60_000, "all four events after enable");
      assert.deepEqual(byId(receiver.distinct().values()), await readEvents(dataDir));
    } finally {
      await petrel.stop();
      await receiver.close();
      await control.close();
      removeDataDir(dataDir);
    }
  });
});

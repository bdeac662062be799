/**
 * The HTTP API end to end (issue 9): a domain added and verified through the API (test DNS on
 * loopback), a message sent with POST /v1/messages delivered by the delivery thread to the test
 * MX with a DKIM signature dkimpy verifies, its `delivered` event in GET /v1/events and its
 * timeline in GET /v1/messages/{id}; then a known mix (delivered, bounced, deferred, dropped at
 * the commit thread and by an operator) and /metrics counting exactly that, including what the
 * delivery thread did.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DnsRecordSpec } from "../src/dkim/records.js";
import { immediateDeliveryTo } from "./support/delivery-config.js";
import { dkimpyVerify } from "./support/dkim-verifiers.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { publishRecords } from "./support/domain-zone.js";
import { waitUntil } from "./support/events-rig.js";
import {
  type PetrelProcess,
  petrelOk,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";
import { signatureValid, startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.js";

describe("HTTP API end to end with delivery", () => {
  let mx: TestMx;
  let dns: TestDnsServer;
  let dataDir: string;
  let petrel: PetrelProcess;
  let key: string;
  let base: string;
  let receiver: WebhookReceiver;
  /** When the known mix started (for GET /v1/stats), and keys of other scopes and accounts. */
  let mixStart = 0;
  let sendOnly: string;
  let otherReader: string;

  async function call(method: string, path: string, body?: unknown, as = key) {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${as}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, text, body: text.startsWith("{") ? JSON.parse(text) : {} };
  }

  async function send(to: string, subject: string): Promise<string> {
    const sent = await call("POST", "/v1/messages", {
      from: "App <app@signed.example>",
      to: [to],
      subject,
      text: `Hello — ${subject}. ${"A long line that MailComposer must wrap or encode. ".repeat(30)}`,
    });
    assert.equal(sent.status, 202, sent.text);
    return sent.body.id as string;
  }

  async function states(id: string): Promise<string[]> {
    const shown = await call("GET", `/v1/messages/${id}`);
    return (shown.body.recipients as Array<{ state: string }>).map((r) => r.state);
  }

  before(async () => {
    mx = await startTestMx({ address: "127.0.0.2" });
    dns = await startDnsServer({
      "example.com": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
      "mx.example.com": { A: ["127.0.0.2"] },
    });
    receiver = await startWebhookReceiver();
    dataDir = tempDataDir("petrel-http-e2e-");
    key = (await petrelOk(dataDir, ["keys", "create", "-n", "app", "--scopes", "admin"])).trim();
    sendOnly = (await petrelOk(dataDir, ["keys", "create", "-n", "send-only"])).trim();
    await petrelOk(dataDir, ["accounts", "create", "other"]);
    otherReader = (
      await petrelOk(dataDir, [
        "keys",
        "create",
        "-n",
        "other",
        "--account",
        "other",
        "--scopes",
        "events.read",
      ])
    ).trim();
    petrel = await startPetrel(dataDir, {
      config: {
        dns: { servers: [dns.server], timeoutMs: 2000, tries: 2 },
        sending: { requireVerifiedDomains: true },
        events: { webhooks: { allowPrivateTargets: true, batchWindowMs: 100, pollIntervalMs: 50 } },
        domains: { spf: { ips: ["127.0.0.1"] }, recheckIntervalMs: 0 },
        delivery: immediateDeliveryTo(mx.port),
      },
    });
    base = `http://127.0.0.1:${petrel.ports.http}`;
  });

  after(async () => {
    await petrel?.stop();
    await mx?.close();
    await dns?.close();
    await receiver?.close();
    removeDataDir(dataDir);
  });

  it("adds and verifies a domain, sends, delivers signed, and shows the event and the timeline", async () => {
    const added = await call("POST", "/v1/domains", { domain: "signed.example" });
    assert.equal(added.status, 201, added.text);
    publishRecords(dns, added.body.records as DnsRecordSpec[]);
    const verified = await call("POST", "/v1/domains/signed.example/verify");
    assert.equal(verified.status, 200, verified.text);
    assert.equal(verified.body.change.status, "verified");

    const id = await send("user@example.com", "signed through the API");
    await mx.waitForMessages(1, 60_000);
    const received = mx.messages[0]!;
    assert.deepEqual(received.to, ["user@example.com"]);
    const [results] = await dkimpyVerify(dns.port, [received.content]);
    assert.ok(
      results && results.length > 0 && results.every((r) => r.result === "pass"),
      JSON.stringify(results),
    );

    await waitUntil(async () => (await states(id)).join() === "delivered", "the delivered state");
    const events = await call("GET", `/v1/events?type=delivered&message=${id}`);
    assert.deepEqual(
      (events.body.events as Array<{ type: string; recipient: string }>).map((e) => [e.type, e.recipient]),
      [["delivered", "user@example.com"]],
    );
    const shown = await call("GET", `/v1/messages/${id}`);
    const [recipient] = shown.body.recipients as Array<{
      explanation: string;
      attempts: Array<{ mxHost: string; ip: string; reply: string; status: string }>;
    }>;
    assert.equal(recipient!.attempts.length, 1);
    assert.equal(recipient!.attempts[0]!.mxHost, "mx.example.com");
    assert.equal(recipient!.attempts[0]!.ip, "127.0.0.2");
    assert.equal(recipient!.attempts[0]!.status, "delivered");
    assert.match(recipient!.explanation, /^delivered .* at mx\.example\.com: 250 /);
  });

  it("counts a known mix in /metrics, including the delivery thread's outcomes", async () => {
    const before = await scrape();
    mixStart = Date.now();
    // n = 2 delivered, m = 1 bounced, k = 1 deferred (then dropped by an operator), j = 1 suppressed.
    const delivered = [await send("one@example.com", "one"), await send("two@example.com", "two")];
    const bounced = await send("permfail@example.com", "bounce");
    const deferred = await send("tempfail@example.com", "defer");
    assert.equal((await call("POST", "/v1/suppressions", { addresses: ["gone@example.com"] })).status, 200);
    const suppressed = await call("POST", "/v1/messages", {
      from: "app@signed.example",
      to: ["gone@example.com"],
      subject: "suppressed",
      text: "x",
    });
    assert.deepEqual(suppressed.body.recipients, [{ address: "gone@example.com", state: "dropped" }]);
    for (const id of delivered)
      await waitUntil(async () => (await states(id)).join() === "delivered", "delivered");
    await waitUntil(async () => (await states(bounced)).join() === "bounced", "bounced");
    await waitUntil(async () => (await states(deferred)).join() === "deferred", "deferred");
    const why = await call("GET", `/v1/messages/${deferred}`);
    assert.match(
      why.body.recipients[0].explanation,
      /^deferred 1 time: 451 4\.2\.1 .* at mx\.example\.com; next attempt .* UTC; expires in 7\d h$/,
    );
    assert.deepEqual((await call("POST", `/v1/messages/${deferred}/delete`)).body, {
      id: deferred,
      recipients: 1,
    });

    const after = await scrape();
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    assert.equal(delta('petrel_messages_accepted_total{via="http"}'), 5);
    assert.equal(delta('petrel_recipients_total{outcome="delivered"}'), 2);
    assert.equal(delta('petrel_recipients_total{outcome="bounced"}'), 1);
    assert.equal(delta('petrel_recipients_bounced_total{class="invalid-recipient"}'), 1);
    assert.equal(delta('petrel_recipients_total{outcome="deferred"}'), 1);
    assert.equal(delta('petrel_recipients_total{outcome="dropped"}'), 2);
    assert.equal(delta('petrel_recipients_dropped_total{reason="suppressed"}'), 1);
    assert.equal(delta('petrel_recipients_dropped_total{reason="operator"}'), 1);
    assert.equal(after.get("petrel_accept_to_delivery_seconds_count"), 3);
  });

  it("counts the same mix in GET /v1/stats and petrel stats, for the key's account only", async () => {
    const q = `since=${new Date(mixStart).toISOString()}&interval=hour`;
    const stats = await call("GET", `/v1/stats?${q}`);
    assert.equal(stats.status, 200, stats.text);
    const totals = stats.body.totals;
    assert.equal(totals.processed, 5);
    assert.equal(totals.delivered, 2);
    assert.equal(totals.deferred, 1);
    assert.deepEqual(totals.bounced, { total: 1, hard: 1, soft: 0, classes: { "invalid-recipient": 1 } });
    assert.deepEqual(totals.dropped, { total: 2, reasons: { suppressed: 1, operator: 1 } });
    assert.equal(totals.expired, 0);
    const buckets = stats.body.buckets as Array<{ start: string; processed: number }>;
    assert.ok(buckets.length >= 1 && buckets.length <= 2, stats.text);
    assert.equal(new Date(buckets[0]!.start).getTime() % 3_600_000, 0, "hour buckets");
    assert.equal(
      buckets.reduce((n, b) => n + b.processed, 0),
      5,
    );
    // The recipient-domain filter (every recipient is at example.com) and a category no message has.
    const domain = await call("GET", `/v1/stats?${q}&domain=EXAMPLE.com`);
    assert.equal(domain.body.totals.processed, 5, domain.text);
    assert.equal((await call("GET", `/v1/stats?${q}&domain=other.example`)).body.totals.processed, 0);
    assert.equal((await call("GET", `/v1/stats?${q}&category=none`)).body.totals.processed, 0);
    // Another account's key sees its own (empty) counts; a send-only key lacks events.read.
    const other = await call("GET", `/v1/stats?${q}`, undefined, otherReader);
    assert.equal(other.status, 200, other.text);
    assert.equal(other.body.totals.processed, 0);
    assert.equal(other.body.totals.delivered, 0);
    const forbidden = await call("GET", "/v1/stats", undefined, sendOnly);
    assert.equal(forbidden.status, 403, forbidden.text);
    assert.match(forbidden.text, /events\.read/);
    const bad = await call("GET", "/v1/stats?interval=minute");
    assert.equal(bad.status, 400, bad.text);
    const tooMany = await call("GET", "/v1/stats?interval=hour&since=0");
    assert.equal(tooMany.status, 400, tooMany.text);
    assert.match(tooMany.text, /at most 1000/);
    const backwards = await call("GET", `/v1/stats?since=${Date.now() / 1000 + 60}`);
    assert.equal(backwards.status, 400, backwards.text);
    assert.equal(JSON.parse(backwards.text).type, "urn:petrel:problem:invalid-input");

    // The CLI reads the same service.
    const printed = JSON.parse(
      await petrelOk(dataDir, ["stats", "--since", new Date(mixStart).toISOString(), "--json"]),
    );
    assert.deepEqual(printed.totals, totals);
    const table = await petrelOk(dataDir, ["stats", "--since", (mixStart / 1000).toFixed(3)]);
    assert.match(table, /^total +5 +2 +1 +1 +1 +2 +0 +0$/m);
  });

  it("replays a webhook's events from a time: the same events again, signed", async () => {
    const start = Date.now();
    const hook = await call("POST", "/v1/webhooks", { url: receiver.url, events: ["delivered"] });
    assert.equal(hook.status, 201, hook.text);
    const id = await send("replay@example.com", "replay");
    const delivered = (e: { type: string; messageId: string }) =>
      e.type === "delivered" && e.messageId === id;
    const sentTimes = () => receiver.posts.flatMap((p) => p.events).filter(delivered).length;
    await waitUntil(() => sentTimes() === 1, "the delivered event at the webhook");
    const first = receiver.posts.flatMap((p) => p.events).find(delivered)!;

    const replay = await call("POST", `/v1/webhooks/${hook.body.id}/replay`, {
      since: new Date(start).toISOString(),
    });
    assert.equal(replay.status, 200, replay.text);
    assert.equal(replay.body.rewound, true);
    await waitUntil(() => sentTimes() === 2, "the replayed event");
    const again = receiver.posts.flatMap((p) => p.events).filter(delivered)[1]!;
    assert.equal(again.id, first.id, "the same event id (receivers deduplicate)");
    const post = receiver.posts.at(-1)!;
    assert.ok(signatureValid(String(hook.body.secret), post.signature, post.body));
    const other = await call("POST", "/v1/webhooks/999999/replay", { since: 0 });
    assert.equal(other.status, 404);
  });

  async function scrape(): Promise<Map<string, number>> {
    const text = await (await fetch(`${base}/metrics`)).text();
    const values = new Map<string, number>();
    for (const line of text.split("\n")) {
      const m = /^(petrel_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$/.exec(line);
      if (m) values.set(m[1]!, Number(m[2]));
    }
    return values;
  }
});

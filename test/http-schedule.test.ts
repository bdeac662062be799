/**
 * Scheduled send and cancel (issue 9) through a real `petrel serve`, delivering to the test MX
 * on loopback (test DNS): send_at two seconds ahead is delivered after it, never before, and is
 * shown `scheduled` meanwhile (message read, explanation, queue list); the same over SMTP with
 * X-Petrel-Send-At (removed before delivery, invalid → 550 5.6.0); a cancel before send_at
 * delivers nothing and records dropped/cancelled; refusals of past and too-distant times; a key
 * of another account cannot cancel (404). "Nothing delivered" is observed without sleeping: a
 * witness message scheduled later than the cancelled one is waited for. Then the bulk queue
 * actions by filter (POST /v1/queue/{action}, petrel queue <action> --domain/--state): hold,
 * release (keeping the send time), cancel and delete by domain and state, for the key's
 * account only.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { immediateDeliveryTo } from "./support/delivery-config.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { waitUntil } from "./support/events-rig.js";
import {
  type PetrelProcess,
  petrelOk,
  readCa,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";

describe("scheduled send and cancel", () => {
  let mx: TestMx;
  let dns: TestDnsServer;
  let dataDir: string;
  let petrel: PetrelProcess;
  let key: string;
  let otherKey: string;
  let adminKey: string;
  let base: string;

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

  const message = (to: string, extra: Record<string, unknown> = {}) => ({
    from: "app@sched.example",
    to: [to],
    subject: `to ${to}`,
    text: "scheduled",
    ...extra,
  });

  const deliveredTo = (address: string) => mx.messages.filter((m) => m.to.includes(address));

  before(async () => {
    mx = await startTestMx({ address: "127.0.0.2" });
    dns = await startDnsServer({
      "example.com": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
      "mx.example.com": { A: ["127.0.0.2"] },
    });
    dataDir = tempDataDir("petrel-schedule-");
    await petrelOk(dataDir, ["senders", "add", "app@sched.example"]);
    await petrelOk(dataDir, ["accounts", "create", "other"]);
    key = (
      await petrelOk(dataDir, [
        "keys",
        "create",
        "-n",
        "app",
        "--scopes",
        "mail.send,messages.read,events.read",
      ])
    ).trim();
    adminKey = (await petrelOk(dataDir, ["keys", "create", "-n", "ops", "--scopes", "admin"])).trim();
    otherKey = (
      await petrelOk(dataDir, ["keys", "create", "-n", "other", "--account", "other", "--scopes", "admin"])
    ).trim();
    petrel = await startPetrel(dataDir, {
      config: {
        dns: { servers: [dns.server], timeoutMs: 2000, tries: 2 },
        delivery: immediateDeliveryTo(mx.port),
      },
    });
    base = `http://127.0.0.1:${petrel.ports.http}`;
  });

  after(async () => {
    await petrel?.stop();
    await mx?.close();
    await dns?.close();
    removeDataDir(dataDir);
  });

  it("delivers a message with send_at two seconds ahead after it, not before, shown scheduled meanwhile", async () => {
    const sendAt = Date.now() + 2000;
    const sent = await call("POST", "/v1/messages", message("later@example.com", { send_at: sendAt / 1000 }));
    assert.equal(sent.status, 202, sent.text);
    assert.deepEqual(sent.body.recipients, [{ address: "later@example.com", state: "scheduled" }]);
    assert.equal(Date.parse(sent.body.send_at), Math.round(sendAt));
    const id = sent.body.id as string;

    const shown = await call("GET", `/v1/messages/${id}`);
    // Read before send_at (the assertion says so if this machine was too slow to).
    if (Date.now() < sendAt - 200) {
      assert.equal(shown.body.recipients[0].state, "scheduled", shown.text);
      assert.match(shown.body.recipients[0].explanation, /^scheduled for \d\d:\d\d UTC$/);
      assert.equal(shown.body.sendAt, Math.round(sendAt));
      // Expiry counts from send_at (queue.maxLifetimeMs, 72 h).
      assert.equal(shown.body.expiresAt, Math.round(sendAt) + 72 * 3600_000);
      const listed = JSON.parse(await petrelOk(dataDir, ["queue", "list", "--json"]));
      const scheduledOnly = JSON.parse(
        await petrelOk(dataDir, ["queue", "list", "--state", "scheduled", "--json"]),
      );
      const search = await call("GET", "/v1/messages?state=scheduled");
      const queuedSearch = await call("GET", "/v1/messages?state=queued");
      if (Date.now() < sendAt) {
        assert.equal(listed.counts.byState.scheduled, 1, JSON.stringify(listed.counts));
        const destination = listed.counts.byDestination.find(
          (d: { domain: string }) => d.domain === "example.com",
        );
        assert.equal(destination?.states.queued, undefined, JSON.stringify(listed.counts.byDestination));
        assert.equal(destination?.states.scheduled, 1, JSON.stringify(listed.counts.byDestination));
        assert.deepEqual(
          scheduledOnly.messages.map((m: { id: string }) => m.id),
          [id],
        );
        assert.equal(search.status, 200, search.text);
        assert.deepEqual(
          search.body.messages.map((m: { id: string }) => m.id),
          [id],
        );
        assert.ok(!queuedSearch.body.messages.some((m: { id: string }) => m.id === id), queuedSearch.text);
      }
    }

    await waitUntil(() => deliveredTo("later@example.com").length === 1, "the scheduled message at the MX");
    const received = deliveredTo("later@example.com")[0]!;
    assert.ok(received.at >= sendAt, `delivered ${sendAt - received.at} ms before send_at`);
    // The outcome commits just after the MX's 250 was read: wait for its event.
    await waitUntil(
      async () => (await call("GET", `/v1/events?message=${id}&type=delivered`)).body.events?.length === 1,
      "the delivered event",
    );
  });

  it("schedules over SMTP with X-Petrel-Send-At (removed before delivery); an invalid one is 550 5.6.0", async () => {
    const session = await RawSmtpSession.open({
      port: petrel.ports.submission!,
      starttls: true,
      ca: readCa(petrel),
      apiKey: key,
    });
    try {
      const submit = (to: string, field: string) =>
        session.send({
          from: "app@sched.example",
          to: [to],
          content: Buffer.from(
            `From: app@sched.example\r\nTo: ${to}\r\nSubject: smtp scheduled\r\n${field}\r\nBody\r\n`,
          ),
        });
      const bad = await submit("bad@example.com", "X-Petrel-Send-At: tomorrow at noon");
      assert.equal(bad.code, 550, bad.text);
      assert.match(bad.text, /^5\.6\.0 X-Petrel-Send-At/);
      const far = await submit(
        "far@example.com",
        `X-Petrel-Send-At: ${Math.floor(Date.now() / 1000) + 73 * 3600}`,
      );
      assert.equal(far.code, 550, far.text);
      assert.match(far.text, /^5\.6\.0 .*ahead/);
      const past = await submit("past@example.com", "X-Petrel-Send-At: 2020-01-01T00:00:00Z");
      assert.equal(past.code, 550, past.text);
      assert.match(past.text, /^5\.6\.0 .*in the past/);

      const sendAt = Date.now() + 2000;
      const ok = await submit(
        "smtp-later@example.com",
        `X-Petrel-Send-At: ${new Date(sendAt).toISOString()}`,
      );
      assert.equal(ok.code, 250, ok.text);
    } finally {
      await session.quit();
    }
    await waitUntil(() => deliveredTo("smtp-later@example.com").length === 1, "the SMTP-scheduled message");
    const received = deliveredTo("smtp-later@example.com")[0]!;
    assert.doesNotMatch(received.content.toString("latin1"), /X-Petrel-Send-At/i);
    for (const refused of ["bad@example.com", "far@example.com", "past@example.com"])
      assert.equal(deliveredTo(refused).length, 0);
  });

  it("cancels before send_at: nothing delivered, dropped with reason cancelled; another account gets 404", async () => {
    const sendAt = Date.now() + 3000;
    const cancelled = await call(
      "POST",
      "/v1/messages",
      message("cancel@example.com", { send_at: new Date(sendAt).toISOString() }),
    );
    assert.equal(cancelled.status, 202, cancelled.text);
    // The witness goes to the same MX a little after the cancelled one was due.
    const batch = await call("POST", "/v1/messages/batch", {
      messages: [message("witness@example.com", { send_at: new Date(sendAt + 1000).toISOString() })],
    });
    assert.equal(batch.status, 200, batch.text);
    assert.equal(batch.body.results[0].ok, true, batch.text);
    assert.equal(batch.body.results[0].recipients[0].state, "scheduled");
    const id = cancelled.body.id as string;

    assert.equal((await call("POST", `/v1/messages/${id}/cancel`, undefined, otherKey)).status, 404);
    const done = await call("POST", `/v1/messages/${id}/cancel`);
    assert.equal(done.status, 200, done.text);
    assert.deepEqual(done.body, { id, recipients: 1 });
    assert.ok(Date.now() < sendAt, "cancelled before send_at (a slow machine makes this test meaningless)");

    await waitUntil(() => deliveredTo("witness@example.com").length === 1, "the witness message");
    assert.equal(deliveredTo("cancel@example.com").length, 0, "the cancelled message was delivered");
    const events = await call("GET", `/v1/events?message=${id}`);
    assert.deepEqual(
      events.body.events.map((e: { type: string; reason: string | null }) => [e.type, e.reason]),
      [
        ["processed", null],
        ["dropped", "cancelled"],
      ],
    );
    const shown = await call("GET", `/v1/messages/${id}`);
    assert.equal(shown.body.recipients[0].state, "dropped");
    // Nothing left to cancel; the CLI says the same.
    assert.deepEqual((await call("POST", `/v1/messages/${id}/cancel`)).body, { id, recipients: 0 });
    assert.deepEqual(JSON.parse(await petrelOk(dataDir, ["queue", "cancel", id, "--json"])), {
      id,
      recipients: 0,
    });
  });

  it("refuses send_at in the past, too far ahead, or not a time, with 400 problems", async () => {
    for (const [sendAt, pattern] of [
      ["2020-01-01T00:00:00Z", /in the past/],
      [Date.now() / 1000 + 73 * 3600, /ahead/],
      ["next tuesday", /RFC 3339/],
    ] as const) {
      const answer = await call("POST", "/v1/messages", message("refused@example.com", { send_at: sendAt }));
      assert.equal(answer.status, 400, answer.text);
      assert.equal(answer.body.type, "urn:petrel:problem:invalid-input");
      assert.match(answer.body.detail, pattern);
    }
    const mime = await call("POST", "/v1/messages/mime", {
      from: "app@sched.example",
      to: ["refused@example.com"],
      raw: "From: app@sched.example\r\nTo: refused@example.com\r\nSubject: x\r\n\r\nx\r\n",
      send_at: "2020-01-01T00:00:00Z",
    });
    assert.equal(mime.status, 400, mime.text);
  });

  it("acts on every message matching a filter: hold, release held for a domain, cancel, delete", async () => {
    const later = new Date(Date.now() + 120_000).toISOString();
    const ids: string[] = [];
    for (const to of ["a@bulk.example", "b@bulk.example", "c@bulk.example", "d@elsewhere.example"]) {
      const sent = await call("POST", "/v1/messages", message(to, { send_at: later }));
      assert.equal(sent.status, 202, sent.text);
      ids.push(sent.body.id);
    }
    const bulk = (action: string, body: unknown, as = adminKey) =>
      call("POST", `/v1/queue/${action}`, body, as);
    const held = await bulk("hold", { domain: "bulk.example" });
    assert.equal(held.status, 200, held.text);
    assert.deepEqual(held.body, {
      action: "hold",
      filter: { domain: "bulk.example", state: null },
      messages: 3,
      recipients: 3,
    });
    // Another account's key matches none of them; a key without admin may not.
    assert.equal(
      (await bulk("release", { domain: "bulk.example", state: "held" }, otherKey)).body.messages,
      0,
    );
    assert.equal((await bulk("release", { domain: "bulk.example", state: "held" }, key)).status, 403);
    // A bulk action needs a filter; an unknown action or state is refused.
    assert.equal((await bulk("delete", {})).status, 400);
    assert.equal((await bulk("explode", { domain: "bulk.example" })).status, 400);
    assert.equal((await bulk("release", { state: "sleeping" })).status, 400);

    const released = await bulk("release", { domain: "BULK.example", state: "held" });
    assert.deepEqual([released.body.messages, released.body.recipients], [3, 3], released.text);
    // Released before its send time, a scheduled message waits for it again.
    const shown = await call("GET", `/v1/messages/${ids[0]}`);
    assert.equal(shown.body.recipients[0].state, "scheduled", shown.text);
    // A bulk retry is for mail waiting after failures: scheduled messages keep their send time.
    assert.equal((await bulk("retry", { domain: "bulk.example" })).body.messages, 0);

    const cancelled = JSON.parse(
      await petrelOk(dataDir, ["queue", "cancel", "--domain", "bulk.example", "--state", "queued", "--json"]),
    );
    assert.deepEqual([cancelled.messages, cancelled.recipients], [3, 3]);
    const events = await call("GET", `/v1/events?message=${ids[1]}&type=dropped`);
    assert.deepEqual(
      events.body.events.map((e: { reason: string }) => e.reason),
      ["cancelled"],
    );
    const text = await petrelOk(dataDir, ["queue", "delete", "--domain", "elsewhere.example"]);
    assert.match(text, /^1 message\(s\) matched, 1 recipient\(s\) dropped$/m);
    const gone = await call("GET", `/v1/messages/${ids[3]}`);
    assert.equal(gone.body.recipients[0].state, "dropped");
  });
});

/**
 * Delivery against a receiving MX that misbehaves (test/support/raw-mx.ts, a raw TCP server):
 * replies longer than RFC 5321's 512 octets (§4.5.3.1.5), 1,000-line multiline replies, replies
 * that are not SMTP, a server that never answers, one that closes in the middle of a reply, and
 * one that sends bytes without end. Each ends in a precise outcome for the recipient (deferred or
 * bounced, with the reason stored and logged, bounded in size), the connection is closed, memory
 * stays bounded (the flood is cut after about a megabyte), and delivery goes on for other mail.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Rig, startRig } from "./support/delivery-rig.js";
import { type Misbehaviour, multiline, type RawMx, startRawMx } from "./support/raw-mx.js";

const zone = {
  "odd.test": { MX: [{ preference: 10, exchange: "mx.odd.test" }] },
  "mx.odd.test": { A: ["127.0.0.7"] },
};

describe("delivery: a misbehaving MX", () => {
  let mx: RawMx;
  let rig: Rig;

  before(async () => {
    mx = await startRawMx({ address: "127.0.0.7" });
    // One message per connection, so each test's misbehaviour meets a connection of its own.
    // Timeouts short enough for the silent server, long against a stalled machine otherwise.
    rig = await startRig(zone, {
      port: mx.port,
      maxMessagesPerConnection: 1,
      greetingTimeoutMs: 2000,
      commandTimeoutMs: 2000,
    });
  });

  after(async () => {
    await rig.close();
    await mx.close();
  });

  /** Sends one message to odd.test through an MX that misbehaves as told; returns its recipient. */
  let n = 0;
  async function deliverThrough(misbehaviour: Misbehaviour | undefined) {
    // A new recipient each time: a bounce puts its address on the suppression list.
    const to = `user${++n}@odd.test`;
    mx.misbehaviour = misbehaviour;
    const connections = mx.stats.connections;
    const id = await rig.enqueue([to]);
    const detail = await rig.settled(id, ["delivered", "bounced", "deferred"]);
    // Every connection it opened is closed again (no socket left hanging on a broken peer).
    await mx.waitForClosed(mx.stats.connections);
    assert.ok(mx.stats.connections > connections, "it connected");
    const [attempt] = await rig.store.listAttempts(id);
    const logLine = rig.logs.find((l) => l.queueId === id && /status=/.test(String(l.msg)));
    return { id, recipient: detail.recipientDetails[0]!, attempt: attempt!, logLine: String(logLine?.msg) };
  }

  it("bounces on an oversized 550 and keeps only the first 512 characters of it", async () => {
    const reply = `550 5.1.1 ${"x".repeat(5000)}`;
    const { recipient, attempt, logLine } = await deliverThrough({ at: "rcpt", reply });
    assert.equal(recipient.state, "bounced");
    assert.equal(recipient.lastReply, reply.slice(0, 512));
    assert.equal(attempt.reply, reply.slice(0, 512));
    assert.ok(logLine.length < 1000, `log line of ${logLine.length} characters`);
    assert.match(logLine, /dsn=5\.1\.1, status=bounced \(550 5\.1\.1 x+/);
  });

  it("defers on a 1,000-line 451 reply, keeping its start", async () => {
    const { recipient } = await deliverThrough({ at: "rcpt", reply: multiline(1000, "451", "4.2.1 busy") });
    assert.equal(recipient.state, "deferred");
    assert.match(recipient.lastReply!, /^451-line 1 of a very long reply 451-line 2 /);
    assert.ok(recipient.lastReply!.length <= 512);
  });

  it("delivers through 1,000-line EHLO and final replies", async () => {
    const ehlo = await deliverThrough({ at: "ehlo", reply: multiline(1000, "250", "raw.test") });
    assert.equal(ehlo.recipient.state, "delivered");
    const dot = await deliverThrough({ at: "dot", reply: multiline(1000, "250", "2.0.0 queued") });
    assert.equal(dot.recipient.state, "delivered");
    assert.match(dot.recipient.lastReply!, /^250-line 1 /);
    assert.ok(dot.recipient.lastReply!.length <= 512);
  });

  it("defers when the greeting is not SMTP at all", async () => {
    const { recipient } = await deliverThrough({ at: "greeting", reply: "hello, I am not an SMTP server" });
    assert.equal(recipient.state, "deferred");
    assert.match(
      recipient.lastReply!,
      /^451 4\.5\.0 malformed reply: hello, I am not an SMTP server \(greeting from /,
    );
  });

  it("defers, never bounces, on a reply code outside 2xx-5xx (RFC 5321 §4.2.1)", async () => {
    for (const reply of ["999 9.9.9 what is this", "600 no such class", "abc not even a code"]) {
      const { recipient } = await deliverThrough({ at: "rcpt", reply });
      assert.equal(recipient.state, "deferred", `${reply}: ${recipient.lastReply}`);
      assert.match(recipient.lastReply!, /^451 4\.5\.0 /, reply);
    }
    const { recipient } = await deliverThrough({ at: "dot", reply: "777 done?" });
    assert.equal(recipient.state, "deferred", String(recipient.lastReply));
    assert.match(recipient.lastReply!, /^451 4\.5\.0 /);
  });

  it("defers when the server never answers, at the greeting and after the content", async () => {
    const greeting = await deliverThrough({ at: "greeting", silent: true });
    assert.equal(greeting.recipient.state, "deferred");
    // RFC 3463 4.4.1: no answer from host.
    assert.match(greeting.recipient.lastReply!, /^451 4\.4\.1 .*timeout/i);
    const dot = await deliverThrough({ at: "dot", silent: true });
    assert.equal(dot.recipient.state, "deferred");
    assert.match(dot.recipient.lastReply!, /^4\d\d 4\.4\.2 .*(timeout|timed out)/i);
    assert.equal(mx.stats.open, 0, "Petrel closed the silent connections");
  });

  it("defers when the server closes in the middle of a reply", async () => {
    const dot = await deliverThrough({ at: "dot", cut: "250-2.0.0 Ok\r\n250-que" });
    assert.equal(dot.recipient.state, "deferred");
    assert.match(dot.recipient.lastReply!, /^451 4\.4\.2 lost connection/);
    const rcpt = await deliverThrough({ at: "rcpt", cut: "55" });
    assert.equal(rcpt.recipient.state, "deferred");
    assert.match(rcpt.recipient.lastReply!, /^4\d\d 4\.4\.2 /);
  });

  it("cuts a server that sends bytes without end, after about a megabyte", async () => {
    for (const at of ["greeting", "rcpt"] as const) {
      const before = mx.stats.bytesWritten;
      const { recipient } = await deliverThrough({ at, flood: true });
      assert.equal(recipient.state, "deferred", at);
      assert.match(recipient.lastReply!, /^4\d\d 4\.\d\.\d .*exceeds/, at);
      // Petrel read about 1 MiB and hung up; socket buffers on both sides hold a few more.
      const written = mx.stats.bytesWritten - before;
      assert.ok(written >= 1024 * 1024, `${written} bytes written`);
      assert.ok(written < 32 * 1024 * 1024, `${written} bytes written before Petrel hung up`);
    }
  });

  it("still delivers normally afterwards", async () => {
    const accepted = mx.stats.accepted;
    const { recipient } = await deliverThrough(undefined);
    assert.equal(recipient.state, "delivered");
    assert.equal(recipient.lastReply, "250 2.0.0 Ok: queued");
    assert.equal(mx.stats.accepted, accepted + 1);
  });
});

/**
 * Delivery against real DNS and SMTP servers on loopback: MX preference and fallback, implicit MX,
 * null MX, NXDOMAIN, SERVFAIL then recovery, forced IPv4, per-recipient results in one transaction,
 * message-level failures, SIZE and SMTPUTF8, and retries on a controllable clock through to expiry.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Rig, startRig, statesOf } from "./support/delivery-rig.js";
import { CLOSED_PORT } from "./support/ports.js";
import { mxPorts, startTestMx, type TestMx } from "./support/test-mx.js";

describe("delivery: MX resolution and outcomes", () => {
  let mx2: TestMx;
  let mx3: TestMx;
  let small: TestMx;
  let rig: Rig;
  let ports: Record<string, number>;

  before(async () => {
    // Each MX on its own ephemeral port, which delivery.mxPorts points at; nothing listens on
    // 127.0.0.5 (or ::1) at the port delivery uses for them.
    mx2 = await startTestMx({ address: "127.0.0.2" });
    mx3 = await startTestMx({ address: "127.0.0.3" });
    small = await startTestMx({ address: "127.0.0.6", size: 200, smtputf8: false });
    ports = { ...mxPorts(mx2, mx3, small), "127.0.0.5": CLOSED_PORT, "::1": CLOSED_PORT };
    rig = await startRig(
      {
        "pref.test": {
          MX: [
            { preference: 20, exchange: "mx3.pref.test" },
            { preference: 10, exchange: "mx2.pref.test" },
          ],
        },
        "mx2.pref.test": { A: ["127.0.0.2"] },
        "mx3.pref.test": { A: ["127.0.0.3"] },
        "fallback.test": {
          MX: [
            { preference: 10, exchange: "dead.fallback.test" },
            { preference: 20, exchange: "mx3.pref.test" },
          ],
        },
        "dead.fallback.test": { A: ["127.0.0.5"] },
        "implicit.test": { A: ["127.0.0.3"] },
        "null.test": { MX: [{ preference: 0, exchange: "." }] },
        "broken.test": { behaviour: "servfail" },
        "v6.test": { MX: [{ preference: 10, exchange: "dual.v6.test" }] },
        "dual.v6.test": { AAAA: ["::1"], A: ["127.0.0.2"] },
        "small.test": { MX: [{ preference: 10, exchange: "mx.small.test" }] },
        "mx.small.test": { A: ["127.0.0.6"] },
      },
      { port: mx2.port, mxPorts: ports },
    );
  });

  after(async () => {
    await rig.close();
    await Promise.all([mx2.close(), mx3.close(), small.close()]);
  });

  it("delivers to the most preferred MX", async () => {
    const id = await rig.enqueue(["ann@pref.test"]);
    const detail = await rig.settled(id);
    assert.deepEqual(statesOf(detail), { "ann@pref.test": "delivered" });
    const [attempt] = await rig.store.listAttempts(id);
    assert.equal(attempt!.mxHost, "mx2.pref.test");
    assert.equal(attempt!.ip, "127.0.0.2");
    assert.match(attempt!.reply, /^250 /);
    assert.ok(mx2.messages.some((m) => m.to.includes("ann@pref.test")));
  });

  it("delivers lines that begin with a dot byte for byte, message after message", async () => {
    // The content leaves corked with its end mark (smtp-client.ts corkedContent): dot-stuffing
    // and the end of DATA must come out the same as from a plain Buffer.
    const contents = [
      "Subject: dots\r\n\r\n.leading\r\n..\r\n.\r\n...\r\nend\r\n",
      "Subject: dots 2\r\n\r\n.\r\n",
    ];
    const ids = await Promise.all(
      contents.map((c, i) => rig.enqueue([`dots${i}@pref.test`], { content: Buffer.from(c) })),
    );
    for (const id of ids) assert.equal((await rig.settled(id)).recipientDetails[0]!.state, "delivered");
    contents.forEach((c, i) => {
      const got = mx2.messages.find((m) => m.to.includes(`dots${i}@pref.test`));
      assert.ok(got, `dots${i} received`);
      const text = got.content.toString("latin1");
      assert.ok(text.endsWith(c.slice(c.indexOf("\r\n\r\n"))), JSON.stringify(text));
    });
  });

  it("falls back to the next MX when the first refuses the connection", async () => {
    const id = await rig.enqueue(["bob@fallback.test"]);
    await rig.settled(id);
    const [attempt] = await rig.store.listAttempts(id);
    assert.equal(attempt!.mxHost, "mx3.pref.test");
    assert.ok(mx3.messages.some((m) => m.to.includes("bob@fallback.test")));
  });

  it("uses the domain's own address when it has no MX (implicit MX)", async () => {
    const id = await rig.enqueue(["cy@implicit.test"]);
    assert.deepEqual(statesOf(await rig.settled(id)), { "cy@implicit.test": "delivered" });
    assert.equal((await rig.store.listAttempts(id))[0]!.mxHost, "implicit.test");
  });

  it("bounces at once for a null MX (5.1.10) and for NXDOMAIN (5.1.2)", async () => {
    const id = await rig.enqueue(["dee@null.test", "eve@nowhere.test"]);
    const detail = await rig.settled(id);
    assert.deepEqual(statesOf(detail), { "dee@null.test": "bounced", "eve@nowhere.test": "bounced" });
    const replies = Object.fromEntries(detail.recipientDetails.map((r) => [r.address, r.lastReply]));
    assert.match(replies["dee@null.test"]!, /^556 5\.1\.10 /);
    assert.match(replies["eve@nowhere.test"]!, /^550 5\.1\.2 /);
    const attempts = await rig.store.listAttempts(id);
    assert.equal(attempts.length, 2);
    assert.equal(attempts[0]!.mxHost, null, "no connection was made");
  });

  it("defers on SERVFAIL and delivers once the DNS recovers", async () => {
    const id = await rig.enqueue(["fay@broken.test"]);
    const deferred = await rig.settled(id, ["deferred"]);
    const r = deferred.recipientDetails[0]!;
    assert.match(r.lastReply!, /^451 4\.4\.3 DNS lookup failed/);
    assert.equal(r.nextAttemptAt, rig.clock.now() + 60_000, "first retry after one minute");
    rig.dns.set("broken.test", { MX: [{ preference: 10, exchange: "mx2.pref.test" }] });
    rig.clock.advance(60_000);
    rig.poke();
    assert.deepEqual(statesOf(await rig.settled(id)), { "fay@broken.test": "delivered" });
  });

  it("does not even ask for AAAA records when IPv4 is forced, and falls back from IPv6 otherwise", async () => {
    const id = await rig.enqueue(["gus@v6.test"]);
    await rig.settled(id);
    const attempt = (await rig.store.listAttempts(id))[0]!;
    // ::1 on the MX port refuses; the IPv4 address takes the mail.
    assert.equal(attempt.ip, "127.0.0.2");
    assert.ok(rig.dns.queries.some((q) => q.type === "AAAA" && q.name === "dual.v6.test"));
    const v4 = await startRig(
      {
        "v6.test": { MX: [{ preference: 10, exchange: "dual.v6.test" }] },
        "dual.v6.test": { AAAA: ["::1"], A: ["127.0.0.2"] },
      },
      { port: mx2.port, mxPorts: ports, forceIpv4: true },
    );
    try {
      const id4 = await v4.enqueue(["hal@v6.test"]);
      assert.deepEqual(statesOf(await v4.settled(id4)), { "hal@v6.test": "delivered" });
      assert.ok(!v4.dns.queries.some((q) => q.type === "AAAA"));
    } finally {
      await v4.close();
    }
  });

  it("sends one transaction for several recipients and records each RCPT's reply", async () => {
    const before = mx2.messages.length;
    const id = await rig.enqueue([
      "ok1@pref.test",
      "permfail@pref.test",
      "tempfail@pref.test",
      "ok2@pref.test",
    ]);
    const detail = await rig.settled(id, ["delivered", "bounced", "deferred"]);
    assert.deepEqual(statesOf(detail), {
      "ok1@pref.test": "delivered",
      "permfail@pref.test": "bounced",
      "tempfail@pref.test": "deferred",
      "ok2@pref.test": "delivered",
    });
    const received = mx2.messages.slice(before);
    assert.equal(received.length, 1, "one transaction");
    assert.deepEqual(received[0]!.to, ["ok1@pref.test", "ok2@pref.test"]);
    const replies = Object.fromEntries(detail.recipientDetails.map((r) => [r.address, r.lastReply]));
    assert.match(replies["permfail@pref.test"]!, /^550 5\.1\.1 /);
    assert.match(replies["tempfail@pref.test"]!, /^451 4\.2\.1 /);
    // One Postfix-style log line per recipient.
    const lines = rig.logs.filter((l) => l.queueId === id).map((l) => String(l.msg));
    assert.equal(lines.length, 4);
    assert.ok(
      lines.some((l) =>
        new RegExp(
          `^${id}: to=<ok1@pref\\.test>, relay=mx2\\.pref\\.test\\[127\\.0\\.0\\.2\\]:${mx2.port}, delay=\\d+\\.\\d\\d, tls=none, dsn=2\\.0\\.0, status=sent \\(250 `,
        ).test(l),
      ),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) => /to=<permfail@pref\.test>.*dsn=5\.1\.1, status=bounced \(550 5\.1\.1 /.test(l)),
    );
    assert.ok(lines.some((l) => /to=<tempfail@pref\.test>.*status=deferred \(451 4\.2\.1 /.test(l)));
  });

  it("defers a message whose connection is cut in DATA, and bounces one refused after DATA", async () => {
    const cut = await rig.enqueue(["disconnect-in-data@pref.test"]);
    const refused = await rig.enqueue(["data-permfail@pref.test"]);
    const cutDetail = await rig.settled(cut, ["deferred"]);
    assert.match(cutDetail.recipientDetails[0]!.lastReply!, /^451 4\.4\.2 lost connection/);
    const refusedDetail = await rig.settled(refused);
    assert.equal(refusedDetail.recipientDetails[0]!.state, "bounced");
    assert.match(refusedDetail.recipientDetails[0]!.lastReply!, /^554 5\.6\.0 /);
  });

  it("bounces a message over the server's SIZE, and one needing SMTPUTF8 where it is not offered", async () => {
    const big = await rig.enqueue(["ivy@small.test"], {
      content: Buffer.from(`Subject: big\r\n\r\n${"x".repeat(500)}\r\n`),
    });
    const utf8 = await rig.enqueue(["jörg@small.test"]);
    // An ASCII envelope with UTF-8 in the header section needs SMTPUTF8 too (RFC 6532).
    const utf8Header = await rig.enqueue(["kim@small.test"], {
      content: Buffer.from("From: app@pref.test\r\nSubject: Grüße\r\n\r\nbody\r\n"),
    });
    const bigDetail = await rig.settled(big);
    assert.match(bigDetail.recipientDetails[0]!.lastReply!, /^552 5\.3\.4 /);
    const utf8Detail = await rig.settled(utf8);
    assert.equal(utf8Detail.recipientDetails[0]!.state, "bounced");
    assert.match(utf8Detail.recipientDetails[0]!.lastReply!, /^553 5\.6\.7 SMTPUTF8 is required/);
    const utf8HeaderDetail = await rig.settled(utf8Header);
    assert.match(utf8HeaderDetail.recipientDetails[0]!.lastReply!, /^553 5\.6\.7 SMTPUTF8 is required/);
    assert.equal(small.messages.length, 0);
  });

  it("retries on the backoff schedule until the message expires", async () => {
    const id = await rig.enqueue(["tempfail+exp@pref.test"], { lifetimeMs: 3 * 3600_000 });
    const start = rig.clock.now();
    const deadline = start + 3 * 3600_000;
    const gaps: number[] = [];
    let previous = start;
    for (let attempt = 1; ; attempt++) {
      await rig.attempts(id, attempt);
      const detail = (await rig.settled(id, ["deferred", "expired"]))!;
      const r = detail.recipientDetails[0]!;
      if (r.state === "expired") break;
      gaps.push(r.nextAttemptAt! - previous);
      previous = r.nextAttemptAt!;
      rig.clock.advance(r.nextAttemptAt! - rig.clock.now());
      rig.poke();
    }
    // 1m, 5m, 15m, 30m, 1h, then capped by the 3 h lifetime: one last try at expiry, then expired.
    assert.deepEqual(
      gaps.map((g) => g / 60_000),
      [1, 5, 15, 30, 60, 69],
    );
    assert.equal(rig.clock.now(), deadline);
    const attempts = await rig.store.listAttempts(id);
    assert.equal(attempts.length, 7);
    assert.equal(attempts.at(-1)!.status, "expired");
  });
});

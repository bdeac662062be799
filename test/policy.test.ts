import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { addTraceFields, headerSenders, readHeaderSection } from "../src/message/headers.js";
import { AuthThrottle } from "../src/policy/auth-throttle.js";
import { checkEnvelopeSender, checkHeaderSenders } from "../src/policy/sender.js";

const identities = { domains: new Set(["your-app.com"]), addresses: new Set(["solo@other.example"]) };

describe("sender policy", () => {
  it("accepts verified domains and single senders, case-insensitively in the domain", () => {
    assert.equal(checkEnvelopeSender(identities, "noreply@Your-App.COM").kind, "accept");
    assert.equal(checkEnvelopeSender(identities, "solo@OTHER.example").kind, "accept");
  });

  it("rejects other addresses, subdomains and the null sender with 550 5.7.1", () => {
    for (const address of ["x@other.example", "a@mail.your-app.com", "", "Solo@other.example"]) {
      const verdict = checkEnvelopeSender(identities, address);
      assert.equal(verdict.kind, "reject", address);
      if (verdict.kind === "reject")
        assert.deepEqual([verdict.smtpCode, verdict.enhancedCode], [550, "5.7.1"]);
    }
  });

  it("checks every From and Sender address", () => {
    const check = (headers: string) =>
      checkHeaderSenders(
        identities,
        headerSenders(readHeaderSection(Buffer.from(`${headers}\r\n\r\nbody\r\n`))),
      );
    assert.equal(check('From: "App" <noreply@your-app.com>').kind, "accept");
    assert.equal(check("From: a@your-app.com,\r\n b@evil.example").kind, "reject");
    assert.equal(check("From: a@your-app.com\r\nSender: x@evil.example").kind, "reject");
    assert.equal(check("fRoM: =?utf-8?q?J=C3=BCrgen?= <solo@other.example>").kind, "accept");
    const missing = check("Subject: no from");
    assert.ok(missing.kind === "reject" && missing.enhancedCode === "5.6.0");
    const twice = check("From: a@your-app.com\r\nFrom: a@your-app.com");
    assert.ok(twice.kind === "reject" && twice.enhancedCode === "5.6.0");
  });

  it("reads each From value afresh past the memo's bound, and the same value the same way", () => {
    const from = (value: string) =>
      headerSenders(readHeaderSection(Buffer.from(`From: ${value}\r\n\r\nbody\r\n`))).from;
    assert.deepEqual(from('"App" <noreply@your-app.com>'), ["noreply@your-app.com"]);
    // 600 distinct values push the first out of the memo (512 entries): it is parsed again.
    for (let i = 0; i < 600; i++) assert.deepEqual(from(`"U${i}" <u${i}@x.example>`), [`u${i}@x.example`]);
    assert.deepEqual(from('"App" <noreply@your-app.com>'), ["noreply@your-app.com"]);
    assert.deepEqual(from('"App" <noreply@your-app.com>'), ["noreply@your-app.com"]);
    // Past the key bound (256 characters) nothing is kept, and the result is the same.
    const long = `${"x".repeat(300)} <long@x.example>, other@y.example`;
    assert.deepEqual(from(long), ["long@x.example", "other@y.example"]);
    assert.deepEqual(from(long), ["long@x.example", "other@y.example"]);
    // What a caller gets is its own: changing it does not change the next message's result.
    (from('"App" <noreply@your-app.com>') as string[]).push("evil@x.example");
    assert.deepEqual(from('"App" <noreply@your-app.com>'), ["noreply@your-app.com"]);
  });
});

describe("trace fields", () => {
  it("adds Received, and Message-ID and Date only when missing", () => {
    const original = Buffer.from("From: a@your-app.com\r\nSubject: hi\r\n\r\nbody\r\n");
    const trace = {
      queueId: "01ABC",
      hostname: "relay.test",
      heloName: "client.example",
      clientIp: "127.0.0.1",
      protocol: "ESMTPSA",
      tls: "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384",
      date: new Date(Date.UTC(2026, 10, 27, 18, 0, 0)),
    };
    const out = addTraceFields(original, readHeaderSection(original), trace).toString();
    assert.match(
      out,
      /^Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n\tby relay\.test \(Petrel\) with ESMTPSA id 01ABC/,
    );
    assert.match(out, /\r\nMessage-ID: <01ABC@relay\.test>\r\n/);
    assert.match(out, /\r\nDate: Fri, 27 Nov 2026 18:00:00 \+0000\r\n/);
    assert.ok(out.endsWith(original.toString()));
    const complete = Buffer.from(
      "Message-ID: <x@y>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\nFrom: a@b.c\r\n\r\nx\r\n",
    );
    const out2 = addTraceFields(complete, readHeaderSection(complete), trace).toString();
    assert.equal(out2.match(/^Message-ID:/gim)?.length, 1);
    assert.equal(out2.match(/^Date:/gim)?.length, 1);
  });
});

describe("AUTH failure throttle", () => {
  it("locks an address after maxFailures within the window, until the lockout passes", () => {
    let now = 0;
    const throttle = new AuthThrottle({ maxFailures: 3, windowMs: 1000, lockoutMs: 5000, now: () => now });
    assert.equal(throttle.recordFailure("1.2.3.4"), false);
    now = 900;
    assert.equal(throttle.recordFailure("1.2.3.4"), false);
    now = 2000; // the first two have left the window
    assert.equal(throttle.recordFailure("1.2.3.4"), false);
    assert.equal(throttle.recordFailure("1.2.3.4"), false);
    assert.equal(throttle.recordFailure("1.2.3.4"), true);
    assert.equal(throttle.isLocked("1.2.3.4"), true);
    assert.equal(throttle.isLocked("5.6.7.8"), false);
    now = 7001;
    assert.equal(throttle.isLocked("1.2.3.4"), false);
  });
});

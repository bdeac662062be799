/**
 * Unit tests of the hardening pieces (issue 13): the AUTH throttle's lockout that does not
 * restart, the signer that never lets a verified domain's mail out unsigned, the PROXY protocol
 * parser (v1 and v2, byte layouts from HAProxy's doc/proxy-protocol.txt), the memory budget's
 * rules, and the log sink against a real /dev/full.
 */
import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createMessageSigning, SigningUnavailableError } from "../src/domains/signer.js";
import { LogSink } from "../src/log-sink.js";
import { AuthThrottle } from "../src/policy/auth-throttle.js";
import { type BudgetHolder, BufferBudget } from "../src/smtp/buffer-budget.js";
import { parseProxyHeader } from "../src/smtp/proxy-protocol.js";
import { tempDataDir } from "./support/petrel-process.js";

describe("AUTH throttle: the window does not restart while the address keeps failing", () => {
  it("locks again at the first failure after a lockout, and at attempts during one", () => {
    let now = 0;
    const t = new AuthThrottle({ maxFailures: 3, windowMs: 1000, lockoutMs: 5000, now: () => now });
    for (let i = 0; i < 2; i++) assert.equal(t.recordFailure("1.2.3.4"), false);
    assert.equal(t.recordFailure("1.2.3.4"), true);
    now = 3000; // an attempt during the lockout extends it
    assert.equal(t.recordFailure("1.2.3.4"), true);
    now = 7000;
    assert.equal(t.isLocked("1.2.3.4"), true, "extended to 3000 + 5000");
    now = 8001;
    assert.equal(t.isLocked("1.2.3.4"), false);
    // Within one window after the lockout: one failure is enough, not three.
    assert.equal(t.recordFailure("1.2.3.4"), true);
    assert.equal(t.isLocked("1.2.3.4"), true);
    // Quiet for a lockout plus a window: the address starts afresh.
    now = 8001 + 5000 + 1001;
    t.sweep();
    assert.equal(t.recordFailure("1.2.3.4"), false);
    assert.equal(t.recordFailure("5.6.7.8"), false, "other addresses are not affected");
  });
});

describe("signer: a verified domain is never sent unsigned", () => {
  const message = Buffer.from("From: a@v.example\r\nTo: b@example.com\r\n\r\nbody\r\n");
  it("refuses (and counts) a verified or failing domain without a usable key", async () => {
    let found: Awaited<ReturnType<Parameters<typeof createMessageSigning>[0]["getSigningKeys"]>>;
    const signing = createMessageSigning({ getSigningKeys: async () => found });
    found = { status: "verified", keys: [] };
    await assert.rejects(signing.sign("v.example", message), (err: Error) => {
      assert.ok(err instanceof SigningUnavailableError);
      assert.equal(err.domain, "v.example");
      assert.match(err.message, /v\.example: the domain has no active DKIM key/);
      return true;
    });
    found = { status: "failing", keys: [{ id: 1, selector: "s1", kind: "rsa", privateKeyPem: "garbage" }] };
    await assert.rejects(signing.sign("v.example", message), /cannot be loaded/);
    assert.equal(signing.stats.refused, 2);
    // Unverified or unknown domains pass unsigned, as before, and are not counted.
    found = { status: "unverified", keys: [] };
    assert.deepEqual((await signing.sign("v.example", message)).selectors, []);
    found = undefined;
    assert.deepEqual((await signing.sign("other.example", message)).selectors, []);
    assert.equal(signing.stats.refused, 2);
  });
});

describe("PROXY protocol parser", () => {
  const v2 = (cmd: number, fam: number, body: number[]): Buffer =>
    Buffer.from([
      0x0d,
      0x0a,
      0x0d,
      0x0a,
      0x00,
      0x0d,
      0x0a,
      0x51,
      0x55,
      0x49,
      0x54,
      0x0a,
      0x20 | cmd,
      fam,
      body.length >> 8,
      body.length & 255,
      ...body,
    ]);

  it("v1: TCP4, TCP6, UNKNOWN, incremental, and what follows is left alone", () => {
    const line = Buffer.from("PROXY TCP4 192.0.2.7 10.0.0.1 56324 587\r\nEHLO x\r\n");
    for (let n = 0; n < 41; n++) assert.equal(parseProxyHeader(line.subarray(0, n)).kind, "more", `at ${n}`);
    assert.deepEqual(parseProxyHeader(line), {
      kind: "done",
      length: 41,
      source: { address: "192.0.2.7", port: 56324 },
    });
    assert.deepEqual(parseProxyHeader(Buffer.from("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")), {
      kind: "done",
      length: 40,
      source: { address: "2001:db8::1", port: 1 },
    });
    const unknown = parseProxyHeader(Buffer.from("PROXY UNKNOWN\r\n"));
    assert.deepEqual(unknown, { kind: "done", length: 15, source: undefined });
  });

  it("v1: refuses malformed lines without waiting for more", () => {
    for (const bad of [
      "EHLO client\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", // LF without CR
      "PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
      "PROXY TCP4 ::1 ::1 1 2\r\n", // wrong family
      "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", // leading zero
      "PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
      "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
      `PROXY TCP4 ${"1".repeat(120)}`, // no CRLF within 107 bytes
    ]) {
      assert.equal(parseProxyHeader(Buffer.from(bad)).kind, "error", bad);
    }
  });

  it("v2: PROXY over TCP4 and TCP6 (with TLVs), LOCAL, and bad headers", () => {
    const tcp4 = v2(1, 0x11, [192, 0, 2, 9, 10, 0, 0, 1, 0xdc, 0x04, 0x02, 0x4b, 0x04, 0x00, 0x01, 0x00]);
    for (let n = 0; n < tcp4.length; n++) assert.equal(parseProxyHeader(tcp4.subarray(0, n)).kind, "more");
    assert.deepEqual(parseProxyHeader(Buffer.concat([tcp4, Buffer.from("\x16\x03\x01")])), {
      kind: "done",
      length: 32,
      source: { address: "192.0.2.9", port: 56324 },
    });
    const six = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05];
    const tcp6 = v2(1, 0x21, [...six, ...six, 0x30, 0x39, 0x01, 0xd1]);
    assert.deepEqual(parseProxyHeader(tcp6), {
      kind: "done",
      length: 52,
      source: { address: "2001:db8::5", port: 12345 },
    });
    const mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 4];
    const mappedHeader = parseProxyHeader(v2(1, 0x21, [...mapped, ...six, 0, 1, 0, 2]));
    assert.equal(mappedHeader.kind === "done" && mappedHeader.source?.address, "203.0.113.4");
    assert.deepEqual(parseProxyHeader(v2(0, 0x00, [])), { kind: "done", length: 16, source: undefined });
    assert.equal(parseProxyHeader(v2(2, 0x11, [])).kind, "error", "unknown command");
    assert.equal(parseProxyHeader(v2(1, 0x11, [1, 2, 3])).kind, "error", "short address block");
    const huge = v2(1, 0x11, []);
    huge.writeUInt16BE(5000, 14);
    assert.equal(parseProxyHeader(huge).kind, "error", "longer than the parser holds");
  });
});

describe("memory budget", () => {
  const holder = (): BudgetHolder & { woken: number; evicted: boolean } => {
    const h = {
      held: 0,
      woken: 0,
      evicted: false,
      wake: () => {
        h.woken++;
      },
      evict: () => {
        h.evicted = true;
      },
    };
    return h;
  };

  it("takes up to the limit, refuses new DATA at it, wakes waiters on release", () => {
    const budget = new BufferBudget(100);
    const a = holder();
    const b = holder();
    assert.equal(budget.admitsNewData(), true);
    assert.equal(budget.take(a, 60), true);
    assert.equal(budget.take(b, 30), true);
    assert.equal(budget.take(b, 30), false, "over the limit: b waits");
    assert.equal(budget.used, 90);
    assert.equal(budget.admitsNewData(), false, "someone waits: no new transaction");
    assert.equal(budget.refused, 1);
    budget.release(a);
    assert.equal(b.woken, 1);
    assert.equal(budget.take(b, 30), true);
    assert.equal(budget.used, 60);
    budget.release(b);
    assert.equal(budget.used, 0);
  });

  it("evicts the last holder to start when every holder waits (no deadlock)", () => {
    const budget = new BufferBudget(100);
    const first = holder();
    const second = holder();
    assert.equal(budget.take(first, 50), true);
    assert.equal(budget.take(second, 50), true);
    assert.equal(budget.take(first, 10), false);
    assert.equal(first.evicted || second.evicted, false, "second may still release");
    assert.equal(budget.take(second, 10), false);
    assert.equal(second.evicted, true, "the younger one is given up");
    assert.equal(first.evicted, false);
    assert.equal(budget.used, 50);
    assert.ok(first.woken >= 1, "the older one may go on");
    assert.equal(budget.evicted, 1);
  });

  it("a release that leaves every holder waiting breaks the deadlock (no lost wake-up)", () => {
    // While one holder is not waiting (here `other`, still receiving or committing), a take()
    // that cannot be met does not evict: that holder may release. When it does, every remaining
    // holder waits with a need that does not fit, and no take() will come again: the release
    // itself must give one up (this hung hardening-memory once: "no reply within 120000 ms").
    const budget = new BufferBudget(100);
    const older = holder();
    const younger = holder();
    const other = holder();
    assert.equal(budget.take(older, 45), true);
    assert.equal(budget.take(younger, 45), true);
    assert.equal(budget.take(other, 10), true);
    assert.equal(budget.take(older, 40), false, "waits");
    assert.equal(budget.take(younger, 40), false, "waits; other still holds, nobody is evicted");
    assert.equal(older.evicted || younger.evicted, false);
    budget.release(other); // its DATA ended: nobody but waiters hold bytes now
    assert.equal(younger.evicted, true, "the younger holder is given up by the release");
    assert.equal(older.evicted, false);
    assert.ok(older.woken >= 1, "the older one is woken: 40 now fits");
    assert.equal(budget.take(older, 40), true);
  });

  it("no limit: counts nothing", () => {
    const budget = new BufferBudget(0);
    const a = holder();
    assert.equal(budget.take(a, 1e12), true);
    assert.equal(budget.used, 0);
    assert.equal(budget.admitsNewData(), true);
  });
});

describe("log sink", () => {
  it("coalesces the lines of several turns into one write, in order, and flush() writes what waits", async (t) => {
    // The coalescing window is a timer: faked, so the test does not depend on how fast turns go.
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    /**
     * Turns until `done` (the writes are real I/O), for 5 s of real time at most; not
     * support/wait.ts's waitFor, which sleeps with the setTimeout faked here.
     */
    const until = async (done: () => boolean, each = () => {}) => {
      const deadline = performance.now() + 5000;
      while (!done() && performance.now() < deadline) {
        await turn();
        each();
      }
    };
    const file = join(tempDataDir("petrel-log-sink-"), "log");
    const fd = openSync(file, "w");
    try {
      const sink = new LogSink(fd, fd);
      for (let i = 0; i < 3; i++) {
        sink.write(`{"msg":"turn ${i}"}\n`);
        await turn();
      }
      assert.equal(sink.stats.writes, 0, "the lines wait for the window");
      t.mock.timers.tick(10);
      await until(() => sink.stats.written >= 3);
      assert.equal(sink.stats.writes, 1, "three lines, one write");
      // flush() writes what waits without waiting for the window: the write starts in the call.
      sink.write(`{"msg":"last"}\n`);
      let flushed = false;
      sink.flush(() => {
        flushed = true;
      });
      assert.equal(sink.stats.writes, 2, "flush() started the write");
      await until(
        () => flushed,
        () => t.mock.timers.tick(5), // flush() polls every 5 ms
      );
      assert.equal(sink.stats.written, 4);
      assert.equal(
        readFileSync(file, "utf8"),
        '{"msg":"turn 0"}\n{"msg":"turn 1"}\n{"msg":"turn 2"}\n{"msg":"last"}\n',
      );
    } finally {
      closeSync(fd);
    }
  });

  it("drops and counts lines on /dev/full, reports once, and flushSync returns", async () => {
    const full = openSync("/dev/full", "w");
    const report = openSync("/dev/null", "w");
    try {
      const sink = new LogSink(full, report);
      for (let i = 0; i < 1000; i++) sink.write(`{"msg":"line ${i}"}\n`);
      await new Promise<void>((resolve) => sink.flush(() => resolve()));
      for (let i = 0; i < 10; i++) sink.write(`{"msg":"late ${i}"}\n`);
      sink.flushSync();
      await new Promise<void>((resolve) => sink.flush(() => resolve()));
      assert.equal(sink.stats.written, 0);
      assert.equal(sink.stats.dropped, 1010);
      assert.ok(sink.stats.failures >= 2);
    } finally {
      closeSync(full);
      closeSync(report);
    }
  });
});

/**
 * Limits and lifecycle of the inbound SMTP server: idle and session timeouts, total and per-IP
 * connection caps, STARTTLS command injection, graceful close(graceMs), bind errors.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { pino } from "pino";
import { BindError, SmtpServer } from "../src/smtp/index.js";
import type { SessionHooks } from "../src/smtp/types.js";
import { DEFAULT_LIMITS, startFixture, type TestUser, testCertificate, until } from "./smtp-fixture.js";
import { runDialogue, SmtpTestClient } from "./support/dialogue.js";

describe("timeouts", () => {
  it("closes an idle session with 421 4.4.2, also inside DATA", async () => {
    const fx = await startFixture({ limits: { idleTimeoutMs: 150 } });
    try {
      const t0 = Date.now();
      await runDialogue(fx.port, [["S", "421 4.4.2 Idle timeout, closing connection"], ["CLOSED"]]);
      assert.ok(Date.now() - t0 >= 140);
      await until(() => fx.rec.closes.some((c) => c.reason === "idle-timeout"));
    } finally {
      await fx.server.close(100);
    }
    // Inside DATA. The commands go in one write (no round trips to wait through), but a stalled
    // machine can still keep the client quiet for longer than the timeout before DATA: that is the
    // timeout doing its job, not the case under test, so try again with a longer one.
    for (const idleTimeoutMs of [150, 600, 2400]) {
      if ((await idleInData(idleTimeoutMs)) === "timed out in DATA") return;
    }
    assert.fail("the idle timeout never ran inside DATA: every attempt timed out before DATA");
  });

  /** One session that goes quiet inside DATA; "early" when the timeout came before the 354. */
  async function idleInData(idleTimeoutMs: number): Promise<"timed out in DATA" | "early"> {
    const fx = await startFixture({ trustedIps: ["127.0.0.3"], limits: { idleTimeoutMs } });
    try {
      const client = await SmtpTestClient.connect(fx.port, { localAddress: "127.0.0.3" });
      const opened = Date.now();
      try {
        await client.expect(/^220 /);
        client.sendRaw("HELO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
        const codes: number[] = [];
        for (let i = 0; i < 4 && codes.at(-1) !== 421; i++) codes.push((await client.readReply()).code);
        if (codes.at(-1) === 421) {
          // Never before the timeout (counted from the connection, the earliest it can start).
          assert.ok(Date.now() - opened >= idleTimeoutMs - 10);
          return "early";
        }
        assert.deepEqual(codes, [250, 250, 250, 354]);
        client.sendRaw("partial");
        await client.expect("421 4.4.2 Idle timeout, closing connection");
        assert.ok(Date.now() - opened >= idleTimeoutMs - 10);
        await client.expectClosed();
      } finally {
        await client.close();
      }
      await until(() => fx.rec.closes.some((c) => c.reason === "idle-timeout"));
      assert.equal(fx.rec.messages.length, 0, "nothing of the cut message was kept");
      return "timed out in DATA";
    } finally {
      await fx.server.close(100);
    }
  }

  it("caps the whole session with 421 4.4.2 even when the client keeps talking", async () => {
    const fx = await startFixture({ limits: { idleTimeoutMs: 60_000, sessionTimeoutMs: 300 } });
    try {
      const client = await SmtpTestClient.connect(fx.port);
      await client.expect(/^220 /);
      // The session cap (300 ms) is far below the idle timeout, so only it can end this; the
      // iteration bound only keeps a broken cap from looping forever.
      for (let i = 0; ; i++) {
        assert.ok(i < 1000, "still open after 1,000 NOOPs");
        client.send("NOOP");
        const r = await client.readReply();
        if (r.code === 421) {
          assert.equal(r.text, "421 4.4.2 Session timeout, closing connection");
          break;
        }
        await new Promise((res) => setTimeout(res, 50));
      }
      await client.expectClosed();
      await until(() => fx.rec.closes.some((c) => c.reason === "session-timeout"));
    } finally {
      await fx.server.close(100);
    }
  });
});

describe("connection caps", () => {
  it("enforces per-IP and total caps at accept, before the greeting", async () => {
    const fx = await startFixture({ limits: { maxConnections: 3, maxConnectionsPerIp: 2 } });
    const open: SmtpTestClient[] = [];
    try {
      for (const ip of ["127.0.0.1", "127.0.0.1"]) {
        const c = await SmtpTestClient.connect(fx.port, { localAddress: ip });
        await c.expect("220 mx.test ESMTP Petrel");
        open.push(c);
      }
      // A third from the same IP: refused although the total cap has room.
      await runDialogue(fx.port, [["CLOSED"]], {
        greeting: "421 4.7.0 Too many connections, try again later",
      });
      const other = await SmtpTestClient.connect(fx.port, { localAddress: "127.0.0.2" });
      await other.expect(/^220 /);
      open.push(other);
      // Total cap reached: refused from a fresh IP, also on the implicit-TLS listener.
      await runDialogue(fx.port, [["CLOSED"]], {
        localAddress: "127.0.0.4",
        greeting: "421 4.7.0 Too many connections, try again later",
      });
      // On the implicit-TLS listener no reply can precede a handshake: closed at once, no TLS.
      await assert.rejects(
        SmtpTestClient.connect(fx.tlsPort, {
          localAddress: "127.0.0.4",
          implicitTls: true,
          tls: { ca: fx.cert },
        }),
        /socket disconnected|ECONNRESET|EPIPE/,
      );
      // Refused connections did not use up a slot: freeing one admits a new client.
      await open.shift()!.close();
      await until(() => fx.server.connectionCount() === 2);
      await runDialogue(
        fx.port,
        [
          ["C", "QUIT"],
          ["S", "221 2.0.0 Bye"],
        ],
        { localAddress: "127.0.0.4" },
      );
      // Refused at accept, never sessions: counted by reason in the (rate-limited) refusal log.
      assert.equal(fx.server.refusals.counts.get("too-many-connections-from-ip"), 1);
      assert.equal(fx.server.refusals.counts.get("too-many-connections"), 2);
      assert.equal(fx.rec.closes.filter((c) => c.reason === "too-many-connections").length, 0);
      assert.ok(fx.rec.logs.some((l) => l.includes('"reason":"too-many-connections"')));
    } finally {
      for (const c of open) await c.close();
      await fx.server.close(100);
    }
  });
});

describe("STARTTLS", () => {
  it("discards commands pipelined after STARTTLS (CVE-2011-0411)", async () => {
    const fx = await startFixture();
    try {
      await runDialogue(
        fx.port,
        [
          ["RAW", "EHLO c\r\nSTARTTLS\r\nNOOP\r\nMAIL FROM:<injected@example.com>\r\n"],
          ["S", /^250-mx\.test\n/],
          ["S", "220 2.0.0 Ready to start TLS"],
          ["STARTTLS"],
          ["C", "HELP"],
          ["S", "214 2.0.0 https://www.rfc-editor.org/rfc/rfc5321"],
          ["C", "EHLO c"],
          ["S", /250 AUTH PLAIN LOGIN$/],
        ],
        { tls: { ca: fx.cert } },
      );
    } finally {
      await fx.server.close(100);
    }
  });

  it("closes quietly when the TLS handshake fails", async () => {
    const fx = await startFixture();
    try {
      const socket = connect(fx.tlsPort, "127.0.0.1");
      socket.on("error", () => {});
      socket.write("EHLO this is not a TLS ClientHello\r\n");
      await until(() => fx.rec.closes.some((c) => c.reason === "tls-error"));
      socket.destroy();
    } finally {
      await fx.server.close(100);
    }
  });
});

describe("close(graceMs)", () => {
  it("closes idle sessions at once and lets a session in DATA finish", async () => {
    const fx = await startFixture({ trustedIps: ["127.0.0.3"] });
    const idle = await SmtpTestClient.connect(fx.port);
    await idle.expect(/^220 /);
    const busy = await SmtpTestClient.connect(fx.port, { localAddress: "127.0.0.3" });
    await busy.expect(/^220 /);
    for (const [c, r] of [
      ["HELO c", /^250 /],
      ["MAIL FROM:<a@example.com>", /^250 /],
      ["RCPT TO:<b@example.com>", /^250 /],
      ["DATA", /^354 /],
    ] as const) {
      busy.send(c);
      await busy.expect(r);
    }
    busy.sendRaw("Subject: late\r\n\r\nfirst half\r\n");
    // In DATA since the 354. A grace period far longer than the test: it must not end first.
    const closed = fx.server.close(60_000);
    await idle.expect("421 4.3.2 Service shutting down");
    await idle.expectClosed();
    // New connections are refused at once.
    await assert.rejects(SmtpTestClient.connect(fx.port), /ECONNREFUSED/);
    busy.sendRaw("second half\r\n.\r\n");
    await busy.expect(/^250 2\.0\.0 Ok: queued as 1$/);
    await busy.expect("421 4.3.2 Service shutting down");
    await busy.expectClosed();
    await closed;
    assert.equal(fx.rec.messages[0]!.content, "Subject: late\r\n\r\nfirst half\r\nsecond half\r\n");
    assert.equal(fx.server.connectionCount(), 0);
  });

  it("sends 421 and destroys sessions still in DATA when the grace period ends", async () => {
    const fx = await startFixture({ trustedIps: ["127.0.0.3"] });
    const client = await SmtpTestClient.connect(fx.port, { localAddress: "127.0.0.3" });
    await client.expect(/^220 /);
    client.sendRaw("HELO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    for (let i = 0; i < 4; i++) await client.readReply();
    client.sendRaw("never finished");
    const t0 = Date.now();
    await fx.server.close(200);
    assert.ok(Date.now() - t0 >= 190);
    await client.expect("421 4.3.2 Service shutting down");
    await client.expectClosed();
    assert.equal(fx.rec.messages.length, 0);
    assert.deepEqual(
      fx.rec.closes.map((c) => c.reason),
      ["shutdown"],
    );
  });
});

describe("listen()", () => {
  it("rejects with a BindError and closes what it had bound", async () => {
    const fx = await startFixture();
    const { key, cert } = await testCertificate();
    const server = new SmtpServer<unknown>({
      hostname: "mx.test",
      listeners: [
        { name: "free", host: "127.0.0.1", port: 0, mode: "starttls" },
        { name: "taken", host: "127.0.0.1", port: fx.port, mode: "starttls" },
      ],
      tls: { key, cert },
      limits: DEFAULT_LIMITS,
      logger: pino({ level: "silent" }),
      hooks: {
        onConnect: async () => ({ ok: true }),
        onAuth: async () => ({ ok: false, reply: { code: 535, enhanced: "5.7.8", text: "no" } }),
        onMailFrom: async () => ({ ok: true }),
        onRcptTo: async () => ({ ok: true }),
        onData: async () => ({ code: 250, enhanced: "2.0.0", text: "Ok" }),
      },
    });
    try {
      await assert.rejects(server.listen(), (err: unknown) => {
        assert.ok(err instanceof BindError);
        assert.equal(err.code, "EADDRINUSE");
        assert.equal(err.listener, "taken");
        assert.equal(err.port, fx.port);
        return true;
      });
      assert.deepEqual(server.addresses, []);
    } finally {
      await fx.server.close(100);
    }
  });
});

describe("misbehaving clients", () => {
  it("survives a client that resets while onData is pending", async () => {
    const fx = await startFixture({ trustedIps: ["127.0.0.3"] });
    fx.dataDelay.ms = 100;
    try {
      const client = await SmtpTestClient.connect(fx.port, { localAddress: "127.0.0.3" });
      await client.expect(/^220 /);
      client.sendRaw("HELO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
      for (let i = 0; i < 4; i++) await client.readReply();
      client.sendRaw("body\r\n.\r\n");
      await until(() => fx.rec.dataCalls === 1); // onData is running (for 100 ms)
      await client.close();
      await until(() => fx.rec.messages.length === 1 && fx.server.connectionCount() === 0);
      assert.match(fx.rec.closes[0]!.reason, /^client-closed|^socket-error/);
    } finally {
      await fx.server.close(100);
    }
  });

  it("stops reading from a client that pipelines without reading replies, then catches up", async () => {
    const fx = await startFixture();
    try {
      const socket = connect(fx.port, "127.0.0.1");
      await new Promise((r) => socket.once("connect", r));
      socket.pause(); // read nothing for now
      const n = 400000; // enough replies to fill the socket buffers and make the server wait for drain
      socket.write("NOOP\r\n".repeat(n));
      await new Promise((r) => setTimeout(r, 200));
      let text = "";
      socket.setEncoding("latin1");
      socket.on("data", (d: string) => {
        text += d;
      });
      socket.resume();
      const want = `220 mx.test ESMTP Petrel\r\n${"250 2.0.0 Ok\r\n".repeat(n)}`;
      await until(() => text.length >= want.length, 60_000);
      assert.equal(text, want);
      socket.destroy();
    } finally {
      await fx.server.close(100);
    }
  });
});

describe("misbehaving hooks", () => {
  it("answers 421 4.3.0 instead of the greeting when onConnect throws", async () => {
    const fx = await startFixture({
      hooks: {
        onConnect: async () => {
          throw new Error("database down");
        },
      },
    });
    try {
      await runDialogue(fx.port, [["CLOSED"]], {
        greeting: "421 4.3.0 Temporary local problem, try again later",
      });
    } finally {
      await fx.server.close(100);
    }
  });

  it("sends onConnect's refusal instead of the greeting", async () => {
    const fx = await startFixture({
      hooks: {
        onConnect: async () => ({
          ok: false,
          reply: { code: 554, enhanced: "5.7.1", text: "Go away\nreally" },
        }),
      },
    });
    try {
      await runDialogue(fx.port, [["CLOSED"]], { greeting: "554-5.7.1 Go away\n554 5.7.1 really" });
    } finally {
      await fx.server.close(100);
    }
  });

  it("answers 421 4.3.0 and closes on a malformed hook result, and the server lives on", async () => {
    const fx = await startFixture({
      trustedIps: ["127.0.0.3"],
      // A broken app: resolves to nothing instead of a verdict.
      hooks: { onMailFrom: (async () => undefined) as unknown as SessionHooks<TestUser>["onMailFrom"] },
    });
    try {
      await runDialogue(
        fx.port,
        [
          ["C", "HELO c"],
          ["S", "250 mx.test"],
          ["C", "MAIL FROM:<a@example.com>"],
          ["S", "421 4.3.0 Temporary local problem, try again later"],
          ["CLOSED"],
        ],
        { localAddress: "127.0.0.3" },
      );
      await runDialogue(fx.port, [
        ["C", "NOOP"],
        ["S", "250 2.0.0 Ok"],
      ]);
      assert.ok(fx.rec.logs.some((l) => l.includes("smtp session failed")));
    } finally {
      await fx.server.close(100);
    }
  });
});

describe("QUIT", () => {
  it("a client that closes without waiting for the 221 costs the server no socket error", async () => {
    // Postfix's smtp client does this by default (smtp_skip_quit_response = yes), and so does its
    // smtp-source: the 221 meets a closed socket and the client's kernel resets the connection.
    const fx = await startFixture({ trustedIps: ["127.0.0.1"] });
    try {
      const args = [
        "-s",
        "1",
        "-m",
        "5",
        "-f",
        "a@example.com",
        "-t",
        "b@example.com",
        `127.0.0.1:${fx.port}`,
      ];
      await promisify(execFile)("smtp-source", args, { timeout: 20_000 });
      await until(() => fx.rec.closes.length === 5);
      assert.deepEqual(
        fx.rec.closes.map((c) => c.reason),
        ["quit", "quit", "quit", "quit", "quit"],
      );
      assert.equal(fx.rec.messages.length, 5);
      assert.deepEqual(
        fx.rec.logs.filter((l) => l.includes("smtp socket error")),
        [],
        "the reset after the 221 was read as a socket error",
      );
    } finally {
      await fx.server.close(100);
    }
  });

  it("closes the connection after the 221: a client that keeps its side open does not hold its slot", async () => {
    const fx = await startFixture({ limits: { maxConnectionsPerIp: 1 } });
    try {
      // Half-open allowed: the server's FIN does not end this side (a client decides that itself).
      const first = connect({ host: "127.0.0.1", port: fx.port, allowHalfOpen: true });
      let got = "";
      let ended = false;
      first.on("data", (chunk: Buffer) => {
        got += chunk.toString("latin1");
      });
      first.on("end", () => {
        ended = true;
      });
      await until(() => got.includes("220 "));
      first.write("EHLO client.test\r\n");
      await until(() => got.includes("250 "));
      first.write("QUIT\r\n");
      // The server's FIN after the 221, while this client has not closed its side: the session
      // is over then (read on and waiting for this side, it kept the slot for LINGER_MS).
      await until(() => ended);
      assert.match(got, /^221 2\.0\.0 /m);
      const second = await SmtpTestClient.connect(fx.port);
      assert.equal((await second.readReply()).code, 220, "the one slot of this address is free again");
      second.send("QUIT");
      assert.equal((await second.readReply()).code, 221);
      assert.equal(fx.rec.closes[0]!.reason, "quit");
      first.destroy();
    } finally {
      await fx.server.close(100);
    }
  });
});

/**
 * Dialogue tests of the inbound SMTP protocol (src/smtp) over real sockets and real TLS:
 * EHLO/STARTTLS/AUTH, MAIL/RCPT/DATA sequencing and every error reply, misc commands, error
 * limits. DATA content, smuggling and pipelining are in smtp-data.test.ts; timeouts, caps and
 * shutdown in smtp-limits.test.ts.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { b64, type Fixture, plain, startFixture, until } from "./smtp-fixture.js";
import { type DialogueOptions, type DialogueStep, runDialogue } from "./support/dialogue.js";

let fx: Fixture;
before(async () => {
  fx = await startFixture({ trustedIps: ["127.0.0.3"] });
});
after(() => fx.server.close(1000));

const EHLO_BASE = "250-mx.test\n250-SIZE 1048576\n250-PIPELINING\n250-8BITMIME\n250-SMTPUTF8";
const EHLO_PLAIN = `${EHLO_BASE}\n250-ENHANCEDSTATUSCODES\n250 STARTTLS`;
const EHLO_TLS = `${EHLO_BASE}\n250-ENHANCEDSTATUSCODES\n250 AUTH PLAIN LOGIN`;
const EHLO_AUTHED = `${EHLO_BASE}\n250 ENHANCEDSTATUSCODES`;

/** EHLO, STARTTLS, EHLO: a TLS session ready for AUTH. */
const TLS: DialogueStep[] = [
  ["C", "EHLO client.test"],
  ["S", EHLO_PLAIN],
  ["C", "STARTTLS"],
  ["S", "220 2.0.0 Ready to start TLS"],
  ["STARTTLS"],
  ["C", "EHLO client.test"],
  ["S", EHLO_TLS],
];
const AUTHED: DialogueStep[] = [
  ...TLS,
  ["C", `AUTH PLAIN ${plain("alice", "secret")}`],
  ["S", "235 2.7.0 Authentication successful"],
];

async function dialogue(steps: DialogueStep[], opts: DialogueOptions = {}): Promise<void> {
  await runDialogue(opts.implicitTls ? fx.tlsPort : fx.port, steps, {
    tls: { ca: fx.cert },
    greeting: "220 mx.test ESMTP Petrel",
    ...opts,
  });
}

describe("greeting, HELO, EHLO and STARTTLS", () => {
  it("lists extensions before TLS without AUTH, and AUTH only after TLS", () =>
    dialogue([...TLS, ["C", "STARTTLS"], ["S", "503 5.5.1 Error: TLS already active or not available"]]));

  it("answers HELO without extensions and requires an argument", () =>
    dialogue([
      ["C", "HELO"],
      ["S", "501 5.5.4 Syntax: HELO hostname"],
      ["C", "EHLO"],
      ["S", "501 5.5.4 Syntax: EHLO hostname"],
      ["C", "HELO client.test"],
      ["S", "250 mx.test"],
      ["C", "ehlo client.test"],
      ["S", EHLO_PLAIN],
    ]));

  it("rejects STARTTLS with an argument", () =>
    dialogue([
      ["C", "EHLO c"],
      ["S", EHLO_PLAIN],
      ["C", "STARTTLS now"],
      ["S", "501 5.5.4 Syntax error, no parameters allowed"],
    ]));

  it("serves implicit TLS with AUTH and without STARTTLS", () =>
    dialogue(
      [
        ["C", "EHLO c"],
        ["S", EHLO_TLS],
        ["C", "STARTTLS"],
        ["S", "503 5.5.1 Error: TLS already active or not available"],
        ["C", `AUTH PLAIN ${plain("bob", "secret")}`],
        ["S", "235 2.7.0 Authentication successful"],
        ["C", "EHLO c"],
        ["S", EHLO_AUTHED],
      ],
      { implicitTls: true },
    ));

  it("forgets EHLO and AUTH across STARTTLS (RFC 3207 §4.2)", async () => {
    const fx2 = await startFixture({ allowInsecureAuth: true });
    try {
      await runDialogue(
        fx2.port,
        [
          ["C", "EHLO c"],
          ["S", `${EHLO_BASE}\n250-ENHANCEDSTATUSCODES\n250-STARTTLS\n250 AUTH PLAIN LOGIN`],
          ["C", `AUTH PLAIN ${plain("alice", "secret")}`],
          ["S", "235 2.7.0 Authentication successful"],
          ["C", "STARTTLS"],
          ["S", "220 2.0.0 Ready to start TLS"],
          ["STARTTLS"],
          ["C", "MAIL FROM:<a@example.com>"],
          ["S", "503 5.5.1 Error: send HELO/EHLO first"],
          ["C", "EHLO c"],
          ["S", EHLO_TLS],
          ["C", "MAIL FROM:<a@example.com>"],
          ["S", "530 5.7.0 Authentication required"],
        ],
        { tls: { ca: fx2.cert } },
      );
    } finally {
      await fx2.server.close(100);
    }
  });
});

describe("AUTH", () => {
  it("is refused before TLS, and MAIL needs a user", () =>
    dialogue([
      ["C", "EHLO c"],
      ["S", EHLO_PLAIN],
      ["C", `AUTH PLAIN ${plain("alice", "secret")}`],
      ["S", "530 5.7.0 Must issue a STARTTLS command first"],
      ["C", "MAIL FROM:<a@b.c>"],
      ["S", "530 5.7.0 Authentication required"],
    ]));

  it("accepts PLAIN with a 334 challenge and an equal authzid", () =>
    dialogue([
      ...TLS,
      ["C", "AUTH PLAIN"],
      ["S", "334 "],
      ["C", plain("alice", "secret", "alice")],
      ["S", "235 2.7.0 Authentication successful"],
      ["C", "AUTH PLAIN"],
      ["S", "503 5.5.1 Error: already authenticated"],
    ]));

  it("accepts LOGIN, with and without an initial response", async () => {
    await dialogue([
      ...TLS,
      ["C", "AUTH LOGIN"],
      ["S", "334 VXNlcm5hbWU6"],
      ["C", b64("carol")],
      ["S", "334 UGFzc3dvcmQ6"],
      ["C", b64("secret")],
      ["S", "235 2.7.0 Authentication successful"],
    ]);
    await dialogue([
      ...TLS,
      ["C", `auth login ${b64("dave")}`],
      ["S", "334 UGFzc3dvcmQ6"],
      ["C", b64("secret")],
      ["S", "235 2.7.0 Authentication successful"],
    ]);
  });

  it("sends the hook's refusal, and closes when the hook says so", async () => {
    await dialogue([
      ...TLS,
      ["C", `AUTH PLAIN ${plain("alice", "wrong")}`],
      ["S", "535 5.7.8 Authentication credentials invalid"],
      ["C", `AUTH PLAIN ${plain("alice", "secret", "mallory")}`],
      ["S", "535 5.7.8 Authentication credentials invalid"],
      ["C", `AUTH PLAIN ${plain("closeme", "wrong")}`],
      ["S", "535 5.7.8 Authentication credentials invalid"],
      ["CLOSED"],
    ]);
    assert.ok(!fx.rec.logs.join("").includes("wrong"), "a password reached the log");
    assert.ok(!fx.rec.logs.join("").includes(plain("alice", "wrong")), "an AUTH payload reached the log");
  });

  it("handles cancel, bad base64, bad PLAIN, unknown mechanisms and AUTH in a transaction", () =>
    dialogue([
      ...TLS,
      ["C", "AUTH PLAIN"],
      ["S", "334 "],
      ["C", "*"],
      ["S", "501 5.0.0 Authentication cancelled"],
      ["C", "AUTH LOGIN"],
      ["S", "334 VXNlcm5hbWU6"],
      ["C", "not base64!"],
      ["S", "501 5.5.2 Invalid base64 data"],
      ["C", `AUTH PLAIN ${b64("no-nuls")}`],
      ["S", "501 5.5.2 Invalid PLAIN response"],
      ["C", "AUTH CRAM-MD5"],
      ["S", "504 5.5.4 Unrecognized authentication mechanism"],
      ["C", `AUTH PLAIN ${plain("alice", "secret")}`],
      ["S", "235 2.7.0 Authentication successful"],
      ["C", "MAIL FROM:<a@example.com>"],
      ["S", "250 2.1.0 Ok"],
      ["C", "AUTH LOGIN"],
      ["S", "503 5.5.1 Error: already authenticated"],
    ]));

  it("refuses AUTH inside a transaction for a trusted-network session", () =>
    dialogue(
      [
        ["C", "EHLO c"],
        ["S", EHLO_PLAIN],
        ["C", "MAIL FROM:<a@example.com>"],
        ["S", "250 2.1.0 Ok"],
        ["C", "STARTTLS"],
        ["S", "220 2.0.0 Ready to start TLS"],
        ["STARTTLS"],
        ["C", "EHLO c"],
        ["S", EHLO_TLS],
        ["C", "MAIL FROM:<a@example.com>"],
        ["S", "250 2.1.0 Ok"],
        ["C", `AUTH PLAIN ${plain("alice", "secret")}`],
        ["S", "503 5.5.1 Error: AUTH not allowed during a mail transaction"],
      ],
      { localAddress: "127.0.0.3" },
    ));

  it("accepts AUTH lines up to 12,288 octets", () =>
    dialogue([
      ...TLS,
      ["C", `AUTH PLAIN ${plain("alice", "x".repeat(9000))}`],
      ["S", "535 5.7.8 Authentication credentials invalid"],
      ["C", `AUTH PLAIN ${plain("alice", "x".repeat(9300))}`],
      ["S", "500 5.5.2 Line too long"],
    ]));
});

describe("MAIL FROM", () => {
  it("checks sequence, syntax, parameters, addresses and size", () =>
    dialogue([
      ...AUTHED,
      ["C", "MAIL FROM:<a@example.com>"],
      ["S", "250 2.1.0 Ok"],
      ["C", "MAIL FROM:<a@example.com>"],
      ["S", "503 5.5.1 Error: nested MAIL command"],
      ["C", "RSET"],
      ["S", "250 2.0.0 Ok"],
      ["C", "MAIL <a@example.com>"],
      ["S", "501 5.5.4 Syntax: MAIL FROM:<address>"],
      ["C", "MAIL FROM:a@example.com"],
      ["S", "501 5.5.4 Syntax: MAIL FROM:<address>"],
      ["C", "MAIL FROM:<a@example.com> FOO=bar"],
      ["S", "555 5.5.4 Unsupported parameter"],
      ["C", "NOOP"],
      ["S", "250 2.0.0 Ok"],
      ["C", "MAIL FROM:<a@@example.com>"],
      ["S", "553 5.1.3 Bad sender address syntax"],
      ["C", `MAIL FROM:<${"l".repeat(65)}@example.com>`],
      ["S", "553 5.1.3 Bad sender address syntax"],
      ["C", "MAIL FROM:<.a@example.com>"],
      ["S", "553 5.1.3 Bad sender address syntax"],
      ["C", "MAIL FROM:<a@-example.com>"],
      ["S", "553 5.1.3 Bad sender address syntax"],
      ["C", "NOOP"],
      ["S", "250 2.0.0 Ok"],
      ["C", "MAIL FROM:<jörg@example.com>"],
      ["S", "553 5.6.7 Non-ASCII address requires SMTPUTF8"],
      ["C", "MAIL FROM:<a@example.com> SIZE=2000000"],
      ["S", "552 5.3.4 Message size exceeds fixed maximum message size"],
      ["C", "MAIL FROM:<a@example.com> SIZE=12x"],
      ["S", "501 5.5.4 Syntax error in parameters"],
      ["C", "MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME SIZE=100"],
      ["S", "250 2.1.0 Ok"],
      ["C", "RSET"],
      ["S", "250 2.0.0 Ok"],
      ["C", "MAIL FROM: <>"],
      ["S", "250 2.1.0 Ok"],
      ["C", "RSET"],
      ["S", "250 2.0.0 Ok"],
      ["C", 'MAIL FROM:<"john doe"@[192.0.2.1]> AUTH=<>'],
      ["S", "250 2.1.0 Ok"],
      ["C", "RSET"],
      ["S", "250 2.0.0 Ok"],
      ["C", "MAIL FROM:<a@[IPv6:2001:db8::1]>"],
      ["S", "250 2.1.0 Ok"],
    ]));

  it("needs HELO first, and maps hook refusals and hook failures", () =>
    dialogue([
      ["C", "MAIL FROM:<a@example.com>"],
      ["S", "503 5.5.1 Error: send HELO/EHLO first"],
      ...AUTHED,
      ["C", "MAIL FROM:<reject@example.com>"],
      ["S", "550 5.7.1 Sender not allowed"],
      ["C", "MAIL FROM:<boom@example.com>"],
      ["S", "451 4.3.0 Temporary local problem, try again later"],
      ["C", "MAIL FROM:<@relay.example,@b.example:Source@Example.COM>"],
      ["S", "250 2.1.0 Ok"],
      ["C", "RCPT TO:<x@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "DATA"],
      ["S", /^354 /],
      ["RAW", "Subject: route\r\n\r\nbody\r\n.\r\n"],
      ["S", /^250 2\.0\.0 Ok: queued as \d+$/],
    ]).then(() => {
      const last = fx.rec.messages.at(-1)!;
      assert.equal(last.envelope.mailFrom, "Source@Example.COM");
    }));
});

describe("RCPT TO and DATA sequencing", () => {
  it("checks sequence, syntax, parameters, limits and hooks", async () => {
    await dialogue([
      ...AUTHED,
      ["C", "RCPT TO:<x@example.com>"],
      ["S", "503 5.5.1 Error: need MAIL command"],
      ["C", "DATA"],
      ["S", "503 5.5.1 Error: need MAIL command"],
      ["C", "MAIL FROM:<a@example.com>"],
      ["S", "250 2.1.0 Ok"],
      ["C", "DATA"],
      ["S", "503 5.5.1 Error: need RCPT command"],
      ["C", "RCPT <x@example.com>"],
      ["S", "501 5.5.4 Syntax: RCPT TO:<address>"],
      ["C", "RCPT TO:<x@>"],
      ["S", "501 5.1.3 Bad recipient address syntax"],
      ["C", "RCPT TO:<>"],
      ["S", "501 5.1.3 Bad recipient address syntax"],
      ["C", "NOOP"],
      ["S", "250 2.0.0 Ok"],
      ["C", "RCPT TO:<x@example.com> NOTIFY=NEVER"],
      ["S", "555 5.5.4 Unsupported parameter"],
      ["C", "RCPT TO:<reject@example.com>"],
      ["S", "550 5.1.1 No such user"],
      ["C", "DATA"],
      ["S", "554 5.5.1 No valid recipients"],
      ["C", "RCPT TO:<boom@example.com>"],
      ["S", "451 4.3.0 Temporary local problem, try again later"],
      ["C", "RCPT TO:<Mixed.Case@Example.COM>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "rcpt to: <r2@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "RCPT TO:<r3@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "RCPT TO:<r4@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "RCPT TO:<r5@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "RCPT TO:<r6@example.com>"],
      ["S", "452 4.5.3 Too many recipients"],
      ["C", "RCPT TO:<jörg@example.com>"],
      ["S", "553 5.6.7 Non-ASCII address requires SMTPUTF8"],
      ["C", "DATA extra"],
      ["S", "501 5.5.4 Syntax error, no parameters allowed"],
      ["C", "DATA"],
      ["S", "354 End data with <CR><LF>.<CR><LF>"],
      ["RAW", "Subject: t\r\n\r\nhi\r\n.\r\n"],
      ["S", /^250 2\.0\.0 Ok: queued as \d+$/],
    ]);
    const last = fx.rec.messages.at(-1)!;
    assert.deepEqual(last.envelope.rcptTo, [
      "Mixed.Case@Example.COM",
      "r2@example.com",
      "r3@example.com",
      "r4@example.com",
      "r5@example.com",
    ]);
    assert.equal(last.user?.name, "alice");
  });

  it("lets a trusted-network session send without AUTH", async () => {
    await dialogue(
      [
        ["C", "HELO c"],
        ["S", "250 mx.test"],
        ["C", "MAIL FROM:<t@example.com>"],
        ["S", "250 2.1.0 Ok"],
        ["C", "RCPT TO:<x@example.com>"],
        ["S", "250 2.1.5 Ok"],
        ["C", "DATA"],
        ["S", /^354 /],
        ["RAW", "hi\r\n.\r\n"],
        ["S", /^250 /],
        ["C", "QUIT"],
        ["S", "221 2.0.0 Bye"],
        ["CLOSED"],
      ],
      { localAddress: "127.0.0.3" },
    );
    assert.equal(fx.rec.messages.at(-1)!.user?.name, "trusted");
  });
});

describe("other commands and error limits", () => {
  it("answers RSET, NOOP, VRFY, HELP, EXPN, BDAT, unknown commands and QUIT", () =>
    dialogue([
      ["C", "noop"],
      ["S", "250 2.0.0 Ok"],
      ["C", "RSET"],
      ["S", "250 2.0.0 Ok"],
      ["C", "VRFY postmaster"],
      ["S", "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"],
      ["C", "HELP"],
      ["S", "214 2.0.0 https://www.rfc-editor.org/rfc/rfc5321"],
      ["C", "EXPN staff"],
      ["S", "502 5.5.1 Command not implemented"],
      ["C", "BDAT 10 LAST"],
      ["S", "502 5.5.1 Command not implemented"],
      ["C", "WIZ"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["C", "NOOP\u0000x"],
      ["S", "500 5.5.2 Invalid characters in command"],
      ["C", "QUIT"],
      ["S", "221 2.0.0 Bye"],
      ["CLOSED"],
    ]));

  it("hangs up on an HTTP request", () =>
    dialogue([
      ["C", "GET / HTTP/1.1"],
      ["S", "421 4.7.0 This is an SMTP server, closing connection"],
      ["CLOSED"],
    ]));

  it("closes after maxInvalidCommands invalid commands in a row; a valid one resets the count", () =>
    dialogue([
      ["C", "FOO"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["C", "BAR"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["C", "RCPT TO:<a@b.c>"],
      ["S", "503 5.5.1 Error: need MAIL command"],
      ["C", "BAZ"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["C", "NOOP"],
      ["S", "250 2.0.0 Ok"],
      ["C", "A"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["C", "B"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["C", "C"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["C", `NOOP ${"x".repeat(600)}`],
      ["S", "500 5.5.2 Line too long"],
      ["C", "D"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["S", "421 4.7.0 Too many errors, closing connection"],
      ["CLOSED"],
    ]));

  it("rejects a command line over 512 octets, even split across packets, and recovers", () =>
    dialogue([
      ["C", `NOOP ${"x".repeat(505)}`], // 510 + CRLF = 512: allowed
      ["S", "250 2.0.0 Ok"],
      ["RAW", `NOOP ${"y".repeat(300)}`],
      ["WAIT", 20],
      ["RAW", `${"y".repeat(300)}\r\n`],
      ["S", "500 5.5.2 Line too long"],
      ["C", "NOOP"],
      ["S", "250 2.0.0 Ok"],
    ]));

  it("logs one line per connection at close, with the reason", async () => {
    await dialogue([...AUTHED, ["C", "QUIT"], ["S", "221 2.0.0 Bye"]]);
    await until(() => fx.rec.logs.some((l) => l.includes('"reason":"quit"') && l.includes('"auth":"PLAIN"')));
    const line = JSON.parse(fx.rec.logs.find((l) => l.includes('"reason":"quit"') && l.includes("PLAIN"))!);
    assert.equal(line.msg, "smtp session closed");
    assert.equal(line.remote, "127.0.0.1");
    assert.match(line.tls, /^TLSv1\.[23]$/);
    assert.equal(typeof line.durationMs, "number");
  });
});

/**
 * Parsers of untrusted input in src/smtp (design convention 9): address and path syntax, MAIL
 * parameters, SASL decoding, with table cases and a seeded fuzz loop (never throws), plus a
 * socket-level fuzz: random bytes must never take the server down.
 */

import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { isValidMailbox, splitPathArgument } from "../src/smtp/address.js";
import { decodeBase64, parsePlain } from "../src/smtp/auth.js";
import { parseMailParams } from "../src/smtp/mail-params.js";
import { startFixture, until } from "./smtp-fixture.js";
import { runDialogue } from "./support/dialogue.js";

function rng(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s % n;
  };
}

describe("mailbox syntax (RFC 5321 §4.1.2)", () => {
  const valid = [
    "a@b",
    "first.last+tag@sub.example.com",
    `${"l".repeat(64)}@example.com`,
    `a@${"d".repeat(63)}.example`,
    '"john doe"@example.com',
    '"a\\"b"@example.com',
    '"a@b"@example.com',
    "a@[192.0.2.1]",
    "a@[IPv6:2001:db8::1]",
    "!#$%&'*+-/=?^_`{|}~@example.com",
  ];
  const invalid = [
    "a",
    "@b",
    "a@",
    "a..b@c",
    "a.@c",
    ".a@c",
    "a@b..c",
    "a@.b",
    "a@b.",
    "a@-b",
    "a@b-",
    "a@b_c",
    "a b@c",
    "a@b c",
    '""@c',
    '"a\tb"@c',
    "a@[192.0.2]",
    "a@[IPv6:zz::1]",
    "a@[tag:stuff]",
    `${"l".repeat(65)}@example.com`,
    `a@${"d".repeat(64)}.example`,
    "a@b@c",
  ];
  for (const a of valid) it(`accepts ${a}`, () => assert.equal(isValidMailbox(a, false), true));
  for (const a of invalid)
    it(`refuses ${JSON.stringify(a)}`, () => assert.equal(isValidMailbox(a, false), false));

  it("admits UTF-8 only under SMTPUTF8", () => {
    assert.equal(isValidMailbox("jörg@bücher.example", false), false);
    assert.equal(isValidMailbox("jörg@bücher.example", true), true);
    assert.equal(isValidMailbox('"jö rg"@example.com', true), true);
  });

  it("counts the limits in octets, also for UTF-8 (§4.5.3.1)", () => {
    const label63 = "d".repeat(63);
    // A domain of 255 octets is the most; 256 is one too many.
    assert.equal(isValidMailbox(`a@${[label63, label63, label63, label63].join(".")}`, false), true);
    assert.equal(isValidMailbox(`a@${[label63, label63, label63, `${label63}d`].join(".")}`, false), false);
    assert.equal(
      isValidMailbox(`a@${[label63, label63, label63, "d".repeat(62), "d"].join(".")}`, false),
      false,
    );
    // A label of 63 octets: 31 two-octet letters and one ASCII letter; 32 such letters are 64.
    assert.equal(isValidMailbox(`a@${"ü".repeat(31)}a.example`, true), true);
    assert.equal(isValidMailbox(`a@${"ü".repeat(32)}.example`, true), false);
    assert.equal(isValidMailbox(`a@x.${"ü".repeat(32)}`, true), false);
    // A local part of 64 octets, and of 66.
    assert.equal(isValidMailbox(`${"ö".repeat(32)}@example.com`, true), true);
    assert.equal(isValidMailbox(`${"ö".repeat(33)}@example.com`, true), false);
    // A hyphen may not begin or end a label, whatever comes before or after it.
    assert.equal(isValidMailbox("a@bü-.example", true), false);
    assert.equal(isValidMailbox("a@x.-ü", true), false);
    assert.equal(isValidMailbox("a@x-ü.y-z", true), true);
  });
});

describe("MAIL/RCPT argument split", () => {
  it("splits path and parameters", () => {
    assert.deepEqual(splitPathArgument("FROM:<a@b>", "FROM:"), { kind: "ok", address: "a@b", params: [] });
    assert.deepEqual(splitPathArgument("from: <a@b>  SIZE=10 BODY=8BITMIME", "FROM:"), {
      kind: "ok",
      address: "a@b",
      params: ["SIZE=10", "BODY=8BITMIME"],
    });
    assert.deepEqual(splitPathArgument('TO:<"a>b"@c>', "TO:"), {
      kind: "ok",
      address: '"a>b"@c',
      params: [],
    });
    assert.deepEqual(splitPathArgument("FROM:<>", "FROM:"), { kind: "ok", address: "", params: [] });
    assert.deepEqual(splitPathArgument("TO:<@x.example,@y.example:u@z.example>", "TO:"), {
      kind: "ok",
      address: "u@z.example",
      params: [],
    });
  });

  it("tells syntax errors from bad addresses", () => {
    for (const a of ["FROM<a@b>", "FROM:a@b", "FROM:<a@b", "FROM:<a@b>SIZE=1", "TO:<a@b>", ""]) {
      assert.deepEqual(splitPathArgument(a, "FROM:"), { kind: "syntax" }, a);
    }
    for (const a of [
      "FROM:<a>",
      "FROM:<@x:>",
      "FROM:<@x>",
      "FROM:<@-x:a@b>",
      `FROM:<${"a".repeat(60)}@${"b".repeat(200)}.c>`,
    ]) {
      assert.deepEqual(splitPathArgument(a, "FROM:"), { kind: "address" }, a);
    }
  });

  it("parses MAIL parameters", () => {
    assert.deepEqual(parseMailParams([]), { kind: "ok", size: undefined, body8bit: false, smtpUtf8: false });
    assert.deepEqual(parseMailParams(["size=10", "body=8bitmime", "smtputf8", "AUTH=<>"]), {
      kind: "ok",
      size: 10,
      body8bit: true,
      smtpUtf8: true,
    });
    for (const p of [
      ["SIZE"],
      ["SIZE=-1"],
      ["SIZE=1", "SIZE=2"],
      ["BODY=8BIT"],
      ["SMTPUTF8=yes"],
      ["AUTH="],
    ]) {
      assert.deepEqual(parseMailParams(p), { kind: "syntax" }, p.join(" "));
    }
    for (const p of [["RET=FULL"], ["BODY=BINARYMIME"], ["X"]]) {
      assert.deepEqual(parseMailParams(p), { kind: "unknown" }, p.join(" "));
    }
  });
});

describe("SASL decoding", () => {
  it("decodes strict base64 and PLAIN messages", () => {
    assert.equal(decodeBase64("="), "");
    assert.equal(decodeBase64("YWxpY2U="), "alice");
    for (const bad of ["YWxpY2U", "YW=xp", "a b", "****", "YWxpY2U=="])
      assert.equal(decodeBase64(bad), null, bad);
    assert.deepEqual(parsePlain("\0alice\0pw"), { kind: "ok", username: "alice", password: "pw" });
    assert.deepEqual(parsePlain("alice\0alice\0pw"), { kind: "ok", username: "alice", password: "pw" });
    assert.deepEqual(parsePlain("admin\0alice\0pw"), { kind: "foreign-authzid" });
    for (const bad of ["alice", "\0alice", "\0\0pw", "\0a\0b\0c"])
      assert.deepEqual(parsePlain(bad), { kind: "malformed" });
  });
});

describe("fuzz", () => {
  it("never throws on random command arguments", () => {
    const rand = rng(7);
    const alphabet = [
      "<",
      ">",
      "@",
      '"',
      "\\",
      ".",
      ":",
      ",",
      "[",
      "]",
      " ",
      "=",
      "a",
      "Z",
      "0",
      "-",
      "ü",
      "\0",
      "\t",
      "IPv6:",
    ];
    for (let i = 0; i < 20000; i++) {
      let s = rand(2) === 0 ? "FROM:<" : "";
      const len = rand(30);
      for (let k = 0; k < len; k++) s += alphabet[rand(alphabet.length)];
      splitPathArgument(s, "FROM:");
      isValidMailbox(s, rand(2) === 0);
      parseMailParams(s.split(" "));
      const decoded = decodeBase64(s);
      if (decoded !== null) parsePlain(decoded);
    }
  });

  it("survives connections sending random bytes", async () => {
    const fx = await startFixture({ limits: { maxInvalidCommands: 1000 } });
    try {
      const rand = rng(11);
      const pieces = [
        "\r\n",
        "\n",
        "\r",
        ".",
        "DATA\r\n",
        "AUTH PLAIN\r\n",
        "MAIL FROM:<a@b>\r\n",
        "STARTTLS\r\n",
      ];
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          const socket = connect(fx.port, "127.0.0.1");
          socket.on("error", () => {});
          socket.on("data", () => {});
          await new Promise((r) => socket.once("connect", r));
          for (let w = 0; w < 10; w++) {
            let chunk = "";
            for (let k = 0; k < 200; k++) {
              chunk += rand(4) === 0 ? pieces[rand(pieces.length)] : String.fromCharCode(rand(256));
            }
            socket.write(Buffer.from(chunk, "latin1"));
            await new Promise((r) => setTimeout(r, rand(3)));
          }
          if (rand(2) === 0) socket.resetAndDestroy();
          else socket.end();
        }),
      );
      await runDialogue(fx.port, [
        ["C", "NOOP"],
        ["S", "250 2.0.0 Ok"],
      ]);
      await until(() => fx.server.connectionCount() === 0);
    } finally {
      await fx.server.close(100);
    }
  });
});

/**
 * DKIM signing checked by two independent verifiers: mailauth's dkimVerify (keys answered from
 * memory) and dkimpy (Debian's python3-dkim, keys fetched with dnspython from the loopback DNS
 * server, so long TXT records travel split and over TCP as they would in the wild).
 */

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { dkimVerify } from "mailauth";
import { relaxedBodyHash, relaxedHeader, splitMessage } from "../src/dkim/canonicalize.js";
import { type DkimKey, generateDkimKey } from "../src/dkim/keys.js";
import { createMessageSigner, DkimSignError, type DkimSigner, signMessage } from "../src/dkim/sign.js";
import { dkimpyVerify } from "./support/dkim-verifiers.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";

const DOMAIN = "example.com";
let rsa: DkimKey;
let ed: DkimKey;
let rsaSigner: DkimSigner;
let edSigner: DkimSigner;
let dns: TestDnsServer;
const keyRecords = new Map<string, string>();

before(async () => {
  [rsa, ed] = await Promise.all([generateDkimKey("rsa"), generateDkimKey("ed25519")]);
  rsaSigner = { domain: DOMAIN, selector: "rsa1", kind: "rsa", privateKeyPem: rsa.privateKeyPem };
  edSigner = { domain: DOMAIN, selector: "ed1", kind: "ed25519", privateKeyPem: ed.privateKeyPem };
  keyRecords.set(`rsa1._domainkey.${DOMAIN}`, `v=DKIM1; k=rsa; p=${rsa.publicKeyBase64}`);
  keyRecords.set(`ed1._domainkey.${DOMAIN}`, `v=DKIM1; k=ed25519; p=${ed.publicKeyBase64}`);
  dns = await startDnsServer(
    Object.fromEntries([...keyRecords].map(([name, txt]) => [name, { TXT: [txt] }])),
  );
});

after(async () => {
  await dns.close();
});

const crlf = (lines: string[]) => lines.join("\r\n");
const attachment = randomBytes(48 * 1024)
  .toString("base64")
  .replace(/.{76}/g, "$&\r\n");

/** Message shapes worth signing, from the ordinary to the awkward. */
const SHAPES: Record<string, string | Buffer> = {
  "plain ASCII": crlf([
    "From: Alice <alice@example.com>",
    "To: Bob <bob@example.net>",
    "Subject: Hello",
    "Date: Mon, 01 Jan 2024 10:00:00 +0000",
    "Message-ID: <plain@example.com>",
    "",
    "Hello Bob,",
    "",
    "See you.",
    "",
  ]),
  "8-bit UTF-8 body and raw UTF-8 subject": Buffer.from(
    crlf([
      "From: Zoë <zoe@example.com>",
      "To: bob@example.net",
      "Subject: Grüße aus Köln ☕",
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: 8bit",
      "",
      "Schöne Grüße — ünïcödé everywhere, 日本語 too.  ",
      "",
    ]),
    "utf8",
  ),
  "long lines": crlf([
    "From: alice@example.com",
    "To: bob@example.net",
    `Subject: ${"long subject ".repeat(40)}`,
    "",
    "x".repeat(5000),
    `${"word ".repeat(800)}   `,
    "",
  ]),
  "folded headers with tabs and runs of spaces": crlf([
    "From: alice@example.com",
    "To: one@example.net,",
    "\ttwo@example.net,",
    "   three@example.net",
    "Subject:    spaced \t out  ",
    "  and folded  ",
    "References: <a@x>",
    " <b@x>",
    "",
    "body",
    "",
  ]),
  "missing trailing CRLF": crlf([
    "From: alice@example.com",
    "To: bob@example.net",
    "Subject: no CRLF",
    "",
    "last line",
  ]),
  "multipart with an attachment": crlf([
    "From: alice@example.com",
    "To: bob@example.net",
    "Subject: report",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="b1"',
    "",
    "--b1",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "Report attached.",
    "--b1",
    'Content-Type: application/octet-stream; name="r.bin"',
    "Content-Transfer-Encoding: base64",
    'Content-Disposition: attachment; filename="r.bin"',
    "",
    attachment,
    "--b1--",
    "",
  ]),
  "mixed-case header names": crlf([
    "fROM: alice@example.com",
    "to: bob@example.net",
    "SUBJECT: shouting",
    "message-id: <mixed@example.com>",
    "Mime-Version: 1.0",
    "",
    "quiet body",
    "",
  ]),
  "empty body": crlf(["From: alice@example.com", "To: bob@example.net", "Subject: nothing", "", ""]),
  "header fields only, no blank line, no final CRLF": crlf([
    "From: alice@example.com",
    "To: bob@example.net",
    "Subject: just headers",
  ]),
  "trailing blank lines and line-end whitespace": crlf([
    "From: alice@example.com",
    "To: bob@example.net",
    "",
    "  leading spaces stay   ",
    "tabs\t\there \t",
    "",
    "",
    "   ",
    "",
  ]),
  "bare LF line ends": [
    "From: alice@example.com",
    "To: bob@example.net",
    "Subject: unix",
    "",
    "lf only",
    "",
  ].join("\n"),
  "repeated fields (two To, two From)": crlf([
    "Received: from a by b",
    "From: first@example.com",
    "From: second@example.com",
    "To: one@example.net",
    "To: two@example.net",
    "",
    "two of each",
    "",
  ]),
  "body over 1 MiB with blank lines at slice edges": (() => {
    const line = `${"abc  def\t".repeat(10)}  `;
    const body: string[] = [];
    for (let i = 0; i < 30_000; i++) body.push(i % 97 === 0 ? "" : line);
    return crlf(["From: alice@example.com", "To: bob@example.net", "Subject: big", "", ...body, "", "", ""]);
  })(),
};

const SIGNER_SETS: Record<string, () => DkimSigner[]> = {
  rsa: () => [rsaSigner],
  ed25519: () => [edSigner],
  "rsa+ed25519": () => [rsaSigner, edSigner],
};

async function mailauthVerify(message: Buffer) {
  const result = await dkimVerify(message, {
    resolver: async (name: string) => {
      const txt = keyRecords.get(name.replace(/\.$/, ""));
      if (txt === undefined) throw Object.assign(new Error(`no TXT for ${name}`), { code: "ENOTFOUND" });
      return [[txt]];
    },
  });
  return result.results.map((r) => ({
    result: r.status.result,
    domain: r.signingDomain,
    selector: r.selector,
  }));
}

function signatureFields(message: Buffer): string[] {
  return splitMessage(message)
    .headers.filter((h) => h.key === "dkim-signature")
    .map((h) => h.raw);
}

describe("signing verified by mailauth and dkimpy", () => {
  const signed: { label: string; message: Buffer; selectors: string[] }[] = [];

  before(async () => {
    for (const [shape, content] of Object.entries(SHAPES)) {
      for (const [setName, signers] of Object.entries(SIGNER_SETS)) {
        const list = signers();
        const message = await signMessage(
          Buffer.isBuffer(content) ? content : Buffer.from(content, "latin1"),
          list,
        );
        signed.push({ label: `${shape} / ${setName}`, message, selectors: list.map((s) => s.selector) });
      }
    }
  });

  it("mailauth reports pass with d=example.com for every shape and key set", async () => {
    for (const { label, message, selectors } of signed) {
      const results = await mailauthVerify(message);
      assert.deepEqual(
        results,
        selectors.map((selector) => ({ result: "pass", domain: DOMAIN, selector })),
        label,
      );
    }
  });

  it("dkimpy reports pass with d=example.com for every shape and key set", async () => {
    const results = await dkimpyVerify(
      dns.port,
      signed.map((s) => s.message),
    );
    signed.forEach(({ label, selectors }, i) => {
      assert.deepEqual(
        results[i],
        selectors.map((selector) => ({ result: "pass", domain: DOMAIN, selector })),
        label,
      );
    });
    // The 2048-bit key's TXT is over 255 bytes: dnspython got it split, as published.
    assert.ok(dns.queriesFor(`rsa1._domainkey.${DOMAIN}`, "TXT").length > 0);
  });

  it("lists each signed field as often as it occurs, and From once more", () => {
    const repeated = signed.find((s) => s.label === "repeated fields (two To, two From) / rsa");
    const plain = signed.find((s) => s.label === "plain ASCII / rsa");
    const h = (m: Buffer) => /h=([^;]+);/.exec(signatureFields(m)[0]!.replace(/\s+/g, ""))?.[1]?.split(":");
    assert.deepEqual(h(plain!.message), ["From", "From", "To", "Subject", "Date", "Message-ID"]);
    assert.deepEqual(h(repeated!.message), ["From", "From", "From", "To", "To"]);
  });

  it("prepends one field per signer, folded to at most 78 characters a line", () => {
    const both = signed.find((s) => s.label === "plain ASCII / rsa+ed25519")!;
    const fields = signatureFields(both.message);
    assert.equal(fields.length, 2);
    assert.match(
      fields[0]!,
      /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.com; s=rsa1;/,
    );
    assert.match(fields[1]!, /a=ed25519-sha256;.*s=ed1;/s);
    for (const line of fields.join("\r\n").split("\r\n")) assert.ok(line.length <= 78, line);
    assert.ok(both.message.toString("latin1").endsWith(SHAPES["plain ASCII"] as string));
  });

  it("normalizes bare LF to CRLF and ends a header-only message with the blank line", () => {
    const lf = signed.find((s) => s.label.startsWith("bare LF"))!.message.toString("latin1");
    assert.ok(!/(?<!\r)\n/.test(lf));
    const headersOnly = signed
      .find((s) => s.label.startsWith("header fields only"))!
      .message.toString("latin1");
    assert.ok(headersOnly.endsWith("Subject: just headers\r\n\r\n"));
  });
});

describe("tampering is caught", () => {
  it("a changed body fails with both verifiers", async () => {
    const message = await signMessage(Buffer.from(SHAPES["plain ASCII"] as string), [rsaSigner, edSigner]);
    const tampered = Buffer.from(message.toString("latin1").replace("See you.", "See you!"), "latin1");
    const results = await mailauthVerify(tampered);
    assert.equal(results.length, 2);
    for (const r of results) assert.notEqual(r.result, "pass");
    const [py] = await dkimpyVerify(dns.port, [tampered]);
    assert.deepEqual(
      py?.map((r) => r.result),
      ["fail", "fail"],
    );
  });

  it("a From field added after signing fails with both verifiers (oversigning)", async () => {
    const message = await signMessage(Buffer.from(SHAPES["plain ASCII"] as string), [rsaSigner, edSigner]);
    const text = message.toString("latin1");
    const at = text.indexOf("From: Alice");
    const forged = Buffer.from(
      `${text.slice(0, at)}From: Mallory <ceo@example.com>\r\n${text.slice(at)}`,
      "latin1",
    );
    const results = await mailauthVerify(forged);
    assert.equal(results.length, 2);
    for (const r of results) assert.notEqual(r.result, "pass");
    const [py] = await dkimpyVerify(dns.port, [forged]);
    assert.deepEqual(
      py?.map((r) => r.result),
      ["fail", "fail"],
    );
  });
});

describe("signer checks", () => {
  const content = Buffer.from(SHAPES["plain ASCII"] as string);

  it("writes the given signing time as t=", async () => {
    const message = await signMessage(content, [edSigner], { signTime: new Date("2030-01-02T03:04:05Z") });
    assert.match(signatureFields(message)[0]!, /t=1893553445;/);
  });

  it("refuses a message without From, a wrong kind, bad names and bad keys, never quoting the key", async () => {
    await assert.rejects(
      signMessage(Buffer.from("To: bob@example.net\r\n\r\nhi\r\n"), [rsaSigner]),
      (err: Error) => err instanceof DkimSignError && /no From/.test(err.message),
    );
    const bad: DkimSigner[] = [
      { ...rsaSigner, kind: "ed25519" },
      { ...rsaSigner, selector: "s1; h=To" },
      { ...rsaSigner, domain: "exa mple.com" },
      { ...rsaSigner, privateKeyPem: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n" },
    ];
    for (const signer of bad) {
      assert.throws(
        () => createMessageSigner([signer]),
        (err: Error) =>
          err instanceof DkimSignError &&
          !err.message.includes("PRIVATE KEY") &&
          !err.message.includes("c2VjcmV0"),
        signer.selector,
      );
    }
    assert.throws(() => createMessageSigner([]), DkimSignError);
  });

  it("signs many messages with one prepared signer", async () => {
    const signer = createMessageSigner([rsaSigner, edSigner]);
    const messages = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        signer(Buffer.from(crlf(["From: a@example.com", `Subject: ${i}`, "", `n${i}`, ""]))),
      ),
    );
    for (const m of messages)
      assert.deepEqual(
        (await mailauthVerify(m)).map((r) => r.result),
        ["pass", "pass"],
      );
  });
});

describe("relaxed canonicalization (RFC 6376 §3.4.5 example)", () => {
  it("canonicalizes the RFC's header and body example", async () => {
    const { headers, body } = splitMessage(
      Buffer.from("A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n"),
    );
    assert.deepEqual(headers.map(relaxedHeader), ["a:X\r\n", "b:Y Z\r\n"]);
    const expected = createHash("sha256").update(" C\r\nD E\r\n").digest("base64");
    assert.equal(await relaxedBodyHash(body), expected);
  });

  it("hashes an empty body as the empty string, and a body of blank lines likewise", async () => {
    const empty = createHash("sha256").update("").digest("base64");
    assert.equal(await relaxedBodyHash(Buffer.alloc(0)), empty);
    assert.equal(await relaxedBodyHash(Buffer.from("\r\n  \r\n\t\r\n")), empty);
  });

  it("gives the same hash in slices as in one piece", async () => {
    const text = `${"a \t b  \r\n\r\n".repeat(200_000)}tail  `;
    const whole = `${text
      .replace(/[ \t]+/g, " ")
      .replace(/ \r\n/g, "\r\n")
      .replace(/ $/, "")}\r\n`;
    assert.equal(
      await relaxedBodyHash(Buffer.from(text)),
      createHash("sha256").update(whole).digest("base64"),
    );
  });
});

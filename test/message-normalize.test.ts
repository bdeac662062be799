/**
 * Content normalisation (src/message/normalize.ts, issue 11): long lines re-encoded with the
 * decoded content unchanged (checked by decoding with postal-mime, an independent parser), long
 * header lines folded, unfoldable ones refused, UTF-8 header fields turned into RFC 2047 words
 * for an ASCII envelope, and messages that need nothing returned byte for byte. Seeded fuzzing
 * of mutated MIME never throws and never returns a line over the limit.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import PostalMime from "postal-mime";
import { normalizeMessage } from "../src/message/normalize.js";

const LIMIT = { maxLineLength: 998, encodeHeaders: true };

function crlf(text: string): Buffer {
  return Buffer.from(text.replace(/\r?\n/g, "\r\n"), "utf8");
}

function longestLine(buf: Buffer): number {
  return Math.max(
    ...buf
      .toString("latin1")
      .split("\r\n")
      .map((l) => l.length),
  );
}

function normalized(content: Buffer, options = LIMIT): Buffer {
  const result = normalizeMessage(content, options);
  assert.ok(result.ok, result.ok ? "" : result.reason);
  return result.content;
}

function headerOf(buf: Buffer): string {
  const text = buf.toString("latin1");
  return text.slice(0, text.indexOf("\r\n\r\n") + 2);
}

/** A minified template: one line of 5,000 characters of HTML. */
function minifiedHtml(length = 5000): string {
  let html = "<html><body>";
  for (let i = 0; html.length < length - 14; i++) html += `<p class="c${i}">Item ${i} = a&amp;b </p>`;
  return `${html}</body></html>`;
}

describe("message normalisation", () => {
  it("returns a message that needs nothing as the same buffer", () => {
    const message = crlf(
      'From: "Zoë" <a@example.com>\nTo: b@example.org\nSubject: Grüße\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nHällo wörld\n',
    );
    const result = normalizeMessage(message, { maxLineLength: 998, encodeHeaders: false });
    assert.ok(result.ok);
    assert.equal(result.content, message, "the very same Buffer, not a copy");
    assert.deepEqual(result.changes, []);
    const ascii = crlf(`From: a@example.com\nSubject: hi\n\n${"x".repeat(998)}\n`);
    assert.equal(normalized(ascii), ascii);
  });

  it("re-encodes a 5,000-character HTML line as quoted-printable, decoding to the same HTML", async () => {
    const html = minifiedHtml();
    const message = crlf(
      `Content-Type: text/html; charset="us-ascii"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 7bit\nSubject: Welcome\nFrom: app@example.com\nTo: user@example.org\n\n${html}\n`,
    );
    const out = normalized(message);
    assert.ok(longestLine(out) <= 76, `longest line ${longestLine(out)}`);
    const header = headerOf(out);
    assert.match(header, /^Content-Transfer-Encoding: quoted-printable\r$/m);
    assert.doesNotMatch(header, /7bit/);
    assert.equal((header.match(/MIME-Version/g) ?? []).length, 1);
    // The fields before the changed one are the same bytes.
    assert.ok(
      out
        .toString("latin1")
        .startsWith('Content-Type: text/html; charset="us-ascii"\r\nMIME-Version: 1.0\r\n'),
    );
    const parsed = await PostalMime.parse(out);
    assert.equal(parsed.html?.replace(/\r?\n$/, ""), html);
    assert.equal(parsed.subject, "Welcome");
  });

  it("re-encodes a long line of mostly non-ASCII text as base64", async () => {
    const text = "邮件内容很长".repeat(300);
    const message = crlf(`Subject: x\nContent-Type: text/plain; charset=utf-8\n\n${text}\n`);
    const out = normalized(message);
    assert.match(headerOf(out), /^MIME-Version: 1\.0\r\nContent-Transfer-Encoding: base64\r$/m);
    assert.ok(longestLine(out) <= 76);
    assert.equal((await PostalMime.parse(out)).text?.replace(/\r?\n$/, ""), text);
  });

  it("re-encodes only the attachment part with a long line; the other parts stay byte for byte", async () => {
    const textPart = "Content-Type: text/plain\n\nSee the attached data.\n";
    const csv = `id,name\n${Array.from({ length: 400 }, (_, i) => `${i};row-${i}`).join(",")}\n1,end`;
    const message = crlf(
      `From: a@example.com\nSubject: report\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="==b1=="\n\npreamble\n--==b1==\n${textPart}--==b1==\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="data.csv"\n\n${csv}\n--==b1==--\nepilogue\n`,
    );
    const out = normalized(message);
    assert.ok(longestLine(out) <= 998);
    const outText = out.toString("latin1");
    assert.ok(
      outText.includes(crlf(`--==b1==\n${textPart}--==b1==\n`).toString("latin1")),
      "text part unchanged",
    );
    assert.match(outText, /filename="data.csv"\r\nContent-Transfer-Encoding: base64\r\n\r\n/);
    assert.ok(outText.endsWith("\r\n--==b1==--\r\nepilogue\r\n"));
    const parsed = await PostalMime.parse(out);
    assert.equal(parsed.text?.trim(), "See the attached data.");
    assert.equal(parsed.attachments.length, 1);
    assert.equal(Buffer.from(parsed.attachments[0]!.content as ArrayBuffer).toString(), crlf(csv).toString());
  });

  it("descends into nested multiparts and attached messages", async () => {
    const html = minifiedHtml(3000);
    const inner = `From: x@example.net\nSubject: inner\nContent-Type: text/html\n\n${html}\n`;
    const message = crlf(
      `From: a@example.com\nContent-Type: multipart/mixed; boundary=outer\n\n--outer\nContent-Type: multipart/alternative; boundary=alt\n\n--alt\nContent-Type: text/plain\n\nplain\n--alt\nContent-Type: text/html\n\n${html}\n--alt--\n\n--outer\nContent-Type: message/rfc822\n\n${inner}\n--outer--\n`,
    );
    const out = normalized(message);
    assert.ok(longestLine(out) <= 998);
    const outText = out.toString("latin1");
    assert.equal((outText.match(/quoted-printable/g) ?? []).length, 2);
    assert.match(
      outText,
      /Content-Type: message\/rfc822\r\n\r\nFrom: x@example.net/,
      "the attached message is not encoded itself",
    );
    const parsed = await PostalMime.parse(out, { forceRfc822Attachments: true });
    assert.equal(parsed.html?.replace(/\r?\n$/, ""), html);
    const attached = parsed.attachments.find((a) => a.mimeType === "message/rfc822");
    assert.ok(attached);
    // Decoded, the attached message reads the same as before normalisation.
    const original = await PostalMime.parse(message, { forceRfc822Attachments: true });
    const originalInner = original.attachments.find((a) => a.mimeType === "message/rfc822");
    const innerParsed = await PostalMime.parse(attached.content as ArrayBuffer);
    assert.equal(innerParsed.html, (await PostalMime.parse(originalInner!.content as ArrayBuffer)).html);
    assert.ok(innerParsed.html?.startsWith(html));
  });

  it("re-wraps quoted-printable and base64 bodies without decoding them", async () => {
    const qpLine = `${"caf=C3=A9 ".repeat(150)}end`;
    const b64 = Buffer.from("binary\u0000data".repeat(200)).toString("base64");
    const message = crlf(
      `From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: Quoted-Printable\n\n${qpLine}\n--b\nContent-Type: application/x-thing\nContent-Transfer-Encoding: base64\n\n${b64}\n--b--\n`,
    );
    const out = normalized(message);
    assert.ok(longestLine(out) <= 76);
    const parsed = await PostalMime.parse(out);
    assert.equal(parsed.text?.trim(), `${"café ".repeat(150)}end`);
    assert.equal(
      Buffer.from(parsed.attachments[0]!.content as ArrayBuffer).toString(),
      "binary\u0000data".repeat(200),
    );
  });

  it("folds a long header line at whitespace; unfolding gives the same value", () => {
    const ids = Array.from({ length: 60 }, (_, i) => `<message-${i}.abcdefgh@mail.example.com>`).join(" ");
    const message = crlf(`From: a@example.com\nReferences: ${ids}\nSubject: s\n\nbody\n`);
    const out = normalized(message);
    assert.ok(longestLine(out) <= 78);
    const header = headerOf(out);
    const refs = /References: ([\s\S]*?)\r\nSubject/.exec(header)![1]!;
    assert.equal(refs.replace(/\r\n/g, ""), ids);
    assert.ok(out.toString("latin1").endsWith("Subject: s\r\n\r\nbody\r\n"));
  });

  it("refuses a header line that has no whitespace to fold at", () => {
    const message = crlf(`From: a@example.com\nX-Token: ${"A".repeat(1200)}\n\nbody\n`);
    const result = normalizeMessage(message, LIMIT);
    assert.equal(result.ok, false);
    assert.match(result.ok ? "" : result.reason, /X-Token.*cannot be folded/);
    // Within the limit it needs nothing and passes.
    const fits = crlf(`From: a@example.com\nX-Token: ${"A".repeat(980)}\n\nbody\n`);
    assert.equal(normalized(fits), fits);
  });

  it("turns raw UTF-8 header fields into RFC 2047 encoded words when the envelope is ASCII", async () => {
    const subject = "Grüße aus Köln — 你好, a long subject that needs more than one encoded word to carry it";
    const message = crlf(
      `From: "Zoë Müller" <zoe@bücher.example>\nTo: Ünïcode Friends: a@example.org, "Jörg" <j@example.org>;\nSubject: ${subject}\nMessage-ID: <x@example.com>\nX-Campaign: Frühling\n\nbody\n`,
    );
    const out = normalized(message);
    const header = headerOf(out);
    assert.ok(!/[^\x00-\x7f]/.test(header), header);
    assert.ok(longestLine(out) <= 78);
    assert.match(header, /^From: =\?UTF-8\?Q\?Zo=C3=AB_M=C3=BCller\?= <zoe@xn--bcher-kva\.example>\r$/m);
    const parsed = await PostalMime.parse(out);
    assert.equal(parsed.subject, subject);
    assert.equal(parsed.from?.name, "Zoë Müller");
    assert.equal(parsed.headers.find((h) => h.key === "x-campaign")?.value, "=?UTF-8?Q?Fr=C3=BChling?=");
    assert.ok(header.includes("Message-ID: <x@example.com>\r\n"));
    assert.equal(parsed.text?.trim(), "body");
  });

  it("leaves a field it cannot encode (non-ASCII local part, invalid UTF-8) and encodes the rest", () => {
    const message = Buffer.concat([
      crlf("From: a@example.com\nTo: 用户@例子.测试\nSubject: Grüße\nX-Old: "),
      Buffer.from([0xe9, 0x74, 0xe9]), // latin1 "été": not UTF-8, charset unknown
      crlf("\n\nbody\n"),
    ]);
    const header = headerOf(normalized(message));
    assert.ok(header.includes(Buffer.from("To: 用户@例子.测试").toString("latin1")));
    assert.match(header, /^Subject: =\?UTF-8\?Q\?Gr=C3=BC=C3=9Fe\?=\r$/m);
    assert.ok(header.includes("X-Old: \xe9t\xe9\r\n"));
  });

  it("with maxLineLength 0 leaves long lines alone", () => {
    const message = crlf(`From: a@example.com\n\n${"y".repeat(5000)}\n`);
    assert.equal(normalized(message, { maxLineLength: 0, encodeHeaders: true }), message);
  });

  it("survives seeded fuzzing of mutated MIME: never throws, never leaves a line over the limit", () => {
    const base = crlf(
      `From: "Zoë" <a@example.com>\nSubject: ñ ${"w ".repeat(600)}\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n${minifiedHtml(2500)}\n--b\nContent-Type: multipart/alternative; boundary=c\n\n--c\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n${"q=3D".repeat(400)}\n--c--\n--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n${"QUJD".repeat(400)}\n--b--\n`,
    );
    let seed = 20261202;
    const random = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const tokens = [
      "\r\n",
      "--b",
      "--c",
      "\r\n\r\n",
      "--b--",
      " ",
      ":",
      "Content-Type: multipart/mixed; boundary=b\r\n",
      "=",
      "\xff",
    ];
    for (let round = 0; round < 400; round++) {
      const bytes = Buffer.from(base);
      const parts: Buffer[] = [];
      let pos = 0;
      for (let m = 0; m < 1 + Math.floor(random() * 6); m++) {
        const at = pos + Math.floor(random() * (bytes.length - pos) * 0.3);
        parts.push(
          bytes.subarray(pos, at),
          Buffer.from(tokens[Math.floor(random() * tokens.length)]!, "latin1"),
        );
        pos = Math.min(bytes.length, at + Math.floor(random() * 40));
      }
      parts.push(bytes.subarray(pos));
      const mutated = Buffer.concat(parts);
      const result = normalizeMessage(mutated, LIMIT);
      if (result.ok)
        assert.ok(longestLine(result.content) <= 998, `round ${round}: line ${longestLine(result.content)}`);
    }
  });
});

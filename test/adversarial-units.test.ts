/**
 * Issue 13, the inputs that stalled or crashed Petrel, as unit tests of the parsers that now
 * bound them: results, not timings (the timings are in test/adversarial-stalls.test.ts, which
 * measures them through the real listeners). NUL bytes in DATA at every chunk split, header
 * section limits, the 125,000-address From field, categories and field removal at scale, the
 * HTML and report prefixes of the bounce parser, and the DKIM trims.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseReport, reportPrefix } from "../src/bounces/report.js";
import { relaxedBodyHash, splitMessage } from "../src/dkim/canonicalize.js";
import { readAttachedMetadata, removeFields } from "../src/events/metadata.js";
import {
  type HeaderLimits,
  headerSenders,
  readHeaderSection,
  readLimitedHeaderSection,
} from "../src/message/headers.js";
import { DataReader } from "../src/smtp/data-reader.js";

function feedSplit(stream: string, cut: number, mode: "reject" | "remove") {
  const bytes = Buffer.from(stream, "latin1");
  const reader = new DataReader(1e9, 0, mode);
  const chunks = [bytes.subarray(0, cut), bytes.subarray(cut)];
  let consumed = 0;
  for (const chunk of chunks) {
    const end = reader.feed(chunk, 0);
    if (end !== -1) return { reader, end: consumed + end, content: reader.content().toString("latin1") };
    consumed += chunk.length;
  }
  return { reader, end: -1, content: "" };
}

describe("NUL bytes in DATA", () => {
  // The scanner's variant that got through, a NUL inside a line, and one right after the data.
  const stream = "Subject: x\r\n\r\nline\r\n\0.\r\nmid\0dle\r\n.\r\nNEXT\0";
  const endMark = stream.indexOf("\r\n.\r\n") + 5;

  it("reject: marks the message at every chunk split, the end mark found only at CRLF.CRLF", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const { reader, end } = feedSplit(stream, cut, "reject");
      assert.equal(end, endMark, `cut at ${cut}`);
      assert.equal(reader.nul, true, `cut at ${cut}`);
    }
  });

  it("reject: a NUL after the end mark (the next command) does not mark the message", () => {
    const { reader, end } = feedSplit("a\r\n.\r\n\0", 2, "reject");
    assert.equal(end, 6);
    assert.equal(reader.nul, false);
  });

  it("remove: the content is the same without its NULs at every chunk split", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const { reader, end, content } = feedSplit(stream, cut, "remove");
      assert.equal(end, endMark, `cut at ${cut}`);
      assert.equal(content, "Subject: x\r\n\r\nline\r\n.\r\nmiddle\r\n", `cut at ${cut}`);
      assert.equal(reader.nulRemoved, 2);
      assert.equal(reader.nul, false);
    }
  });

  it("remove: NULs next to bare line ends and dots in one chunk", () => {
    const { content } = feedSplit("\0a\n\0\r\0\r\n..\0x\r\n.\r\n", 0, "remove");
    assert.equal(content, "a\r\n\r\n\r\n.x\r\n");
  });
});

const LIMITS: HeaderLimits = { maxHeaderBytes: 200, maxHeaderFields: 5, maxAddressesPerField: 3 };

describe("header section limits", () => {
  it("a section over maxHeaderBytes is 552 5.3.4, with or without a body", () => {
    for (const body of ["\r\nbody\r\n", ""]) {
      const content = Buffer.from(`Subject: ${"x".repeat(200)}\r\n${body}`);
      const read = readLimitedHeaderSection(content, LIMITS);
      assert.equal(read.ok, false);
      if (!read.ok) assert.deepEqual([read.refusal.smtpCode, read.refusal.enhancedCode], [552, "5.3.4"]);
    }
  });

  it("a section of exactly maxHeaderBytes passes, and a long body does not count", () => {
    const field = `Subject: ${"x".repeat(200 - 11)}\r\n`;
    assert.equal(field.length, 200);
    const read = readLimitedHeaderSection(Buffer.from(`${field}\r\n${"b".repeat(10_000)}\r\n`), LIMITS);
    assert.equal(read.ok, true);
    if (read.ok) assert.equal(read.section.end, 200);
  });

  it("more than maxHeaderFields fields is 552 5.3.4; folded lines are one field", () => {
    const five = "A: 1\r\nB: 2\r\n 2b\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
    assert.equal(readLimitedHeaderSection(Buffer.from(five), LIMITS).ok, true);
    const six = readLimitedHeaderSection(Buffer.from(`F: 6\r\n${five}`), LIMITS);
    assert.equal(six.ok, false);
    if (!six.ok) assert.equal(six.refusal.message, "Too many header fields");
  });

  it("more addresses than maxAddressesPerField in From or Sender is 550 5.6.0", () => {
    const section = (h: string) => readHeaderSection(Buffer.from(`${h}\r\n\r\nbody\r\n`));
    const ok = headerSenders(section("From: a@x.test, b@x.test, c@x.test"), 3);
    assert.ok(!("refusal" in ok));
    assert.deepEqual(ok.from, ["a@x.test", "b@x.test", "c@x.test"]);
    for (const h of [
      "From: a@x.test, b@x.test, c@x.test, d@x.test",
      "From: a@x.test\r\nSender: g: a@x, b@x, c@x, d@x;",
    ]) {
      const over = headerSenders(section(h), 3);
      assert.ok("refusal" in over, h);
      assert.deepEqual([over.refusal.smtpCode, over.refusal.enhancedCode], [550, "5.6.0"]);
    }
  });

  it("commas in quoted names, comments and angle brackets are not list separators", () => {
    const section = readHeaderSection(
      Buffer.from('From: "Doe, John; Jr" (work, main) <"a,b"@x.test>\r\n\r\nbody\r\n'),
    );
    const one = headerSenders(section, 1);
    assert.ok(!("refusal" in one));
    assert.deepEqual(one.from, ['"a,b"@x.test']);
  });

  it("a From field with 125,000 addresses is refused, not a stack overflow", () => {
    const addresses = Array.from({ length: 125_000 }, (_, i) => `u${i}@example.com`).join(", ");
    const content = Buffer.from(`From: ${addresses}\r\n\r\nbody\r\n`);
    const limits = { maxHeaderBytes: 8 * 1024 * 1024, maxHeaderFields: 1000, maxAddressesPerField: 1000 };
    const read = readLimitedHeaderSection(content, limits);
    assert.ok(read.ok);
    const senders = headerSenders(read.section, limits.maxAddressesPerField);
    assert.ok("refusal" in senders);
    assert.equal(senders.refusal.reason, "124999 list separators in From (limit 1000)");
    // Without a limit (delivery reads accepted mail this way) the list comes back whole.
    const all = headerSenders(read.section);
    assert.equal(all.from.length, 125_000);
  });
});

describe("metadata at scale", () => {
  it("200,000 distinct categories (some repeated) are de-duplicated in order", () => {
    const parts = Array.from({ length: 200_000 }, (_, i) => `c${i % 150_000}`);
    const content = Buffer.from(`From: a@b.test\r\nX-Petrel-Category: ${parts.join(",")}\r\n\r\nbody\r\n`);
    const result = readAttachedMetadata(content, readHeaderSection(content), {
      maxBytes: 1000,
      maxCategories: 1_000_000,
    });
    assert.ok(result.ok);
    assert.equal(result.categories.length, 150_000);
    assert.equal(result.categories[149_999], "c149999");
    assert.equal(result.content.toString(), "From: a@b.test\r\n\r\nbody\r\n");
  });

  it("the count is checked as categories are added: the first one over the limit refuses", () => {
    const content = Buffer.from(`X-Petrel-Category: a,b,a,c\r\n\r\n`);
    const limits = { maxBytes: 1000, maxCategories: 2 };
    const result = readAttachedMetadata(content, readHeaderSection(content), limits);
    assert.deepEqual(result, { ok: false, text: "X-Petrel-Category has more than 2 categories" });
  });

  it("removeFields over many lines without a colon keeps them and drops the named field", () => {
    const lines = "x\r\n".repeat(100_000);
    const content = Buffer.from(`From: a@b.test\r\nX-Drop: 1\r\n${lines}Subject: s\r\n\r\nbody\r\n`);
    const out = removeFields(content, readHeaderSection(content).end, ["x-drop"]);
    assert.equal(out.toString(), `From: a@b.test\r\n${lines}Subject: s\r\n\r\nbody\r\n`);
    // A colon further down must not make a colon-less line look like a field.
    const tricky = Buffer.from("X-Drop: 1\r\n x\r\nkeep me\r\nX-Drop: 2\r\nA: b\r\n\r\n");
    assert.equal(
      removeFields(tricky, readHeaderSection(tricky).end, ["x-drop"]).toString(),
      "keep me\r\nA: b\r\n\r\n",
    );
  });
});

describe("bounce report prefixes", () => {
  it("the text of an HTML part: tags removed, a run of '<' kept as text, capped", async () => {
    const html = (body: string) =>
      Buffer.from(
        `From: mailer@x.test\r\nSubject: Undeliverable\r\nContent-Type: text/html\r\n\r\n${body}\r\n`,
      );
    const report = await parseReport(html("<p>550 5.1.1 <b>no such user</b></p>"));
    assert.equal(report.kind, "text");
    if (report.kind === "text") assert.equal(report.diagnostic, "550 5.1.1 no such user");
    const lt = await parseReport(html(`Undeliverable ${"<".repeat(100_000)}`));
    assert.ok(lt.kind === "text" && lt.humanText.length <= 8000);
  });

  it("reportPrefix: at most 2,000 lines, 1 MiB, and up to the 100th line starting with --", () => {
    const lines = Buffer.from("a\r\n".repeat(20_000));
    assert.equal(reportPrefix(lines).length, 6000);
    const parts = Buffer.from("--b\r\nx\r\n".repeat(500));
    assert.equal(reportPrefix(parts).length, 99 * 8);
    const long = Buffer.alloc(3 * 1024 * 1024, 0x61);
    assert.equal(reportPrefix(long).length, 1024 * 1024);
    assert.equal(reportPrefix("short").toString(), "short");
  });

  it("a DSN whose status part comes first is read though its returned message is cut off", async () => {
    const dsn = [
      "From: MAILER-DAEMON@mx.test",
      'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
      "",
      "--b",
      "Content-Type: message/delivery-status",
      "",
      "Reporting-MTA: dns; mx.test",
      "",
      "Final-Recipient: rfc822; ann@x.test",
      "Action: failed",
      "Status: 5.1.1",
      "",
      "--b",
      "Content-Type: message/rfc822",
      "",
      "Message-ID: <m1@x.test>",
      "",
      ...Array.from({ length: 50_000 }, () => " x"),
    ].join("\r\n");
    const report = await parseReport(Buffer.from(dsn));
    assert.equal(report.kind, "dsn");
    if (report.kind === "dsn") {
      assert.equal(report.recipients[0]?.status, "5.1.1");
      assert.equal(report.originalMessageId, "<m1@x.test>");
    }
  });
});

describe("DKIM relaxed canonicalization trims", () => {
  it("trailing empty lines are dropped however many there are; inner ones kept", async () => {
    const inner = await relaxedBodyHash(Buffer.from(`a\r\n${"\r\n".repeat(100_000)}b\r\n`));
    const expected = await relaxedBodyHash(Buffer.from(`a\r\n${"\r\n".repeat(100_000)}b\r\n\r\n\r\n`));
    assert.equal(inner, expected);
    assert.notEqual(inner, await relaxedBodyHash(Buffer.from("a\r\nb\r\n")));
  });

  it("blanks before a field's colon are not part of its name", () => {
    const split = splitMessage(Buffer.from(`Subject${" ".repeat(100_000)}: x\r\n\r\n`));
    assert.equal(split.headers[0]?.name, "Subject");
  });
});

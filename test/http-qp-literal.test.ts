/**
 * src/services/qp-literal.ts against nodemailer's quoted-printable Encoder (the stream
 * MailComposer uses for a text part): over generated text around the 76-character line length,
 * with spaces, TABs and ".,!?" near the cut and CRLFs at every offset, the fast path must write
 * exactly what the Encoder writes, and decline every text that needs an escape.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Encoder } from "nodemailer/lib/qp/index.js";
import { literalQuotedPrintable } from "../src/services/qp-literal.js";
import { seededRandom } from "./support/seeded-random.js";

function viaEncoder(text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const encoder = new Encoder();
    const chunks: Buffer[] = [];
    encoder.on("data", (c: Buffer) => chunks.push(c));
    encoder.on("end", () => resolve(Buffer.concat(chunks).toString("latin1")));
    encoder.on("error", reject);
    encoder.end(Buffer.from(text, "latin1"));
  });
}

const LITERAL_PIECES = [
  "word",
  "x",
  "Lorem",
  " ",
  "\t",
  ".",
  ",",
  "!",
  "?",
  "\r\n",
  "-",
  "1234567890",
  "<>@;:",
];
const ESCAPING_PIECES = ["=", "\n", "\r", " \r\n", "\u00e9", "\u0007", "\t\r\n"];

function generated(random: () => number, escaping: boolean): string {
  const target = Math.floor(random() * 400);
  let text = "";
  while (text.length < target) {
    const r = random();
    if (r < 0.05) text += "y".repeat(70 + Math.floor(random() * 12));
    else if (escaping && r < 0.1) text += ESCAPING_PIECES[Math.floor(random() * ESCAPING_PIECES.length)]!;
    else text += LITERAL_PIECES[Math.floor(random() * LITERAL_PIECES.length)]!;
  }
  return text;
}

describe("literal quoted-printable", () => {
  it("writes what nodemailer's Encoder writes for text without escapes, and declines the rest", async () => {
    const random = seededRandom(2026_12_03);
    let written = 0;
    let declined = 0;
    for (let n = 0; n < 4000; n++) {
      const text = generated(random, n % 2 === 1);
      const fast = literalQuotedPrintable(text);
      const expected = await viaEncoder(text);
      if (fast === undefined) {
        declined++;
        continue;
      }
      written++;
      assert.equal(fast, expected, `text ${n}: ${JSON.stringify(text)}`);
    }
    assert.ok(written >= 1500, `only ${written} texts took the fast path`);
    assert.ok(declined >= 500, `only ${declined} texts were declined`);
  });

  it("cuts at exact boundaries as the Encoder does", async () => {
    const cases: string[] = [];
    for (let n = 70; n <= 82; n++) {
      cases.push(
        "a".repeat(n),
        `${"a".repeat(n)}\r\nb`,
        `${"a ".repeat(n >> 1)}end`,
        `${"a".repeat(n - 1)}.tail`,
      );
      cases.push(`${"b".repeat(n)}\r\n${"c".repeat(n)}`, `${"word ".repeat(n)}`.trimEnd());
    }
    for (const text of cases) {
      const fast = literalQuotedPrintable(text);
      assert.notEqual(fast, undefined, JSON.stringify(text));
      assert.equal(fast, await viaEncoder(text), JSON.stringify(text));
    }
  });

  it("declines text with '=', lone CR or LF, non-ASCII, or whitespace before a line break", () => {
    for (const text of ["a=b", "a\nb", "a\rb", "caf\u00e9", "a \r\nb", "a\t\r\nb", "ends with space "])
      assert.equal(literalQuotedPrintable(text), undefined, JSON.stringify(text));
  });
});

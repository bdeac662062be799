/**
 * src/services/mime-simple.ts writes the API's plain-text sends without MailComposer: over
 * generated messages, some of the simple shape and many just outside it (non-ASCII, long or
 * spaced header values, names that need quoting, IDN and upper-case domains, control
 * characters, lone CR/LF, long lines, digits-only text), whatever it writes must be
 * byte-identical to MailComposer's output for the same input, and it must decline the rest.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import MailComposer from "nodemailer/lib/mail-composer/index.js";
import { buildMimeSync } from "../src/services/mime-build.js";
import { composeSimpleText, type SimpleMailbox, type SimpleMessage } from "../src/services/mime-simple.js";
import { seededRandom } from "./support/seeded-random.js";

const rng = seededRandom;

const pick = <T>(random: () => number, list: readonly T[]): T => list[Math.floor(random() * list.length)]!;

const TEXT_PIECES = [
  "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n",
  "short line\r\n",
  "hello",
  "\r\n",
  "\n",
  "\r",
  "\t",
  " ",
  "=",
  "=3D",
  ".",
  "x".repeat(120),
  "1234567890".repeat(9),
  "trailing  \r\n",
  "Grüße",
  "\u0007",
];
const VALUES = [
  "bench 1",
  "Your daily update",
  "a",
  "x".repeat(70),
  " leading",
  "trailing ",
  "two  spaces",
  "Grüße",
  "=?utf-8?q?x?=",
  'quote " inside',
  "tab\there",
];
const NAMES = ["", "", "Bench App", "Bob", "O'Brien", "Dr. Who", "Ünïcode", "a  b", "Smith, John"];
const ADDRESSES = [
  "bench@bench.example",
  "sink@example.com",
  "first.last+tag@sub.example.org",
  "UPPER@example.com",
  "user@EXAMPLE.com",
  "user@bücher.example",
];
const HEADER_NAMES = ["X-Custom", "x-lower", "X-ID", "x-mailer-md5", "List-Unsubscribe", "X-A"];

function mailbox(random: () => number, simple = false): SimpleMailbox {
  return simple
    ? { name: pick(random, NAMES.slice(0, 4)), address: pick(random, ADDRESSES.slice(0, 3)) }
    : { name: pick(random, NAMES), address: pick(random, ADDRESSES) };
}

function message(random: () => number, i: number): SimpleMessage {
  const simple = random() < 0.5; // half from the safe pieces only
  const textPieces = simple ? TEXT_PIECES.slice(0, 2) : TEXT_PIECES;
  let text = "";
  const n = Math.floor(random() * 8);
  for (let k = 0; k < n; k++) text += pick(random, textPieces);
  const headers: Record<string, { prepared: true; value: string } | string> = {};
  if (random() < 0.5) headers["X-Petrel-Metadata"] = { prepared: true, value: `{"n":${i}}` };
  if (random() < 0.3) headers["X-Petrel-Category"] = { prepared: true, value: "welcome, onboarding" };
  const extra = Math.floor(random() * 3);
  for (let k = 0; k < extra; k++)
    headers[pick(random, HEADER_NAMES)] = simple ? pick(random, VALUES.slice(0, 4)) : pick(random, VALUES);
  const list = (max: number) =>
    Array.from({ length: Math.floor(random() * max) }, () => mailbox(random, simple));
  return {
    from: simple ? { name: pick(random, NAMES.slice(0, 4)), address: ADDRESSES[0]! } : mailbox(random),
    to: [mailbox(random, simple), ...list(3)],
    cc: list(2),
    ...(random() < 0.3 ? { replyTo: mailbox(random, simple) } : {}),
    ...(random() < 0.9 ? { subject: simple ? pick(random, VALUES.slice(0, 4)) : pick(random, VALUES) } : {}),
    text,
    headers,
    messageId: `<${i.toString(16).padStart(8, "0")}-4b1d-4f07-bd6f-af35e571a8e4@bench.example>`,
    date: new Date(1_796_000_000_000 + i * 1000),
  };
}

function composed(m: SimpleMessage): Buffer {
  const composer = new MailComposer({
    from: m.from,
    to: [...m.to],
    ...(m.cc.length > 0 ? { cc: [...m.cc] } : {}),
    ...(m.replyTo ? { replyTo: m.replyTo } : {}),
    ...(m.subject === undefined ? {} : { subject: m.subject }),
    text: m.text,
    attachments: [],
    headers: m.headers,
    messageId: m.messageId,
    date: m.date,
    baseBoundary: "0123456789abcdef",
  });
  const out = buildMimeSync(composer.compile());
  assert.ok(out, "MailComposer's tree is buildable synchronously");
  return out;
}

describe("composeSimpleText", () => {
  it("writes MailComposer's bytes for the simple shape and declines everything else", () => {
    const random = rng(20261202);
    let written = 0;
    let declined = 0;
    for (let i = 0; i < 2500; i++) {
      const m = message(random, i);
      const simple = composeSimpleText(m);
      if (simple === undefined) {
        declined++;
        continue;
      }
      written++;
      const expected = composed(m);
      assert.equal(
        simple.toString("latin1"),
        expected.toString("latin1"),
        `message ${i}: ${JSON.stringify(m).slice(0, 400)}`,
      );
    }
    // Both branches ran: the comparison covers many written messages and the declines happen.
    assert.ok(written >= 300, `written ${written} of 2,500`);
    assert.ok(declined >= 1000, `declined ${declined} of 2,500`);
  });

  it("takes the bench's and the README's plain-text send", () => {
    const m: SimpleMessage = {
      from: { name: "", address: "noreply@your-app.com" },
      to: [{ name: "", address: "user@example.com" }],
      cc: [],
      subject: "Your Daily Update",
      text: `${"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n".repeat(24)}`,
      headers: { "X-Petrel-Metadata": { prepared: true, value: '{"user":42}' } },
      messageId: "<6f1c2a9e-0d4b-4f07-bd6f-af35e571a8e4@your-app.com>",
      date: new Date(1_796_000_000_000),
    };
    const simple = composeSimpleText(m);
    assert.ok(simple);
    assert.equal(simple.toString("latin1"), composed(m).toString("latin1"));
  });
});

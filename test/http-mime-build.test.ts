/**
 * src/services/mime-build.ts writes MailComposer's MimeNode tree without nodemailer's stream
 * pipeline: over a few hundred generated messages (plain, HTML, both, attachments binary and
 * text with lone CR/LF, inline cid images, non-ASCII names and subjects, long lines, trailing
 * whitespace, empty bodies) the output must be byte-identical to MimeNode.build().
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import MailComposer from "nodemailer/lib/mail-composer/index.js";
import { buildMimeSync } from "../src/services/mime-build.js";
import { seededRandom } from "./support/seeded-random.js";

const rng = seededRandom;

const PIECES = [
  "hello",
  "Grüße",
  "日本語のテキスト",
  "emoji 🎉",
  " ",
  "\t",
  "\r\n",
  "\n",
  "=",
  ".",
  "x".repeat(120),
  "long line ".repeat(30),
  "ümlaut ".repeat(20),
  "trailing  \r\n",
];

function text(random: () => number, max: number): string {
  let out = "";
  const n = Math.floor(random() * max);
  for (let i = 0; i < n; i++) out += PIECES[Math.floor(random() * PIECES.length)];
  return out;
}

function bytes(random: () => number, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
}

function options(seed: number): ConstructorParameters<typeof MailComposer>[0] {
  const random = rng(seed);
  const pick = () => random() < 0.5;
  const attachments: Array<Record<string, unknown>> = [];
  const count = random() < 0.6 ? 0 : Math.floor(random() * 3) + 1;
  for (let i = 0; i < count; i++) {
    const kind = Math.floor(random() * 3);
    attachments.push({
      filename: `${text(random, 2) || "file"}-${i}.${kind === 0 ? "bin" : kind === 1 ? "txt" : "png"}`,
      content:
        kind === 1
          ? Buffer.from(`${text(random, 20)}\rlone CR\nlone LF`)
          : bytes(random, Math.floor(random() * 3000)),
      ...(kind === 2 ? { contentType: "image/png", cid: `img${i}@test` } : {}),
    });
  }
  const name = text(random, 3).replace(/[\r\n]/g, "");
  return {
    from: { name, address: "sender@example.com" },
    to: [{ name: text(random, 2).replace(/[\r\n]/g, ""), address: "to@example.org" }],
    ...(pick() ? { cc: [{ name: "", address: "cc@example.net" }] } : {}),
    ...(pick() ? { subject: text(random, 6).replace(/[\r\n]/g, " ") } : {}),
    ...(pick() || count === 0 ? { text: text(random, 40) } : {}),
    ...(pick() ? { html: `<p>${text(random, 40)}</p>` } : {}),
    headers: {
      "X-Custom": text(random, 3).replace(/[\r\n]/g, "") || "v",
      "X-Petrel-Metadata": { prepared: true, value: '{"a":1}' },
    },
    attachments,
  } as ConstructorParameters<typeof MailComposer>[0];
}

describe("MIME composition without the stream pipeline", () => {
  it("is byte-identical to MimeNode.build() over 400 generated messages", async () => {
    let multipart = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const root = new MailComposer(options(seed)).compile();
      const streamed = await new Promise<Buffer>((resolve, reject) =>
        root.build((err, built) => (err ? reject(err) : resolve(built))),
      );
      const direct = buildMimeSync(root);
      assert.ok(direct, `seed ${seed}: refused a tree of strings and buffers`);
      if (!direct.equals(streamed))
        assert.equal(direct.toString("latin1"), streamed.toString("latin1"), `seed ${seed}`);
      if (/^Content-Type: multipart\//im.test(streamed.toString("latin1"))) multipart++;
    }
    assert.ok(multipart > 100, `generated too few multipart messages (${multipart})`);
  });

  it("refuses a tree with a stream content (the caller uses build())", async () => {
    const { Readable } = await import("node:stream");
    const root = new MailComposer({
      from: "a@example.com",
      to: "b@example.com",
      text: Readable.from(["streamed"]),
    }).compile();
    assert.equal(buildMimeSync(root), undefined);
  });
});

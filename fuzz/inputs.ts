/**
 * Input generators for the fuzz targets (fast-check arbitraries): text built from the tokens
 * each parser cares about (so generated inputs reach deep into it) mixed with arbitrary bytes,
 * and mutations of the shared real DSN/ARF samples. Everything is drawn from fast-check's seeded
 * generator, so a run is reproduced by its seed.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";

/** Any byte as a latin1 character (one char per byte, as Petrel reads raw content). */
const byteChar = fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b));
const text = fc.string({ maxLength: 12 });
const unicode = fc.string({ unit: "grapheme", maxLength: 6 });

/** A string of up to `maxTokens` pieces, each a token, a short string, a byte or a grapheme. */
export function tokenString(tokens: readonly string[], maxTokens = 30): fc.Arbitrary<string> {
  return fc
    .array(
      fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom(...tokens) },
        { weight: 2, arbitrary: text },
        { weight: 1, arbitrary: byteChar },
        { weight: 1, arbitrary: unicode },
      ),
      { maxLength: maxTokens },
    )
    .map((parts) => parts.join(""));
}

export const COMMAND_TOKENS = [
  "MAIL FROM:",
  "RCPT TO:",
  "FROM:",
  "TO:",
  "<",
  ">",
  "<>",
  "@",
  ".",
  " ",
  '"',
  "\\",
  ",",
  ":",
  "@a.example,@b.example:",
  "user",
  "example.com",
  "[127.0.0.1]",
  "[IPv6:::1]",
  "SIZE=",
  "1000",
  "99999999999999999",
  "BODY=8BITMIME",
  "BODY=BINARYMIME",
  "SMTPUTF8",
  "AUTH=<>",
  "=",
  "-",
  "xn--",
  "é",
  "\t",
];

export const HEADER_TOKENS = [
  "\r\n",
  "\r\n ",
  "\r\n\t",
  "\r\n\r\n",
  "\n",
  "\r",
  ": ",
  ":",
  "From: ",
  "Sender: ",
  "To: ",
  "X-Petrel-Category: ",
  "X-Petrel-Metadata: ",
  "Message-ID: ",
  "Date: ",
  "Subject: ",
  '{"a":1}',
  "{",
  "}",
  "[",
  '"',
  ",",
  ";",
  "<",
  ">",
  "(",
  ")",
  "\\",
  "@",
  "a@example.com",
  '"Doe, J" <j@example.com>',
  "group: a@x, b@y;",
  "=?utf-8?b?w6k=?=",
  " ",
  "\0",
];

export const MIME_TOKENS = [
  "\r\n",
  "\r\n\r\n",
  "\n",
  "--b\r\n",
  "--b--\r\n",
  "--c\r\n",
  "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
  "Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n",
  "Content-Type: multipart/mixed; boundary=c\r\n",
  "Content-Type: message/delivery-status\r\n",
  "Content-Type: message/global-delivery-status\r\n",
  "Content-Type: message/feedback-report\r\n",
  "Content-Type: message/rfc822\r\n",
  "Content-Type: text/rfc822-headers\r\n",
  "Content-Type: text/plain; charset=utf-8\r\n",
  "Content-Type: text/html\r\n",
  "Content-Transfer-Encoding: base64\r\n",
  "Content-Transfer-Encoding: quoted-printable\r\n",
  "Reporting-MTA: dns; mx.example.com\r\n",
  "Final-Recipient: rfc822; a@example.com\r\n",
  "Original-Recipient: rfc822;",
  "Action: failed\r\n",
  "Action: delayed\r\n",
  "Status: 5.1.1\r\n",
  "Status: 4.",
  "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n",
  "Remote-MTA: dns;",
  "Feedback-Type: abuse\r\n",
  "User-Agent: x\r\n",
  "Original-Mail-From: <a@b>\r\n",
  "Source-IP: 192.0.2.1\r\n",
  "Message-ID: <m@x>\r\n",
  "Subject: Undeliverable: \r\n",
  "Subject: Automatic reply\r\n",
  "Auto-Submitted: auto-replied\r\n",
  "said: 550 5.1.1 ",
  "<<< 552 5.2.2 ",
  "<p>",
  "</p>",
  "<",
  "&nbsp;",
  "=\r\n",
  "=C3=A9",
  "w6k=",
  " ",
  "\t",
  ":",
];

/** The shared real reports (../shared/samples), or none when the checkout has no shared/ beside it. */
export function sampleReports(): string[] {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../../shared/samples");
  const out: string[] = [];
  for (const dir of ["dsn", "arf"]) {
    try {
      for (const name of readdirSync(join(root, dir))) {
        if (name.endsWith(".eml")) out.push(readFileSync(join(root, dir, name), "latin1"));
      }
    } catch {
      // no samples here: the generated reports still run
    }
  }
  return out;
}

/** A sample with a few edits: bytes replaced, inserted or removed, or a slice duplicated or cut. */
export function mutatedSample(samples: readonly string[]): fc.Arbitrary<string> {
  if (samples.length === 0) return tokenString(MIME_TOKENS, 60);
  const edit = fc.record({
    kind: fc.constantFrom("replace", "insert", "delete", "duplicate", "truncate"),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    length: fc.integer({ min: 0, max: 200 }),
    with: tokenString(MIME_TOKENS, 4),
  });
  return fc
    .tuple(fc.constantFrom(...samples), fc.array(edit, { minLength: 1, maxLength: 6 }))
    .map(([s, edits]) => {
      let out = s;
      for (const e of edits) {
        const at = Math.floor(e.at * out.length);
        if (e.kind === "replace") out = out.slice(0, at) + e.with + out.slice(at + e.with.length);
        else if (e.kind === "insert") out = out.slice(0, at) + e.with + out.slice(at);
        else if (e.kind === "delete") out = out.slice(0, at) + out.slice(at + e.length);
        else if (e.kind === "duplicate") out = out.slice(0, at + e.length) + out.slice(at);
        else out = out.slice(0, at);
      }
      return out;
    });
}

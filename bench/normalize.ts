/**
 * Cost of content normalisation (src/message/normalize.ts) on the accept path, in-process:
 * the pass-through check every message pays, re-encoding a minified HTML line, and a scaling
 * check (time per MB at 1 MB and 8 MB: linear means the two are close). Numbers are printed
 * beside their goals; nothing here fails on timing. Run: npm run build && node dist/bench/normalize.js
 */
import { normalizeMessage } from "../src/message/normalize.js";

const OPTIONS = { maxLineLength: 998, encodeHeaders: true };

function plain(bytes: number): Buffer {
  const head =
    "From: App <noreply@app.example>\r\nTo: user@example.com\r\nSubject: Your daily update\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
  return Buffer.from(head + line.repeat(Math.ceil(bytes / line.length)));
}

function minified(bytes: number): Buffer {
  const html = `<html>${"<td>x</td>".repeat(Math.ceil(bytes / 10))}</html>`;
  return Buffer.from(`From: a@app.example\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n${html}\r\n`);
}

function microsPerCall(message: Buffer, iterations: number): number {
  for (let i = 0; i < Math.min(iterations, 1000); i++) normalizeMessage(message, OPTIONS);
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) normalizeMessage(message, OPTIONS);
  return Number(process.hrtime.bigint() - start) / iterations / 1000;
}

const pass2k = microsPerCall(plain(2048), 100_000);
console.log(
  `pass-through, 2 KB message:      ${pass2k.toFixed(2)} µs  (goal < 5 µs: ≤ 2% of the 0.23-0.57 ms accept CPU per message)`,
);
const pass100k = microsPerCall(plain(100_000), 10_000);
console.log(`pass-through, 100 KB message:    ${pass100k.toFixed(2)} µs`);
const html5k = microsPerCall(minified(5000), 5000);
console.log(`re-encode a 5,000-octet HTML line: ${html5k.toFixed(0)} µs  (goal < 1 ms)`);
const mb1 = microsPerCall(minified(1 << 20), 5) / 1;
const mb8 = microsPerCall(minified(8 << 20), 2) / 8;
console.log(
  `re-encode, per MB at 1 MB / 8 MB: ${(mb1 / 1000).toFixed(1)} / ${(mb8 / 1000).toFixed(1)} ms  (goal: linear, the two within 2×)`,
);

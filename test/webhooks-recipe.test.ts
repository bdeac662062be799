/**
 * The signature verification recipes in the README (Node and Python, after the
 * `<!-- verify-node -->` and `<!-- verify-python -->` markers) are run as written against a body
 * Petrel signed: they accept it, and refuse a changed body, another secret and an old timestamp.
 * So the documentation cannot drift from what Petrel sends.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { generateWebhookSecret, signatureHeader } from "../src/events/signature.js";
import { tempDataDir } from "./support/petrel-process.js";

const README = resolve(dirname(fileURLToPath(import.meta.url)), "../../README.md");

function recipe(marker: string, language: string): string {
  const text = readFileSync(README, "utf8");
  const at = text.indexOf(`<!-- ${marker} -->`);
  assert.ok(at >= 0, `README has ${marker}`);
  const match = new RegExp("```" + language + "\\n([^]*?)```").exec(text.slice(at));
  assert.ok(match, `a ${language} block after ${marker}`);
  return match[1]!;
}

function run(command: string, args: string[], input: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(command, args, { timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolvePromise(stdout),
    );
    child.stdin!.end(input);
  });
}

const secret = generateWebhookSecret();
const body = JSON.stringify([
  { id: "01M8F9A3Q8X1K2T6Y4N0P5R7VW", type: "delivered", metadata: { name: "Zoë" } },
]);
const now = Math.floor(Date.now() / 1000);
const cases = [
  { header: signatureHeader(secret, now, body), body, secret, expected: true },
  { header: signatureHeader(secret, now, body), body: `${body} `, secret, expected: false },
  { header: signatureHeader(secret, now, body), body, secret: generateWebhookSecret(), expected: false },
  { header: signatureHeader(secret, now - 3600, body), body, secret, expected: false },
];
const input = JSON.stringify(cases);
const expected = cases.map((c) => c.expected);

describe("README signature recipes", () => {
  it("the Node recipe verifies what Petrel signs", async () => {
    const file = join(tempDataDir("petrel-recipe-"), "verify.mjs");
    writeFileSync(
      file,
      `${recipe("verify-node", "js")}
let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((c) => verifyPetrel(c.secret, c.header, c.body));
process.stdout.write(JSON.stringify(results));
`,
    );
    assert.deepEqual(JSON.parse(await run(process.execPath, [file], input)), expected);
  });

  it("the Python recipe verifies what Petrel signs", async () => {
    const file = join(tempDataDir("petrel-recipe-"), "verify.py");
    writeFileSync(
      file,
      `${recipe("verify-python", "python")}
import json, sys
cases = json.load(sys.stdin)
print(json.dumps([verify_petrel(c["secret"], c["header"], c["body"].encode()) for c in cases]))
`,
    );
    assert.deepEqual(JSON.parse(await run("/usr/bin/python3", [file], input)), expected);
  });
});

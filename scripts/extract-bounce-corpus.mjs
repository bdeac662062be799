#!/usr/bin/env node
/**
 * Reproduces the first step of test/corpus/bounce-corpus.tsv: reads Sisimai's public bounce set
 * (sisimai/set-of-emails, maildir/bsd/*.eml) with Petrel's own report parser, and pairs each
 * recipient's remote reply with the reason Sisimai's test suite expects for it
 * (sisimai/go-sisimai fact/*_test.go tuples: label, recipient index, status, reply code, reason).
 * Output: candidate TSV rows on stdout (source, sisimai reason, status, reply) for a person to
 * label with Petrel's classes; the committed corpus is the reviewed result, not this output.
 *
 * Usage: npm run build && node scripts/extract-bounce-corpus.mjs SET_OF_EMAILS_GIT GO_SISIMAI_GIT
 * (both bare git directories, e.g. from `git clone --bare`). Reads only; nothing is run from them.
 */
import { execFileSync } from "node:child_process";
import { parseReport } from "../dist/src/bounces/report.js";

const [setOfEmails, goSisimai] = process.argv.slice(2);
if (!setOfEmails || !goSisimai) {
  process.stderr.write("usage: extract-bounce-corpus.mjs SET_OF_EMAILS_GIT GO_SISIMAI_GIT\n");
  process.exit(2);
}
const git = (dir, ...args) =>
  execFileSync("git", ["-C", dir, ...args], { maxBuffer: 64 << 20, encoding: "buffer" });

// Expected tuples: {"01",   1, "5.7.0",   "550", "blocked",         false, ""}
const TUPLE = /\{"(\d+)",\s*(\d+),\s*"([^"]*)",\s*"([^"]*)",\s*"([a-z]+)",\s*(true|false)/g;
const files = git(goSisimai, "ls-tree", "--name-only", "HEAD", "fact/").toString().split("\n");
const expected = [];
for (const file of files.filter((f) => f.endsWith("_test.go"))) {
  const src = git(goSisimai, "show", `HEAD:${file}`).toString();
  // Only the public list (the secret one names files that are not published).
  const pub = src.split("secretlist")[0];
  const engine = /EngineTest\(t,\s*"([^"]+)"/.exec(src);
  if (!engine) continue;
  const kind = /func TestRhost/.test(src) ? "rhost-" : /func TestLhost/.test(src) ? "lhost-" : "";
  for (const m of pub.matchAll(TUPLE)) {
    expected.push({
      file: `maildir/bsd/${kind}${engine[1].toLowerCase()}-${m[1]}.eml`,
      index: Number(m[2]),
      status: m[3],
      replyCode: m[4],
      reason: m[5],
    });
  }
}

/**
 * Some bounces in the set break a long Diagnostic-Code over lines without the leading space that
 * RFC 5322 folding needs; the parser stops at the first line. Read on in the raw text until a
 * blank line, the next field or a MIME boundary.
 */
function continued(raw, first) {
  const lines = raw.split(/\r?\n/);
  const head = first.slice(0, 30);
  const at = lines.findIndex((l) => /^Diagnostic-Code:/i.test(l) && l.includes(head));
  if (at < 0) return first;
  const parts = [lines[at].replace(/^Diagnostic-Code:\s*(?:[a-z-]+;)?\s*/i, "")];
  for (let i = at + 1; i < lines.length && i < at + 12; i++) {
    const l = lines[i];
    if (l.trim() === "" || /^[A-Za-z][A-Za-z0-9-]*:\s/.test(l) || l.startsWith("--")) break;
    parts.push(l.trim());
  }
  const joined = parts.join(" ");
  return joined.length >= first.length ? joined : first;
}

const clean = (s) => s.replace(/\s+/g, " ").trim();
for (const e of expected) {
  let raw;
  try {
    raw = git(setOfEmails, "show", `HEAD:${e.file}`);
  } catch {
    process.stderr.write(`missing ${e.file}\n`);
    continue;
  }
  const report = await parseReport(raw);
  let reply = "";
  if (report.kind === "dsn") {
    // Sisimai numbers recipients in its own order; prefer the entry whose status is the expected one.
    const byStatus = report.recipients.filter((x) => x.status === e.status);
    const r =
      byStatus.length === 1 ? byStatus[0] : (report.recipients[e.index - 1] ?? report.recipients[0]);
    reply = r?.diagnostic ?? "";
    if (reply) reply = continued(raw.toString("utf8"), reply);
    if (!reply) reply = `[status ${r?.status ?? "-"}] ${report.humanText.slice(0, 300)}`;
  } else if (report.kind === "text") {
    reply = report.diagnostic || `[text] ${report.humanText.slice(0, 300)}`;
  } else {
    reply = `[${report.kind}]`;
  }
  process.stdout.write(
    [`set-of-emails/${e.file}#${e.index}`, e.reason, e.status, e.replyCode, clean(reply)].join("\t") + "\n",
  );
}

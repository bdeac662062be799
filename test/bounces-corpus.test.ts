/**
 * The classifier measured on replies it was not written from: test/corpus/bounce-corpus.tsv (479
 * real remote replies from Sisimai's public bounces, ActiveCampaign's smtp-field-manual and
 * providers' pages; its header gives the sources and how their labels map to Petrel's classes).
 * 30% of the rows, chosen by a hash of the reply text before any rule was written, are held out:
 * their misses are not printed unless BOUNCE_CORPUS_SHOW_HELDOUT=1, so rules are written from the
 * other 70% only. Prints precision and recall per class, the confusion between classes and the
 * hard/soft accuracy; fails below the goals, and on any temporary (4xx) reply called hard.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { basicCodeOf, classifyReply } from "../src/bounces/reply.js";
import { BOUNCE_CLASSES, type BounceClass } from "../src/bounces/rules.js";

const CORPUS = resolve(dirname(fileURLToPath(import.meta.url)), "../../test/corpus/bounce-corpus.tsv");

interface Row {
  readonly expected: BounceClass;
  readonly hard: boolean;
  readonly provider: string;
  readonly source: string;
  readonly reply: string;
  readonly heldOut: boolean;
}

/** The split: fixed by the reply text alone, so adding rows never moves an old one. */
function isHeldOut(reply: string): boolean {
  return createHash("sha256").update(reply).digest().readUInt32BE(0) % 100 < 30;
}

function readCorpus(): Row[] {
  return readFileSync(CORPUS, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("#"))
    .map((line) => {
      const [expected, hard, provider, source, , reply] = line.split("\t") as [
        BounceClass,
        string,
        string,
        string,
        string,
        string,
      ];
      return { expected, hard: hard === "hard", provider, source, reply, heldOut: isHeldOut(reply) };
    });
}

interface Outcome {
  readonly row: Row;
  readonly got: BounceClass;
  readonly hard: boolean;
  readonly rule: string;
}

interface Figures {
  readonly n: number;
  readonly classAccuracy: number;
  readonly hardSoftAccuracy: number;
  readonly temporaryCalledHard: number;
}

function figures(outcomes: readonly Outcome[]): Figures {
  const n = outcomes.length;
  const right = outcomes.filter((o) => o.got === o.row.expected).length;
  const hardSoft = outcomes.filter((o) => o.hard === o.row.hard).length;
  const temporaryCalledHard = outcomes.filter((o) => o.hard && isTemporary(o.row.reply)).length;
  return { n, classAccuracy: right / n, hardSoftAccuracy: hardSoft / n, temporaryCalledHard };
}

/** A 4xx reply (RFC 5321 §4.2.1), or one whose enhanced code says temporary (RFC 3463 §3.1). */
function isTemporary(reply: string): boolean {
  const basic = basicCodeOf(reply);
  if (basic !== null) return basic < 500;
  return /^\s*4\.\d{1,3}\.\d{1,3}\b/.test(reply);
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

function table(outcomes: readonly Outcome[]): string {
  const lines = [
    `${"class".padEnd(18)} ${"rows".padStart(5)} ${"precision".padStart(10)} ${"recall".padStart(8)}`,
  ];
  for (const cls of BOUNCE_CLASSES) {
    const actual = outcomes.filter((o) => o.row.expected === cls).length;
    const predicted = outcomes.filter((o) => o.got === cls).length;
    const right = outcomes.filter((o) => o.got === cls && o.row.expected === cls).length;
    if (actual === 0 && predicted === 0) continue;
    const precision = predicted ? pct(right / predicted) : "-";
    const recall = actual ? pct(right / actual) : "-";
    lines.push(
      `${cls.padEnd(18)} ${String(actual).padStart(5)} ${precision.padStart(10)} ${recall.padStart(8)}`,
    );
  }
  return lines.join("\n");
}

function confusion(outcomes: readonly Outcome[]): string {
  const pairs = new Map<string, number>();
  for (const o of outcomes) {
    if (o.got === o.row.expected) continue;
    const key = `${o.row.expected} → ${o.got}`;
    pairs.set(key, (pairs.get(key) ?? 0) + 1);
  }
  const sorted = [...pairs].sort((a, b) => b[1] - a[1]);
  return sorted.length ? sorted.map(([k, v]) => `  ${String(v).padStart(3)}  ${k}`).join("\n") : "  (none)";
}

describe("bounce corpus (test/corpus/bounce-corpus.tsv)", () => {
  const rows = readCorpus();
  const outcomes: Outcome[] = rows.map((row) => {
    const c = classifyReply(row.reply);
    return { row, got: c.class, hard: c.hard, rule: c.rule };
  });
  const heldOut = outcomes.filter((o) => o.row.heldOut);
  const training = outcomes.filter((o) => !o.row.heldOut);
  const whole = figures(outcomes);
  const held = figures(heldOut);

  it("has at least 400 de-duplicated real replies, each with a source", () => {
    assert.ok(rows.length >= 400, `${rows.length} rows`);
    assert.equal(new Set(rows.map((r) => r.reply)).size, rows.length, "a reply appears twice");
    for (const r of rows) {
      assert.ok(BOUNCE_CLASSES.includes(r.expected), `class ${r.expected}`);
      assert.ok(r.source.length > 0, `source of ${r.reply}`);
      assert.equal(r.hard, r.expected === "invalid-recipient" || r.expected === "invalid-domain");
    }
    // The split holds about 30% out, and it is not empty on either side.
    assert.ok(heldOut.length > rows.length * 0.2 && heldOut.length < rows.length * 0.4);
  });

  it("prints the figures", () => {
    const show = process.env.BOUNCE_CORPUS_SHOW_HELDOUT === "1";
    const misses = (show ? outcomes : training).filter((o) => o.got !== o.row.expected);
    const report = [
      "",
      `bounce corpus: ${whole.n} replies, ${held.n} held out (${heldOut.length ? pct(held.n / whole.n) : "-"})`,
      `class accuracy     whole ${pct(whole.classAccuracy)}   held-out ${pct(held.classAccuracy)}   (goal ≥ 95%)`,
      `hard/soft accuracy whole ${pct(whole.hardSoftAccuracy)}   held-out ${pct(held.hardSoftAccuracy)}   (goal ≥ 99%)`,
      `temporary replies called hard: ${whole.temporaryCalledHard} (goal 0)`,
      "",
      "whole corpus, per class:",
      table(outcomes),
      "",
      "held-out part, per class:",
      table(heldOut),
      "",
      "confusion (expected → got), whole corpus:",
      confusion(outcomes),
      "",
      `misses${show ? "" : " in the training part (held-out misses hidden)"}:`,
      ...misses.map((o) => `  ${o.row.expected} → ${o.got} [${o.rule}] ${o.row.reply.slice(0, 160)}`),
      "",
    ];
    process.stdout.write(`${report.join("\n")}\n`);
  });

  it("never calls a temporary (4xx) reply hard", () => {
    const wrong = outcomes.filter((o) => o.hard && isTemporary(o.row.reply));
    assert.deepEqual(
      wrong.map((o) => o.row.reply),
      [],
    );
  });

  // Issue 10's goals: class accuracy on both parts; hard/soft (what drives suppression) on the
  // whole corpus. The held-out hard/soft figure is printed beside it (with 152 held-out rows, one
  // miss is 0.7 points).
  it("meets the goals: ≥ 95% class accuracy on the held-out part and the whole, ≥ 99% hard/soft", () => {
    assert.ok(held.classAccuracy >= 0.95, `held-out class accuracy ${pct(held.classAccuracy)}`);
    assert.ok(whole.classAccuracy >= 0.95, `whole class accuracy ${pct(whole.classAccuracy)}`);
    assert.ok(whole.hardSoftAccuracy >= 0.99, `whole hard/soft accuracy ${pct(whole.hardSoftAccuracy)}`);
  });
});

// The corpus as fuzzing seeds: mutated and spliced replies, and long runs of the fragments the
// patterns look for (a pattern that backtracks would take seconds on these, and hit the timeout).
describe("fuzzing the classifier with the corpus", () => {
  const replies = readCorpus().map((r) => r.reply);
  let seed = 0x10;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };

  it("never throws on 5,000 mutated replies, and always names a class and a rule", {
    timeout: 20_000,
  }, () => {
    for (let i = 0; i < 5_000; i++) {
      const a = replies[random(replies.length)]!;
      const b = replies[random(replies.length)]!;
      let s = a.slice(0, random(a.length + 1)) + b.slice(random(b.length + 1));
      const chars = [...s];
      for (let k = random(6); k > 0; k--)
        chars[random(chars.length + 1)] = String.fromCharCode(random(0x3000));
      s = chars.join("");
      const c = classifyReply(s);
      assert.ok(BOUNCE_CLASSES.includes(c.class) && c.rule.length > 0, s);
    }
  });

  it("stays fast on long runs of what the patterns look for", { timeout: 20_000 }, () => {
    const fragments = ["550 ", "5.1.1 ", "SPF ", "DKIM ", "user ", "#5.", "a.", "AUP#", " - ", "[", "rate"];
    for (const f of fragments) {
      const long = f.repeat(Math.ceil(200_000 / f.length));
      assert.ok(BOUNCE_CLASSES.includes(classifyReply(long).class));
      assert.ok(BOUNCE_CLASSES.includes(classifyReply(`550 5.1.1 ${long} over quota`).class));
    }
  });
});

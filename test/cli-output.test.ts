/**
 * CLI table output (src/cli/output.ts): columns aligned by display width, and a table of 200,000
 * rows (a big `petrel queue list`) printed without the RangeError that Math.max(...spread) threw
 * past about 100k rows.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import stringWidth from "string-width";
import { tableLines } from "../src/cli/output.js";

describe("CLI tables", () => {
  it("aligns 200,000 rows by display width", () => {
    const rows: (string | number)[][] = [];
    for (let i = 0; i < 200_000; i++)
      rows.push([`id-${i}`, i % 7 === 0 ? "用户@例子.测试" : "a@b.example", i]);
    // The widest cell of the middle column is the U-label address (display width 14, length 9).
    const lines = tableLines(["ID", "TO", "N"], rows);
    assert.equal(lines.length, 200_001);
    assert.equal(lines[0], `${"ID".padEnd(9)}  ${"TO".padEnd(14)}  N`);
    const third = (line: string) => stringWidth(line.slice(0, line.lastIndexOf("  ") + 2));
    for (const i of [1, 2, 7, 8, 123_457, 200_000]) assert.equal(third(lines[i]!), 9 + 2 + 14 + 2, lines[i]);
    assert.equal(lines[200_000], `${"id-199999".padEnd(9)}  ${"a@b.example".padEnd(14)}  199999`);
  });

  it("replaces control characters in cells", () => {
    assert.deepEqual(tableLines(["A"], [["x\u001b[2Jy"]]), ["A", "x\ufffd[2Jy"]);
  });
});

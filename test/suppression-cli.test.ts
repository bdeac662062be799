/**
 * `petrel suppressions` as an operator uses it: --help on every subcommand, add/list/remove per
 * account, export to CSV and import back (quoting, a file without a header, standard input), and
 * an import with one bad line adding nothing.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseCsv } from "../src/cli/commands/suppressions.js";
import { PETREL_BIN, petrelCli, petrelOk, removeDataDir, tempDataDir } from "./support/petrel-process.js";

function withStdin(
  dataDir: string,
  args: readonly string[],
  input: string,
): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [PETREL_BIN, ...args, "--data-dir", dataDir],
      { timeout: 30_000 },
      (err, stdout) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout }),
    );
    child.stdin!.end(input);
  });
}

describe("petrel suppressions", () => {
  it("has --help on every subcommand", async () => {
    const dataDir = tempDataDir();
    for (const sub of ["list", "add", "remove", "export", "import"]) {
      const result = await petrelCli(dataDir, ["suppressions", sub, "--help"]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`Usage: petrel suppressions ${sub}`));
      assert.match(result.stdout, /--account/);
      assert.match(result.stdout, /--data-dir/);
    }
    removeDataDir(dataDir);
  });

  it("adds, lists, removes, exports and imports per account", async () => {
    const dataDir = tempDataDir();
    try {
      assert.match(
        await petrelOk(dataDir, [
          "suppressions",
          "add",
          "Ann@Example.com",
          "bob@example.com",
          "--note",
          "asked, twice",
        ]),
        /^Suppressed 2 addresses for account default\n$/,
      );
      assert.match(
        await petrelOk(dataDir, ["suppressions", "add", "ann@example.com"]),
        /\(1 already suppressed\)/,
      );
      const bad = await petrelCli(dataDir, ["suppressions", "add", "not-an-address"]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /not a valid address/);
      const list = await petrelOk(dataDir, ["suppressions", "list"]);
      assert.match(list, /^ADDRESS\s+REASON\s+SINCE\s+EVENT\s+DETAIL\n/);
      assert.match(list, /ann@example\.com\s+manual\s+\S+Z\s+-\s+asked, twice/);

      const csv = await petrelOk(dataDir, ["suppressions", "export"]);
      const rows = parseCsv(csv);
      assert.deepEqual(rows[0], ["address", "reason", "created_at", "event_id", "message_id", "detail"]);
      assert.deepEqual(
        rows.slice(1).map((r) => [r[0], r[1], r[5]]),
        [
          ["ann@example.com", "manual", "asked, twice"],
          ["bob@example.com", "manual", "asked, twice"],
        ],
      );
      assert.match(csv, /"asked, twice"\r\n/, "a field with a comma is quoted");

      // Into another account: the same file, then a plain list without a header from stdin.
      await petrelOk(dataDir, ["accounts", "create", "apps"]);
      const file = join(dataDir, "list.csv");
      writeFileSync(file, csv);
      assert.match(
        await petrelOk(dataDir, ["suppressions", "import", file, "--account", "apps"]),
        /^Imported 2 of 2 addresses into account apps\n$/,
      );
      const piped = await withStdin(
        dataDir,
        ["suppressions", "import", "-", "--account", "apps"],
        "carol@example.com\nbob@example.com\n",
      );
      assert.equal(piped.code, 0);
      assert.match(piped.stdout, /Imported 1 of 2 addresses into account apps \(1 already suppressed\)/);
      const apps = JSON.parse(
        await petrelOk(dataDir, ["suppressions", "list", "--account", "apps", "--json"]),
      );
      assert.deepEqual(
        apps.map((s: { address: string; reason: string }) => `${s.address} ${s.reason}`),
        ["ann@example.com manual", "bob@example.com manual", "carol@example.com import"],
      );

      // One bad line: nothing is imported.
      writeFileSync(join(dataDir, "bad.csv"), "address\ndave@example.com\nnot an address\n");
      const rejected = await petrelCli(dataDir, ["suppressions", "import", join(dataDir, "bad.csv")]);
      assert.equal(rejected.code, 1);
      assert.match(rejected.stderr, /line 3: not a valid address/);
      assert.doesNotMatch(await petrelOk(dataDir, ["suppressions", "list"]), /dave@/);

      assert.match(
        await petrelOk(dataDir, ["suppressions", "remove", "ANN@example.com"]),
        /Removed ann@example\.com/,
      );
      const again = await petrelCli(dataDir, ["suppressions", "remove", "ann@example.com"]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /is not suppressed for account default/);
      const unknown = await petrelCli(dataDir, ["suppressions", "list", "--account", "nope"]);
      assert.match(unknown.stderr, /no account named nope/);
    } finally {
      removeDataDir(dataDir);
    }
  });
});

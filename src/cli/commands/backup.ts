/**
 * `petrel backup FILE`: a consistent copy of the SQLite store, while serve runs.
 * Thin over src/services/backup.ts; restoring is in docs/operations.md.
 */
import type { Command } from "commander";
import { backupDatabase } from "../../services/backup.js";
import { type CommonOptions, configFrom, withCommonOptions } from "../context.js";
import { printJson } from "../output.js";

export function registerBackup(program: Command): void {
  withCommonOptions(
    program
      .command("backup")
      .description("copy the SQLite database to FILE (consistent, online: serve may keep running)")
      .argument("<file>", "where to write the copy (must not exist yet)")
      .option("--json", "print JSON"),
  ).action(async (file: string, options: CommonOptions & { json?: boolean }) => {
    const result = await backupDatabase(configFrom(options), file);
    if (options.json) return printJson(result);
    process.stdout.write(`Copied ${result.source} to ${result.file} (${result.bytes} bytes)\n`);
  });
}

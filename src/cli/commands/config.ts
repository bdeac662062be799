/**
 * `petrel config`: prints the effective configuration (defaults, file, environment and flags
 * merged) with secrets masked, so an operator sees exactly what `serve` would use.
 */
import type { Command } from "commander";
import { stringify } from "yaml";
import { maskSecrets } from "../../config/load.js";
import { type CommonOptions, configFrom, withCommonOptions } from "../context.js";
import { printJson } from "../output.js";

export function registerConfig(program: Command): void {
  withCommonOptions(
    program
      .command("config")
      .description("print the effective configuration (secrets masked)")
      .option("--json", "print JSON instead of YAML"),
  ).action((options: CommonOptions & { json?: boolean }) => {
    const masked = maskSecrets(configFrom(options));
    if (options.json) printJson(masked);
    else process.stdout.write(stringify(masked));
  });
}

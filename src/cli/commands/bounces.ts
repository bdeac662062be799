/**
 * `petrel bounces classify "<reply>"`: how Petrel would classify a remote reply (or a DSN's
 * diagnostic), with the operator's `bounces.rules` from the configuration applied first, and which
 * rule decided — so an operator can check a reply and write an override. Thin: the work is
 * src/bounces/reply.ts; this only prints.
 */
import type { Command } from "commander";
import { createClassifier } from "../../bounces/classify.js";
import { basicCodeOf, classifyReply } from "../../bounces/reply.js";
import { type CommonOptions, configFrom, withCommonOptions } from "../context.js";
import { printJson } from "../output.js";

export function registerBounces(program: Command): void {
  const bounces = program.command("bounces").description("bounce classification");
  withCommonOptions(
    bounces
      .command("classify")
      .description("classify a remote SMTP reply: class, hard or soft, and the rule that decided")
      .argument("<reply...>", 'the reply as received, e.g. "550 5.1.1 <a@b.example>: user unknown"')
      .option("--json", "print JSON only")
      .addHelpText(
        "after",
        '\nTo override a decision, add to the configuration:\n  bounces:\n    rules:\n      - { match: "5.7.1", class: policy-or-spam }   # an enhanced or basic code, or a regex',
      ),
  ).action((words: string[], options: CommonOptions & { json?: boolean }) => {
    const reply = words.join(" ");
    const config = configFrom(options);
    const result = classifyReply(reply, createClassifier(config.bounces.rules));
    if (options.json) {
      printJson({ reply, code: basicCodeOf(reply), ...result });
      return;
    }
    process.stdout.write(
      `class: ${result.class}\nhard:  ${result.hard ? "yes (the recipient is suppressed)" : "no (soft)"}\nrule:  ${result.rule}\n`,
    );
  });
}

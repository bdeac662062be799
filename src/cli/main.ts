#!/usr/bin/env node
/**
 * The `petrel` command. Each subcommand lives in its own module under commands/ and is thin over
 * the same services `serve` uses.
 */
import { Command, CommanderError } from "commander";
import { PetrelError } from "../errors.js";
import { PETREL_VERSION } from "../version.js";
import { registerAccounts } from "./commands/accounts.js";
import { registerBackup } from "./commands/backup.js";
import { registerBounces } from "./commands/bounces.js";
import { registerConfig } from "./commands/config.js";
import { registerEvents } from "./commands/events.js";
import { registerIdentities } from "./commands/identities.js";
import { registerKeys } from "./commands/keys.js";
import { registerNodes } from "./commands/nodes.js";
import { registerQueue } from "./commands/queue.js";
import { registerSend } from "./commands/send.js";
import { registerServe } from "./commands/serve.js";
import { registerStats } from "./commands/stats.js";
import { registerSuppressions } from "./commands/suppressions.js";
import { registerWebhooks } from "./commands/webhooks.js";

export function buildProgram(): Command {
  const program = new Command()
    .name("petrel")
    .description(
      "Petrel: a self-hosted SMTP smart host. Apps submit with an API key; Petrel spools, signs and delivers.",
    )
    .version(PETREL_VERSION)
    .showHelpAfterError()
    .exitOverride();
  registerServe(program);
  registerKeys(program);
  registerAccounts(program);
  registerIdentities(program);
  registerQueue(program);
  registerSend(program);
  registerEvents(program);
  registerStats(program);
  registerWebhooks(program);
  registerSuppressions(program);
  registerConfig(program);
  registerBounces(program);
  registerBackup(program);
  registerNodes(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // The one error type of the services (and of configuration): its message, exit status 1.
    if (err instanceof PetrelError) {
      process.stderr.write(`petrel: ${err.message}\n`);
      return 1;
    }
    const e = err as { response?: string; code?: string; message?: string };
    // SMTP errors from `petrel send` carry the server's reply.
    if (e.response) {
      process.stderr.write(`petrel: ${e.response}\n`);
      return 1;
    }
    if (e.code === "ECONNREFUSED" || e.code === "ESOCKET") {
      process.stderr.write(`petrel: ${e.message} (is petrel serve running?)\n`);
      return 1;
    }
    process.stderr.write(`petrel: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

// `petrel queue list | head`: a reader that closed the pipe ends the command quietly, as for any
// Unix tool, instead of an unhandled EPIPE stack. (`serve` is excluded: its log sink handles a
// failing stdout itself and must keep running.)
if (process.argv[2] !== "serve") {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
}

process.exitCode = await main(process.argv);

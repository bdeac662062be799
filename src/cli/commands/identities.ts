/**
 * `petrel domains` and `petrel senders`: what an account may send as. A domain covers every
 * address at it, with DKIM keys and DNS verification (domains.ts); a single sender covers one
 * address, for a first test without DNS changes (its mail is not DKIM-aligned).
 * Thin over src/services/senders.ts.
 */
import type { Command } from "commander";
import { displayAddress } from "../../address.js";
import { addSender, listSenders, removeSender } from "../../services/senders.js";
import { validAddress } from "../../services/validate.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";
import { registerDomains } from "./domains.js";

type AccountOptions = CommonOptions & { account: string };
type ListOptions = CommonOptions & { account?: string; json?: boolean };

export function registerIdentities(program: Command): void {
  // Sender domains, with DKIM keys and DNS verification, live in domains.ts (issue 4).
  registerDomains(program);

  const senders = program.command("senders").description("single sender addresses an account may send as");
  withCommonOptions(
    senders
      .command("add")
      .description("add a single sender address to an account")
      .argument("<address>", "address, e.g. noreply@your-app.com")
      .option("-a, --account <account>", "account", "default"),
  ).action(async (value: string, options: AccountOptions) => {
    const address = validAddress(value); // before opening the store
    await withServices(options, async (ctx) => {
      const sender = await addSender(ctx, { address, account: options.account });
      process.stdout.write(`Added sender ${displayAddress(address)} to account ${sender.accountName}\n`);
    });
  });
  withCommonOptions(
    senders
      .command("list")
      .description("list single senders")
      .option("-a, --account <account>", "only this account")
      .option("--json", "print JSON"),
  ).action(async (options: ListOptions) => {
    await withServices(options, async (ctx) => {
      const list = await listSenders(ctx, options.account);
      if (options.json) return printJson(list);
      printTable(
        ["ADDRESS", "ACCOUNT", "ADDED"],
        list.map((s) => [displayAddress(s.address), s.accountName, isoTime(s.createdAt)]),
      );
    });
  });
  withCommonOptions(
    senders.command("remove").description("remove a single sender").argument("<address>", "address"),
  ).action(async (value: string, options: CommonOptions) => {
    await withServices(options, async (ctx) => {
      await removeSender(ctx, value);
      process.stdout.write(`Removed sender ${value}\n`);
    });
  });
}

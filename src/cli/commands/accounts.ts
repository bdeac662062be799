/**
 * `petrel accounts`: an account owns keys, sender domains and single senders; one account's key
 * can never send as another account's domain. A `default` account exists from the first start.
 * Thin over src/services/accounts.ts.
 */
import type { Command } from "commander";
import { createAccount, listAccounts } from "../../services/accounts.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";

export function registerAccounts(program: Command): void {
  const accounts = program.command("accounts").description("create and list accounts");
  withCommonOptions(
    accounts.command("create").description("create an account").argument("<name>", "account name"),
  ).action(async (name: string, options: CommonOptions) => {
    await withServices(options, async (ctx) => {
      const account = await createAccount(ctx, name);
      process.stdout.write(`Created account ${account.name}\n`);
    });
  });
  withCommonOptions(
    accounts.command("list").description("list accounts").option("--json", "print JSON"),
  ).action(async (options: CommonOptions & { json?: boolean }) => {
    await withServices(options, async (ctx) => {
      const list = await listAccounts(ctx);
      if (options.json) return printJson(list);
      printTable(
        ["NAME", "CREATED"],
        list.map((a) => [a.name, isoTime(a.createdAt)]),
      );
    });
  });
}

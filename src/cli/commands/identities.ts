/**
 * `petrel domains` and `petrel senders`: what an account may send as. A domain covers every
 * address at it, with DKIM keys and DNS verification (domains.ts); a single sender covers one
 * address, for a first test without DNS changes (its mail is not DKIM-aligned).
 */
import type { Command } from "commander";
import { UsageError } from "../../errors.js";
import { type CommonOptions, requireAccount, withCommonOptions, withStore } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";
import { registerDomains } from "./domains.js";

type AccountOptions = CommonOptions & { account: string };
type ListOptions = CommonOptions & { account?: string; json?: boolean };

// RFC 1035 §2.3.1 labels (with RFC 1123 leading digits), at least two labels.
const DOMAIN =
  /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function validDomain(value: string): string {
  const domain = value.trim().toLowerCase().replace(/\.$/, "");
  if (!DOMAIN.test(domain)) throw new UsageError(`not a valid domain name: ${value}`);
  return domain;
}

export function validAddress(value: string): string {
  const address = value.trim();
  const at = address.lastIndexOf("@");
  const local = address.slice(0, at);
  if (at <= 0 || local.length > 64 || /[\s<>()[\]\\,;:"]/.test(local))
    throw new UsageError(`not a valid address: ${value}`);
  return `${local}@${validDomain(address.slice(at + 1))}`;
}

export function registerIdentities(program: Command): void {
  // Sender domains, with DKIM keys and DNS verification, live in domains.ts (issue 4).
  registerDomains(program, { validDomain });

  const senders = program.command("senders").description("single sender addresses an account may send as");
  withCommonOptions(
    senders
      .command("add")
      .description("add a single sender address to an account")
      .argument("<address>", "address, e.g. noreply@your-app.com")
      .option("-a, --account <account>", "account", "default"),
  ).action(async (value: string, options: AccountOptions) => {
    const address = validAddress(value);
    await withStore(options, async (store) => {
      const account = await requireAccount(store, options.account);
      await store.addSender(account.id, address);
      process.stdout.write(`Added sender ${address} to account ${account.name}\n`);
    });
  });
  withCommonOptions(
    senders
      .command("list")
      .description("list single senders")
      .option("-a, --account <account>", "only this account")
      .option("--json", "print JSON"),
  ).action(async (options: ListOptions) => {
    await withStore(options, async (store) => {
      const accountId = options.account ? (await requireAccount(store, options.account)).id : undefined;
      const list = await store.listSenders(accountId);
      if (options.json) return printJson(list);
      printTable(
        ["ADDRESS", "ACCOUNT", "ADDED"],
        list.map((s) => [s.address, s.accountName, isoTime(s.createdAt)]),
      );
    });
  });
  withCommonOptions(
    senders.command("remove").description("remove a single sender").argument("<address>", "address"),
  ).action(async (value: string, options: CommonOptions) => {
    await withStore(options, async (store) => {
      if (!(await store.removeSender(value.trim()))) throw new UsageError(`no sender ${value}`);
      process.stdout.write(`Removed sender ${value}\n`);
    });
  });
}

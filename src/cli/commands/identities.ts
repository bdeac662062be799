/**
 * `petrel domains` and `petrel senders`: what an account may send as. A domain covers every
 * address at it (DNS checks and DKIM come with domain verification); a single sender covers one
 * address, for a first test without DNS changes.
 */
import type { Command } from "commander";
import { UsageError } from "../../errors.js";
import { type CommonOptions, requireAccount, withCommonOptions, withStore } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";

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
  const domains = program.command("domains").description("sender domains an account may send from");
  withCommonOptions(
    domains
      .command("add")
      .description("add a sender domain to an account")
      .argument("<domain>", "domain, e.g. your-app.com")
      .option("-a, --account <account>", "account", "default"),
  ).action(async (value: string, options: AccountOptions) => {
    const domain = validDomain(value);
    await withStore(options, async (store) => {
      const account = await requireAccount(store, options.account);
      await store.addDomain(account.id, domain);
      process.stdout.write(`Added domain ${domain} to account ${account.name}\n`);
    });
  });
  withCommonOptions(
    domains
      .command("list")
      .description("list sender domains")
      .option("-a, --account <account>", "only this account")
      .option("--json", "print JSON"),
  ).action(async (options: ListOptions) => {
    await withStore(options, async (store) => {
      const accountId = options.account ? (await requireAccount(store, options.account)).id : undefined;
      const list = await store.listDomains(accountId);
      if (options.json) return printJson(list);
      printTable(
        ["DOMAIN", "ACCOUNT", "STATUS", "ADDED", "LAST CHECKED"],
        list.map((d) => [d.domain, d.accountName, d.status, isoTime(d.createdAt), isoTime(d.lastCheckedAt)]),
      );
    });
  });
  withCommonOptions(
    domains.command("remove").description("remove a sender domain").argument("<domain>", "domain"),
  ).action(async (value: string, options: CommonOptions) => {
    await withStore(options, async (store) => {
      if (!(await store.removeDomain(validDomain(value)))) throw new UsageError(`no domain ${value}`);
      process.stdout.write(`Removed domain ${value}\n`);
    });
  });

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

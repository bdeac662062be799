/**
 * `petrel keys`: API keys for SMTP AUTH (username `apikey`, password = the key).
 * A key is printed once at creation and stored only as a hash.
 */
import type { Command } from "commander";
import { generateApiKey } from "../../auth/api-keys.js";
import { UsageError } from "../../errors.js";
import { type CommonOptions, requireAccount, withCommonOptions, withStore } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";

export function registerKeys(program: Command): void {
  const keys = program.command("keys").description("create, list and revoke API keys");

  withCommonOptions(
    keys
      .command("create")
      .description("create an API key and print it (once)")
      .requiredOption("-n, --name <name>", "a name for the key, e.g. the application using it")
      .option("-a, --account <account>", "account the key sends for", "default")
      .option("--json", "print JSON"),
  ).action(async (options: CommonOptions & { name: string; account: string; json?: boolean }) => {
    await withStore(options, async (store) => {
      const account = await requireAccount(store, options.account);
      const generated = generateApiKey();
      const key = await store.insertApiKey({
        accountId: account.id,
        name: options.name,
        hash: generated.hash,
        prefix: generated.prefix,
      });
      if (options.json) {
        printJson({ name: key.name, account: key.accountName, key: generated.key, prefix: key.prefix });
        return;
      }
      process.stdout.write(`${generated.key}\n`);
      process.stderr.write(
        `Created key "${key.name}" for account ${key.accountName}. It is shown only this once.\n` +
          "Use it as the SMTP password with username apikey.\n",
      );
    });
  });

  withCommonOptions(
    keys
      .command("list")
      .description("list API keys (never the keys themselves)")
      .option("--json", "print JSON"),
  ).action(async (options: CommonOptions & { json?: boolean }) => {
    await withStore(options, async (store) => {
      const list = await store.listApiKeys();
      if (options.json) return printJson(list);
      printTable(
        ["NAME", "ACCOUNT", "PREFIX", "CREATED", "LAST USED", "STATUS"],
        list.map((k) => [
          k.name,
          k.accountName,
          `${k.prefix}…`,
          isoTime(k.createdAt),
          isoTime(k.lastUsedAt),
          k.revokedAt ? `revoked ${isoTime(k.revokedAt)}` : "active",
        ]),
      );
    });
  });

  withCommonOptions(
    keys
      .command("revoke")
      .description("revoke a key; it stops working at the next AUTH")
      .argument("<name>", "key name"),
  ).action(async (name: string, options: CommonOptions) => {
    await withStore(options, async (store) => {
      if (!(await store.revokeApiKey(name))) throw new UsageError(`no active key named ${name}`);
      process.stdout.write(`Revoked key ${name}\n`);
    });
  });
}

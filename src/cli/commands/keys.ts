/**
 * `petrel keys`: API keys for SMTP AUTH (username `apikey`, password = the key).
 * A key is printed once at creation and stored only as a hash. Thin over src/services/keys.ts.
 */
import type { Command } from "commander";
import { SCOPES } from "../../auth/scopes.js";
import { createKey, listKeys, revokeKey } from "../../services/keys.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";

export function registerKeys(program: Command): void {
  const keys = program.command("keys").description("create, list and revoke API keys");

  withCommonOptions(
    keys
      .command("create")
      .description("create an API key and print it (once)")
      .requiredOption("-n, --name <name>", "a name for the key, e.g. the application using it")
      .option("-a, --account <account>", "account the key sends for", "default")
      .option("--scopes <scopes>", `what the key may do, comma-separated (${SCOPES.join(", ")})`, "mail.send")
      .option("--json", "print JSON"),
  ).action(
    async (options: CommonOptions & { name: string; account: string; scopes: string; json?: boolean }) => {
      await withServices(options, async (ctx) => {
        const { key, secret } = await createKey(ctx, {
          name: options.name,
          account: options.account,
          scopes: options.scopes,
        });
        if (options.json) {
          printJson({
            name: key.name,
            account: key.accountName,
            key: secret,
            prefix: key.prefix,
            scopes: key.scopes,
          });
          return;
        }
        process.stdout.write(`${secret}\n`);
        process.stderr.write(
          `Created key "${key.name}" for account ${key.accountName}. It is shown only this once.\n` +
            "Use it as the SMTP password with username apikey.\n",
        );
      });
    },
  );

  withCommonOptions(
    keys
      .command("list")
      .description("list API keys (never the keys themselves)")
      .option("--json", "print JSON"),
  ).action(async (options: CommonOptions & { json?: boolean }) => {
    await withServices(options, async (ctx) => {
      const list = await listKeys(ctx);
      if (options.json) return printJson(list);
      printTable(
        ["NAME", "ACCOUNT", "PREFIX", "CREATED", "LAST USED", "STATUS", "SCOPES"],
        list.map((k) => [
          k.name,
          k.accountName,
          `${k.prefix}…`,
          isoTime(k.createdAt),
          isoTime(k.lastUsedAt),
          k.revokedAt ? `revoked ${isoTime(k.revokedAt)}` : "active",
          k.scopes.join(","),
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
    await withServices(options, async (ctx) => {
      await revokeKey(ctx, name);
      process.stdout.write(`Revoked key ${name}\n`);
    });
  });
}

/**
 * `petrel suppressions list|add|remove|export|import`: an account's suppression list (issue 5).
 * Hard bounces and spam complaints add addresses by themselves (with the event that caused it);
 * operators add and remove by hand, and move lists between systems as CSV.
 *
 * CSV (RFC 4180): a header line `address,reason,created_at,event_id,message_id,detail`, one
 * address per line, fields with a comma, quote or line break quoted. `import` needs only the
 * address column (a file without a header is a list of addresses); missing reasons become
 * `import`. An import is all or nothing: one invalid line and nothing is added.
 * Security: the file is operator input; every address is validated before anything is written.
 * Thin over src/services/suppressions.ts.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import {
  addSuppressions,
  exportSuppressions,
  importSuppressions,
  listSuppressions,
  removeSuppression,
} from "../../services/suppressions.js";
import { validAddress } from "../../services/validate.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";

// The CSV codec lives with the service; re-exported for the tests that use it directly.
export { fromCsv, parseCsv, toCsv } from "../../services/suppressions-csv.js";

type AccountOptions = CommonOptions & { account: string };
type ListOptions = AccountOptions & { json?: boolean; reason?: string };
type AddOptions = AccountOptions & { note?: string };

export function registerSuppressions(program: Command): void {
  const cmd = program
    .command("suppressions")
    .description("addresses an account never sends to (hard bounces, complaints, your own list)");
  const account = (c: Command) => c.option("-a, --account <account>", "account", "default");

  withCommonOptions(
    account(
      cmd
        .command("list")
        .description("list an account's suppressed addresses")
        .option(
          "--reason <reason>",
          "only this reason (invalid-recipient, invalid-domain, spamreport, manual, import)",
        )
        .option("--json", "print JSON"),
    ),
  ).action(async (options: ListOptions) => {
    await withServices(options, async (ctx) => {
      const list = await listSuppressions(ctx, {
        account: options.account,
        ...(options.reason ? { reason: options.reason } : {}),
      });
      if (options.json) return printJson(list);
      printTable(
        ["ADDRESS", "REASON", "SINCE", "EVENT", "DETAIL"],
        list.map((s) => [
          s.address,
          s.reason,
          isoTime(s.createdAt),
          s.eventId ?? "-",
          (s.detail ?? "").slice(0, 60),
        ]),
      );
    });
  });

  withCommonOptions(
    account(
      cmd
        .command("add")
        .description("suppress addresses (mail to them is dropped, or refused with suppression.mode: reject)")
        .argument("<address...>", "one or more addresses")
        .option("--note <text>", "why (kept as the detail)"),
    ),
  ).action(async (values: string[], options: AddOptions) => {
    values.forEach(validAddress); // before opening the store
    await withServices(options, async (ctx) => {
      const { added, total, account } = await addSuppressions(ctx, {
        account: options.account,
        addresses: values,
        note: options.note ?? null,
      });
      process.stdout.write(
        `Suppressed ${added} address${added === 1 ? "" : "es"} for account ${account}` +
          (added < total ? ` (${total - added} already suppressed)` : "") +
          "\n",
      );
    });
  });

  withCommonOptions(
    account(
      cmd.command("remove").description("remove an address from the suppression list").argument("<address>"),
    ),
  ).action(async (value: string, options: AccountOptions) => {
    await withServices(options, async (ctx) => {
      const removed = await removeSuppression(ctx, options.account, value);
      process.stdout.write(`Removed ${removed} from the suppression list of ${options.account}\n`);
    });
  });

  withCommonOptions(
    account(cmd.command("export").description("print the account's suppression list as CSV")),
  ).action(async (options: AccountOptions) => {
    await withServices(options, async (ctx) => {
      process.stdout.write(await exportSuppressions(ctx, options.account));
    });
  });

  withCommonOptions(
    account(
      cmd
        .command("import")
        .description("add the addresses of a CSV file (as written by export; - reads standard input)")
        .argument("<file>", "CSV file, or - for standard input"),
    ),
  ).action(async (file: string, options: AccountOptions) => {
    const text = readFileSync(file === "-" ? 0 : file, "utf8");
    await withServices(options, async (ctx) => {
      const { added, total, account } = await importSuppressions(ctx, options.account, text);
      process.stdout.write(
        `Imported ${added} of ${total} address${total === 1 ? "" : "es"} into account ${account}` +
          (added < total ? ` (${total - added} already suppressed)` : "") +
          "\n",
      );
    });
  });
}

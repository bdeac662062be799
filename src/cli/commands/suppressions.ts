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
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { UsageError } from "../../errors.js";
import type { NewSuppression, Suppression } from "../../store/types.js";
import { type CommonOptions, requireAccount, withCommonOptions, withStore } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";
import { validAddress } from "./identities.js";

type AccountOptions = CommonOptions & { account: string };
type ListOptions = AccountOptions & { json?: boolean; reason?: string };
type AddOptions = AccountOptions & { note?: string };

const COLUMNS = ["address", "reason", "created_at", "event_id", "message_id", "detail"] as const;

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
    await withStore(options, async (store) => {
      const acct = await requireAccount(store, options.account);
      const list = await store.listSuppressions({ accountId: acct.id, reason: options.reason });
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
    const addresses = values.map(validAddress);
    await withStore(options, async (store) => {
      const acct = await requireAccount(store, options.account);
      const added = await store.addSuppressions(
        addresses.map((address) => ({
          accountId: acct.id,
          address,
          reason: "manual",
          detail: options.note ?? null,
        })),
      );
      process.stdout.write(
        `Suppressed ${added} address${added === 1 ? "" : "es"} for account ${acct.name}` +
          (added < addresses.length ? ` (${addresses.length - added} already suppressed)` : "") +
          "\n",
      );
    });
  });

  withCommonOptions(
    account(
      cmd.command("remove").description("remove an address from the suppression list").argument("<address>"),
    ),
  ).action(async (value: string, options: AccountOptions) => {
    await withStore(options, async (store) => {
      const acct = await requireAccount(store, options.account);
      if (!(await store.removeSuppression(acct.id, value))) {
        throw new UsageError(`${value} is not suppressed for account ${acct.name}`);
      }
      process.stdout.write(
        `Removed ${value.trim().toLowerCase()} from the suppression list of ${acct.name}\n`,
      );
    });
  });

  withCommonOptions(
    account(cmd.command("export").description("print the account's suppression list as CSV")),
  ).action(async (options: AccountOptions) => {
    await withStore(options, async (store) => {
      const acct = await requireAccount(store, options.account);
      process.stdout.write(toCsv(await store.listSuppressions({ accountId: acct.id })));
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
    await withStore(options, async (store) => {
      const acct = await requireAccount(store, options.account);
      const entries = fromCsv(text, acct.id);
      const added = await store.addSuppressions(entries);
      process.stdout.write(
        `Imported ${added} of ${entries.length} address${entries.length === 1 ? "" : "es"} into account ${acct.name}` +
          (added < entries.length ? ` (${entries.length - added} already suppressed)` : "") +
          "\n",
      );
    });
  });
}

export function toCsv(list: readonly Suppression[]): string {
  const rows = list.map((s) => [
    s.address,
    s.reason,
    new Date(s.createdAt).toISOString(),
    s.eventId ?? "",
    s.messageId ?? "",
    s.detail ?? "",
  ]);
  return [COLUMNS as readonly string[], ...rows].map((r) => `${r.map(csvField).join(",")}\r\n`).join("");
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Parses RFC 4180 CSV into rows of fields (quoted fields may hold commas, quotes and line breaks). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0]!.trim() === ""));
}

/** CSV text → suppressions for `accountId`; throws a UsageError naming the first bad line. */
export function fromCsv(text: string, accountId: number): NewSuppression[] {
  const rows = parseCsv(text.replace(/^\uFEFF/, ""));
  const header = rows[0]?.map((h) => h.trim().toLowerCase()) ?? [];
  const hasHeader = header.includes("address");
  const col = (name: (typeof COLUMNS)[number]) =>
    hasHeader ? header.indexOf(name) : name === "address" ? 0 : -1;
  const entries: NewSuppression[] = [];
  const start = hasHeader ? 1 : 0;
  for (let i = start; i < rows.length; i++) {
    const row = rows[i]!;
    const cell = (name: (typeof COLUMNS)[number]) => {
      const c = col(name);
      return c >= 0 ? (row[c] ?? "").trim() : "";
    };
    let address: string;
    try {
      address = validAddress(cell("address"));
    } catch {
      throw new UsageError(
        `line ${i + 1}: not a valid address: ${JSON.stringify(cell("address").slice(0, 80))}`,
      );
    }
    const created = cell("created_at") ? Date.parse(cell("created_at")) : Number.NaN;
    entries.push({
      accountId,
      address,
      reason: cell("reason") || "import",
      detail: cell("detail") || null,
      ...(Number.isNaN(created) ? {} : { createdAt: created }),
    });
  }
  return entries;
}

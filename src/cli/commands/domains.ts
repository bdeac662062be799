/**
 * `petrel domains`: sender domains with DKIM (issue 4). `add` creates the domain with its keys
 * and prints the DNS records to publish; `verify` looks them up through the configured resolver
 * (dns.servers) and records the result; `rotate-dkim`, `retire-selector` and `export-key` manage
 * keys. Thin over src/services/domains.ts (and src/domains/service.ts, which `serve` uses for
 * its periodic re-check).
 *
 * Security: private keys are printed by `export-key` only, on purpose; every other output (and
 * --json) carries selectors and public keys. `retire-selector` needs a confirmation.
 */
import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import { describeDomain, displayDomain } from "../../address.js";
import type { PetrelConfig } from "../../config/schema.js";
import { type DnsRecordSpec, formatJson, formatTable, formatZone } from "../../dkim/records.js";
import { createResolver } from "../../dns/resolver.js";
import type { DnsResolver } from "../../dns/types.js";
import { PetrelError } from "../../errors.js";
import {
  addDomain,
  domainRecords,
  exportKey,
  listDomains,
  removeDomain,
  retireSelector,
  rotateDkim,
  showDomain,
  verifyDomain,
} from "../../services/domains.js";
import { validDomain } from "../../services/validate.js";
import type { RecordCheck } from "../../store/types.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";

type Format = "table" | "zone" | "json";
type FormatOptions = CommonOptions & { format: string };

function resolverFor(config: PetrelConfig): DnsResolver {
  return createResolver({
    servers: config.dns.servers,
    timeoutMs: config.dns.timeoutMs,
    tries: config.dns.tries,
    cache: false,
  });
}

function format(value: string): Format {
  if (value === "table" || value === "zone" || value === "json") return value;
  throw new PetrelError("invalid-input", `--format must be table, zone or json, not ${value}`);
}

function renderRecords(records: readonly DnsRecordSpec[], how: Format): string {
  if (how === "zone") return formatZone(records);
  if (how === "json") return formatJson(records);
  return formatTable(records);
}

/** Human text goes to stderr when stdout carries zone or JSON data, so the data can be piped. */
function say(how: Format, text: string): void {
  (how === "table" ? process.stdout : process.stderr).write(`${text}\n`);
}

export function registerDomains(program: Command): void {
  const domains = program
    .command("domains")
    .description("sender domains an account may send from, with DKIM keys and DNS verification");

  withCommonOptions(
    domains
      .command("add")
      .description("add a sender domain with a DKIM key, and print the DNS records to publish")
      .argument("<domain>", "domain, e.g. your-app.com")
      .option("-a, --account <account>", "account", "default")
      .option("-f, --format <format>", "table, zone (BIND lines) or json", "table"),
  ).action(async (value: string, options: FormatOptions & { account: string }) => {
    const domain = validDomain(value);
    const how = format(options.format);
    await withServices(options, async (ctx) => {
      const added = await addDomain(ctx, { domain, account: options.account });
      const { records } = added;
      // An IDN is shown as U-labels with its A-label, the form its DNS records are named in.
      say(
        how,
        `Added domain ${describeDomain(domain)} to account ${added.domain.accountName}. Publish these DNS records:\n`,
      );
      process.stdout.write(renderRecords(records, how));
      say(how, `\nThen run: petrel domains verify ${displayDomain(domain)}`);
    });
  });

  withCommonOptions(
    domains
      .command("records")
      .description("print the DNS records to publish for a domain (again)")
      .argument("<domain>", "domain")
      .option("-f, --format <format>", "table, zone (BIND lines) or json", "table"),
  ).action(async (value: string, options: FormatOptions) => {
    const how = format(options.format);
    await withServices(options, async (ctx) => {
      process.stdout.write(renderRecords(await domainRecords(ctx, value), how));
    });
  });

  withCommonOptions(
    domains
      .command("list")
      .description("list sender domains with their status, selectors and last check")
      .option("-a, --account <account>", "only this account")
      .option("--json", "print JSON"),
  ).action(async (options: CommonOptions & { account?: string; json?: boolean }) => {
    await withServices(options, async (ctx) => {
      const withKeys = await listDomains(ctx, options.account);
      if (options.json) return printJson(withKeys);
      printTable(
        ["DOMAIN", "ACCOUNT", "STATUS", "SELECTORS", "LAST CHECKED", "ADDED"],
        withKeys.map((d) => [
          displayDomain(d.domain),
          d.accountName,
          d.status,
          keyStates(d.keys),
          isoTime(d.lastCheckedAt),
          isoTime(d.createdAt),
        ]),
      );
    });
  });

  withCommonOptions(
    domains
      .command("verify")
      .description(
        "look up the domain's DNS records and report each; verified when DKIM and return path match",
      )
      .argument("<domain>", "domain")
      .option("--json", "print JSON"),
  ).action(async (value: string, options: CommonOptions & { json?: boolean }) => {
    await withServices(options, async (ctx) => {
      const report = await verifyDomain({ ...ctx, resolver: resolverFor(ctx.config) }, value);
      const { previous, status, activated, retired } = report.change;
      if (options.json) printJson(report);
      else {
        printChecks(report.checks);
        const was = previous === status ? "" : ` (was ${previous})`;
        process.stdout.write(`\n${describeDomain(report.domain)}: ${status}${was}\n`);
        if (activated.length > 0) {
          process.stdout.write(
            `Now signing with ${activated.join(", ")}` +
              (retired.length > 0
                ? `; ${retired.join(", ")} retired: keep its record published for a few days (mail in flight), ` +
                  `then remove it with: petrel domains retire-selector ${report.domain} ${retired[0]}\n`
                : "\n"),
          );
        }
        if (report.outcome === "unknown") process.stdout.write("Some lookups failed (DNS); try again.\n");
      }
      // Exit status 1 when not verified, so scripts can wait for DNS with `until petrel domains verify`.
      if (status !== "verified") throw new PetrelError("invalid-input", `${report.domain} is ${status}`);
    });
  });

  withCommonOptions(
    domains
      .command("show")
      .description("a domain's keys, last check and events (no DNS lookups)")
      .argument("<domain>", "domain")
      .option("--json", "print JSON"),
  ).action(async (value: string, options: CommonOptions & { json?: boolean }) => {
    await withServices(options, async (ctx) => {
      const shown = await showDomain(ctx, value);
      if (options.json) return printJson(shown);
      const { keys, events, ...detail } = shown;
      process.stdout.write(
        `${detail.domain} (account ${detail.accountName}): ${detail.status}, last checked ${isoTime(detail.lastCheckedAt)}\n\n`,
      );
      printTable(
        ["SELECTOR", "KIND", "STATE", "CREATED", "ACTIVE SINCE", "RETIRED"],
        keys.map((k) => [
          k.selector,
          k.kind,
          k.state,
          isoTime(k.createdAt),
          isoTime(k.activatedAt),
          isoTime(k.retiredAt),
        ]),
      );
      if (detail.lastCheck.length > 0) {
        process.stdout.write("\nLast check:\n");
        printChecks(detail.lastCheck);
      }
      if (events.length > 0) {
        process.stdout.write("\nEvents:\n");
        printTable(
          ["AT", "STATUS", "DETAIL"],
          events.map((e) => [isoTime(e.at), `${e.fromStatus} → ${e.toStatus}`, e.detail]),
        );
      }
    });
  });

  withCommonOptions(
    domains
      .command("rotate-dkim")
      .description("create a new DKIM selector; Petrel switches to it once verify sees its record")
      .argument("<domain>", "domain")
      .option("-f, --format <format>", "table, zone (BIND lines) or json", "table"),
  ).action(async (value: string, options: FormatOptions) => {
    const how = format(options.format);
    await withServices(options, async (ctx) => {
      const result = await rotateDkim(ctx, value);
      const selectors = result.keys.map((k) => k.selector).join(", ");
      say(how, `New DKIM selector ${selectors} for ${value}. Publish:\n`);
      process.stdout.write(renderRecords(result.records, how));
      say(
        how,
        result.immediate
          ? "\nIt signs from now on (the domain had no active key)."
          : `\nPetrel keeps signing with the current key until it sees this record: run petrel domains verify ${value} once it is published.`,
      );
    });
  });

  withCommonOptions(
    domains
      .command("retire-selector")
      .description("delete a DKIM key that no longer signs (or a pending one)")
      .argument("<domain>", "domain")
      .argument("<selector>", "selector, e.g. petrel1")
      .option("-y, --yes", "do not ask for confirmation"),
  ).action(async (value: string, selector: string, options: CommonOptions & { yes?: boolean }) => {
    const domain = validDomain(value);
    if (!options.yes) await confirm(`Delete DKIM selector ${selector} of ${domain}?`);
    await withServices(options, async (ctx) => {
      const key = await retireSelector(ctx, domain, selector);
      process.stdout.write(
        `Deleted ${key.state} DKIM key ${selector} of ${domain}. Its DNS record ` +
          `${selector}._domainkey.${domain} can be removed once no mail signed with it is in flight.\n`,
      );
    });
  });

  withCommonOptions(
    domains
      .command("export-key")
      .description("print a DKIM private key (PEM), e.g. to move the domain to another system")
      .argument("<domain>", "domain")
      .option("-s, --selector <selector>", "selector (default: the active RSA key)"),
  ).action(async (value: string, options: CommonOptions & { selector?: string }) => {
    await withServices(options, async (ctx) => {
      const { selector, pem } = await exportKey(ctx, value, options.selector);
      process.stderr.write(`DKIM private key of ${selector}._domainkey.${value} (a secret):\n`);
      process.stdout.write(pem.endsWith("\n") ? pem : `${pem}\n`);
    });
  });

  withCommonOptions(
    domains
      .command("remove")
      .description("remove a sender domain and its keys")
      .argument("<domain>", "domain"),
  ).action(async (value: string, options: CommonOptions) => {
    await withServices(options, async (ctx) => {
      await removeDomain(ctx, value);
      process.stdout.write(`Removed domain ${value}\n`);
    });
  });
}

/** "petrel1, petrel2 (pending)": the live selectors at a glance (retired ones are left out). */
function keyStates(keys: ReadonlyArray<{ selector: string; state: string }>): string {
  const shown = keys
    .filter((k) => k.state !== "retired")
    .map((k) => (k.state === "active" ? k.selector : `${k.selector} (${k.state})`));
  return shown.length > 0 ? shown.join(", ") : "-";
}

function printChecks(checks: readonly RecordCheck[]): void {
  const lines: string[] = [];
  const widths = { result: 9, purpose: 15 };
  for (const c of checks) {
    const needed = c.required ? "" : " (advice)";
    lines.push(
      `${c.result.padEnd(widths.result)}  ${(c.purpose + needed).padEnd(widths.purpose + 9)}  ${c.type.padEnd(3)}  ${c.name}`,
    );
    if (c.result !== "match") {
      const indent = " ".repeat(widths.result + 2);
      lines.push(`${indent}expected: ${c.expected}`);
      for (const found of c.found) lines.push(`${indent}found:    ${found}`);
    }
    if (c.detail !== undefined) lines.push(`${" ".repeat(widths.result + 2)}${c.detail}`);
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

async function confirm(question: string): Promise<void> {
  if (!process.stdin.isTTY) throw new PetrelError("invalid-input", `${question} Add --yes to confirm.`);
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim()))
      throw new PetrelError("invalid-input", "not confirmed; nothing changed");
  } finally {
    rl.close();
  }
}

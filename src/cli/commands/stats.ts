/**
 * `petrel stats`: an account's event counts per hour or day (the numbers of GET /v1/stats, from
 * the same service): processed, delivered, deferred, bounced (hard/soft, by class), dropped (by
 * reason), expired, spamreport.
 */
import type { Command } from "commander";
import { getStats, parseInterval, STATS_INTERVALS, type StatsCounts } from "../../services/stats.js";
import { parseTime } from "../../services/validate.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { printJson, printTable } from "../output.js";

interface StatsOptions extends CommonOptions {
  interval: string;
  since?: string;
  until?: string;
  category?: string;
  domain?: string;
  account: string;
  empty?: boolean;
  json?: boolean;
}

export function registerStats(program: Command): void {
  withCommonOptions(
    program
      .command("stats")
      .description("event counts per hour or day: processed, delivered, deferred, bounced, dropped, …")
      .option("-i, --interval <interval>", `bucket size (${STATS_INTERVALS.join(", ")})`, "hour")
      .option("--since <time>", "start (RFC 3339 or unix seconds; default: a day or 30 days ago)")
      .option("--until <time>", "end, exclusive (RFC 3339 or unix seconds; default now)")
      .option("--category <category>", "only messages with this category (X-Petrel-Category)")
      .option("--domain <domain>", "only recipients at this domain")
      .option("-a, --account <account>", "the account counted", "default")
      .option("--empty", "also print buckets with no events")
      .option("--json", "print the whole answer as JSON (as GET /v1/stats does)"),
  ).action(async (options: StatsOptions) => {
    // Checked before the store is opened.
    parseInterval(options.interval);
    const since = options.since === undefined ? undefined : parseTime(options.since, "--since");
    const until = options.until === undefined ? undefined : parseTime(options.until, "--until");
    await withServices(options, async (ctx) => {
      const stats = await getStats(ctx, {
        account: options.account,
        interval: options.interval,
        ...(since === undefined ? {} : { since }),
        ...(until === undefined ? {} : { until }),
        ...(options.category ? { category: options.category } : {}),
        ...(options.domain ? { domain: options.domain } : {}),
      });
      if (options.json) {
        printJson(stats);
        return;
      }
      const rows = stats.buckets
        .filter((b) => options.empty || total(b) > 0)
        .map((b) => [b.start, ...cells(b)]);
      rows.push(["total", ...cells(stats.totals)]);
      printTable(
        ["start", "processed", "delivered", "deferred", "bounced", "hard", "dropped", "expired", "spam"],
        rows,
      );
      const classes = Object.entries(stats.totals.bounced.classes);
      if (classes.length > 0)
        process.stdout.write(`\nbounced by class: ${classes.map(([c, n]) => `${c} ${n}`).join(", ")}\n`);
      const reasons = Object.entries(stats.totals.dropped.reasons);
      if (reasons.length > 0)
        process.stdout.write(`dropped by reason: ${reasons.map(([r, n]) => `${r} ${n}`).join(", ")}\n`);
    });
  });
}

function cells(c: StatsCounts): string[] {
  return [
    c.processed,
    c.delivered,
    c.deferred,
    c.bounced.total,
    c.bounced.hard,
    c.dropped.total,
    c.expired,
    c.spamreport,
  ].map(String);
}

function total(c: StatsCounts): number {
  return (
    c.processed + c.delivered + c.deferred + c.bounced.total + c.dropped.total + c.expired + c.spamreport
  );
}

/**
 * `petrel webhooks`: endpoints that receive the account's events as signed JSON POSTs.
 * `add` prints the signing secret once; listings show only its first characters. `test` POSTs a
 * signed test event from this command at once and prints the answer; `deliveries` lists recent
 * attempts with their status codes. Changes apply to a running `serve` at its next poll.
 * Security: the secret is printed once by `add` (stdout, for scripts) and never again; it is
 * never logged. URLs must be http(s); the operator chooses them (no redirect is ever followed).
 * Thin over src/services/webhooks.ts.
 */
import type { Command } from "commander";
import {
  addWebhook,
  enableWebhook,
  listDeliveries,
  listWebhooks,
  parseTypes,
  removeWebhook,
  testWebhook,
} from "../../services/webhooks.js";
import { EVENT_TYPES } from "../../store/types.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";

type Options = CommonOptions & { account: string; json?: boolean };

const withAccount = (command: Command) =>
  withCommonOptions(
    command.option("-a, --account <account>", "the account", "default").option("--json", "print JSON"),
  );

export function registerWebhooks(program: Command): void {
  const webhooks = program.command("webhooks").description("endpoints that receive events as signed POSTs");

  withAccount(
    webhooks
      .command("add")
      .description("add an endpoint and print its signing secret (once)")
      .argument("<url>", "https://… that accepts POSTs of JSON arrays of events")
      .option(
        "-e, --events <types>",
        `event types to send, comma-separated (${EVENT_TYPES.join(", ")}), or all`,
      ),
  ).action(async (url: string, options: Options & { events?: string }) => {
    parseTypes(options.events); // before opening the store
    await withServices(options, async (ctx) => {
      const { webhook, eventTypes, secret } = await addWebhook(ctx, {
        account: options.account,
        url,
        ...(options.events === undefined ? {} : { events: options.events }),
      });
      if (options.json)
        return printJson({ url: webhook.url, account: webhook.accountName, eventTypes, secret });
      process.stdout.write(`${secret}\n`);
      process.stderr.write(
        `Added webhook ${webhook.url} for account ${webhook.accountName} (events: ${eventTypes?.join(",") ?? "all"}).\n` +
          "The line above is its signing secret, shown only this once: verify the Petrel-Signature header with it.\n",
      );
    });
  });

  withCommonOptions(
    webhooks
      .command("list")
      .description("list endpoints (secrets masked)")
      .option("-a, --account <account>", "only this account")
      .option("--json", "print JSON"),
  ).action(async (options: CommonOptions & { account?: string; json?: boolean }) => {
    await withServices(options, async (ctx) => {
      const list = await listWebhooks(ctx, options.account);
      if (options.json) return printJson(list);
      if (list.length === 0) {
        process.stdout.write("No webhooks. Add one with: petrel webhooks add URL\n");
        return;
      }
      printTable(
        ["URL", "ACCOUNT", "EVENTS", "SECRET", "STATE", "FAILURES", "LAST SUCCESS", "NEXT RETRY"],
        list.map((w) => [
          w.url,
          w.accountName,
          w.eventTypes?.join(",") ?? "all",
          w.secret,
          w.state === "disabled" ? `disabled ${isoTime(w.disabledAt)}: ${w.disabledReason}` : w.state,
          w.failures,
          isoTime(w.lastSuccessAt),
          w.failures > 0 && w.state === "active" ? isoTime(w.nextAttemptAt) : "-",
        ]),
      );
    });
  });

  withAccount(
    webhooks
      .command("test")
      .description("POST a signed test event to an endpoint now and print the answer")
      .argument("<url>", "the endpoint")
      .option("--timeout <ms>", "how long to wait for the answer", (v) => Number.parseInt(v, 10), 10_000),
  ).action(async (url: string, options: Options & { timeout: number }) => {
    await withServices(options, async (ctx) => {
      const result = await testWebhook(
        ctx,
        { account: options.account, url },
        { timeoutMs: options.timeout },
      );
      if (options.json) printJson(result);
      else
        process.stdout.write(
          `${result.ok ? "ok" : "failed"}: ${result.statusCode ?? "no response"} in ${Math.round(result.durationMs)} ms${result.error ? ` (${result.error})` : ""}\n`,
        );
      if (!result.ok) process.exitCode = 1;
    });
  });

  withAccount(
    webhooks
      .command("deliveries")
      .description("recent POSTs to an endpoint, newest first, with their status codes")
      .argument("<url>", "the endpoint")
      .option("-n, --limit <n>", "how many", (v) => Number.parseInt(v, 10), 20),
  ).action(async (url: string, options: Options & { limit: number }) => {
    await withServices(options, async (ctx) => {
      const list = await listDeliveries(ctx, { account: options.account, url }, options.limit);
      if (options.json) return printJson(list);
      if (list.length === 0) {
        process.stdout.write("No deliveries yet.\n");
        return;
      }
      printTable(
        ["TIME", "KIND", "STATUS", "EVENTS", "MS", "FIRST EVENT", "LAST EVENT", "ERROR"],
        list.map((d) => [
          isoTime(d.at),
          d.kind,
          d.statusCode ?? "-",
          d.events,
          d.durationMs,
          d.firstEventId ?? "-",
          d.lastEventId ?? "-",
          d.error ?? "",
        ]),
      );
    });
  });

  withAccount(
    webhooks
      .command("remove")
      .description("remove an endpoint (nothing more is sent to it)")
      .argument("<url>", "the endpoint"),
  ).action(async (url: string, options: Options) => {
    await withServices(options, async (ctx) => {
      await removeWebhook(ctx, { account: options.account, url });
      process.stdout.write(`Removed webhook ${url}\n`);
    });
  });

  withAccount(
    webhooks
      .command("enable")
      .description("re-enable a disabled endpoint: it gets the events it missed, from where it stopped")
      .argument("<url>", "the endpoint"),
  ).action(async (url: string, options: Options) => {
    await withServices(options, async (ctx) => {
      await enableWebhook(ctx, { account: options.account, url });
      process.stdout.write(`Enabled webhook ${url}\n`);
    });
  });
}

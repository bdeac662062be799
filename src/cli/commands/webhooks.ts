/**
 * `petrel webhooks`: endpoints that receive the account's events as signed JSON POSTs.
 * `add` prints the signing secret once; listings show only its first characters. `test` POSTs a
 * signed test event from this command at once and prints the answer; `deliveries` lists recent
 * attempts with their status codes. Changes apply to a running `serve` at its next poll.
 * Security: the secret is printed once by `add` (stdout, for scripts) and never again; it is
 * never logged. URLs must be http(s); the operator chooses them (no redirect is ever followed).
 */
import type { Command } from "commander";
import { UsageError } from "../../errors.js";
import { randomUlid } from "../../events/event-id.js";
import { generateWebhookSecret } from "../../events/signature.js";
import { postSigned } from "../../events/webhook-post.js";
import { EVENT_TYPES, type EventType, type Store, type WebhookWithSecret } from "../../store/types.js";
import { type CommonOptions, requireAccount, withCommonOptions, withStore } from "../context.js";
import { isoTime, printJson, printTable } from "../output.js";

type Options = CommonOptions & { account: string; json?: boolean };

function checkUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`not a URL: ${value}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new UsageError(`webhook URLs must be http:// or https:// (got ${url.protocol})`);
  // fetch refuses URLs with user:password@; a receiver checks the signature instead.
  if (url.username || url.password)
    throw new UsageError(
      "a webhook URL cannot carry user:password@ (verify the Petrel-Signature header instead)",
    );
  return value;
}

function parseTypes(value: string | undefined): EventType[] | null {
  if (!value || value === "all") return null;
  const types = [...new Set(value.split(",").map((t) => t.trim().toLowerCase()))];
  for (const t of types) {
    if (!EVENT_TYPES.includes(t as EventType))
      throw new UsageError(`unknown event type ${t}; one of ${EVENT_TYPES.join(", ")} (or all)`);
  }
  return types as EventType[];
}

async function requireWebhook(store: Store, options: Options, url: string): Promise<WebhookWithSecret> {
  const account = await requireAccount(store, options.account);
  const webhook = await store.getWebhookWithSecret(account.id, url);
  if (!webhook) throw new UsageError(`no webhook ${url} in account ${account.name}`);
  return webhook;
}

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
    const eventTypes = parseTypes(options.events);
    await withStore(options, async (store) => {
      const account = await requireAccount(store, options.account);
      const secret = generateWebhookSecret();
      const webhook = await store.addWebhook({
        accountId: account.id,
        url: checkUrl(url),
        secret,
        eventTypes,
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
    await withStore(options, async (store) => {
      const accountId = options.account ? (await requireAccount(store, options.account)).id : undefined;
      const list = (await store.listWebhooks(accountId)).map(({ secretPrefix, ...w }) => ({
        ...w,
        secret: `${secretPrefix}…`,
      }));
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
    await withStore(options, async (store) => {
      const webhook = await requireWebhook(store, options, url);
      const now = Date.now();
      const event = {
        id: randomUlid(now),
        type: "test",
        timestamp: now,
        messageId: "",
        account: webhook.accountName,
        recipient: "",
        attempt: null,
        nextAttemptAt: null,
        mxHost: null,
        ip: null,
        reply: null,
        enhancedCode: null,
        bounceClass: null,
        bounceHard: null,
        reason: "petrel webhooks test",
        metadata: null,
        categories: [],
      };
      const result = await postSigned(webhook.url, webhook.secret, JSON.stringify([event]), {
        timeoutMs: options.timeout,
        webhookId: webhook.id,
      });
      await store.recordWebhookAttempt({
        webhookId: webhook.id,
        kind: "test",
        at: now,
        durationMs: result.durationMs,
        statusCode: result.statusCode,
        error: result.error,
        ok: result.ok,
        events: 1,
        firstEventId: event.id,
        lastEventId: event.id,
      });
      if (options.json) printJson({ url: webhook.url, ...result });
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
    await withStore(options, async (store) => {
      const webhook = await requireWebhook(store, options, url);
      const list = await store.listWebhookDeliveries(webhook.id, options.limit);
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
    await withStore(options, async (store) => {
      const account = await requireAccount(store, options.account);
      if (!(await store.removeWebhook(account.id, url)))
        throw new UsageError(`no webhook ${url} in account ${account.name}`);
      process.stdout.write(`Removed webhook ${url}\n`);
    });
  });

  withAccount(
    webhooks
      .command("enable")
      .description("re-enable a disabled endpoint: it gets the events it missed, from where it stopped")
      .argument("<url>", "the endpoint"),
  ).action(async (url: string, options: Options) => {
    await withStore(options, async (store) => {
      const account = await requireAccount(store, options.account);
      if (!(await store.enableWebhook(account.id, url)))
        throw new UsageError(`no webhook ${url} in account ${account.name}`);
      process.stdout.write(`Enabled webhook ${url}\n`);
    });
  });
}

/**
 * Webhook endpoints: an account's events as signed JSON POSTs. add() returns the signing secret
 * once; listings carry only its first characters. test() POSTs a signed test event at once.
 * An endpoint is named by its URL (the CLI) or its id (the HTTP API), always within an account.
 * Security: the secret is returned by add() only, never logged. URLs must be http(s) without
 * user:password@ (fetch refuses those; receivers check the signature instead); no redirect is
 * ever followed (src/events/webhook-post.ts).
 */
import type { DnsResolver } from "../dns/types.js";
import { PetrelError } from "../errors.js";
import { randomUlid } from "../events/event-id.js";
import { generateWebhookSecret } from "../events/signature.js";
import { type PostResult, postSigned } from "../events/webhook-post.js";
import {
  EVENT_TYPES,
  type EventType,
  type Webhook,
  type WebhookDelivery,
  type WebhookWithSecret,
} from "../store/types.js";
import { conflicts, nowOf, requireAccount, type ServiceContext } from "./context.js";
import { cursorAt } from "./events.js";
import { checkPublicTarget } from "./webhook-targets.js";

/** An endpoint by URL or by id, within an account. */
export type WebhookRef = { readonly account: string } & ({ readonly url: string } | { readonly id: number });

/** A listing row: the secret masked to its first characters. */
export type WebhookView = Omit<Webhook, "secretPrefix"> & { readonly secret: string };

export function checkUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new PetrelError("invalid-input", `not a URL: ${value}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new PetrelError("invalid-input", `webhook URLs must be http:// or https:// (got ${url.protocol})`);
  // fetch refuses URLs with user:password@; a receiver checks the signature instead.
  if (url.username || url.password)
    throw new PetrelError(
      "invalid-input",
      "a webhook URL cannot carry user:password@ (verify the Petrel-Signature header instead)",
    );
  return value;
}

/** "delivered,bounce" → those types; undefined, "" or "all" → null (every type). */
export function parseTypes(value: string | readonly string[] | undefined): EventType[] | null {
  if (value === undefined || value === "" || value === "all") return null;
  const list = typeof value === "string" ? value.split(",") : value;
  const types = [...new Set(list.map((t) => t.trim().toLowerCase()))];
  for (const t of types) {
    if (!EVENT_TYPES.includes(t as EventType))
      throw new PetrelError(
        "invalid-input",
        `unknown event type ${t}; one of ${EVENT_TYPES.join(", ")} (or all)`,
      );
  }
  return types as EventType[];
}

export function maskWebhook({ secretPrefix, ...w }: Webhook): WebhookView {
  return { ...w, secret: `${secretPrefix}…` };
}

export interface AddedWebhook {
  readonly webhook: Webhook;
  readonly eventTypes: EventType[] | null;
  /** The signing secret: shown once. */
  readonly secret: string;
}

export async function addWebhook(
  ctx: ServiceContext,
  input: {
    readonly account: string;
    readonly url: string;
    readonly events?: string | readonly string[];
    /** For URLs from API keys: refuse non-public targets (webhook-targets.ts). */
    readonly publicOnly?: DnsResolver;
  },
): Promise<AddedWebhook> {
  const eventTypes = parseTypes(input.events);
  const account = await requireAccount(ctx.store, input.account);
  const url = checkUrl(input.url);
  if (input.publicOnly && !ctx.config.events.webhooks.allowPrivateTargets)
    await checkPublicTarget(url, input.publicOnly);
  const secret = generateWebhookSecret();
  const webhook = await conflicts(ctx.store.addWebhook({ accountId: account.id, url, secret, eventTypes }));
  return { webhook, eventTypes, secret };
}

export async function listWebhooks(ctx: ServiceContext, account?: string): Promise<WebhookView[]> {
  const accountId = account === undefined ? undefined : (await requireAccount(ctx.store, account)).id;
  return (await ctx.store.listWebhooks(accountId)).map(maskWebhook);
}

function describe(ref: WebhookRef): string {
  return "url" in ref ? ref.url : `#${ref.id}`;
}

/** The endpoint with its secret (for test and replay), or not-found. */
export async function requireWebhook(ctx: ServiceContext, ref: WebhookRef): Promise<WebhookWithSecret> {
  const account = await requireAccount(ctx.store, ref.account);
  const url =
    "url" in ref ? ref.url : (await ctx.store.listWebhooks(account.id)).find((w) => w.id === ref.id)?.url;
  const webhook = url === undefined ? undefined : await ctx.store.getWebhookWithSecret(account.id, url);
  if (!webhook) throw new PetrelError("not-found", `no webhook ${describe(ref)} in account ${account.name}`);
  return webhook;
}

export async function getWebhook(ctx: ServiceContext, ref: WebhookRef): Promise<WebhookView> {
  const { secret: _secret, ...webhook } = await requireWebhook(ctx, ref);
  return maskWebhook(webhook);
}

export interface TestResult extends PostResult {
  readonly url: string;
}

/** POSTs one signed `test` event now and records the attempt. */
export async function testWebhook(
  ctx: ServiceContext,
  ref: WebhookRef,
  options: { readonly timeoutMs: number },
): Promise<TestResult> {
  const webhook = await requireWebhook(ctx, ref);
  const now = nowOf(ctx);
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
    timeoutMs: options.timeoutMs,
    webhookId: webhook.id,
  });
  await ctx.store.recordWebhookAttempt({
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
  return { url: webhook.url, ...result };
}

export async function listDeliveries(
  ctx: ServiceContext,
  ref: WebhookRef,
  limit: number,
): Promise<WebhookDelivery[]> {
  const webhook = await requireWebhook(ctx, ref);
  return ctx.store.listWebhookDeliveries(webhook.id, limit);
}

export async function removeWebhook(ctx: ServiceContext, ref: WebhookRef): Promise<string> {
  const account = await requireAccount(ctx.store, ref.account);
  const url = "url" in ref ? ref.url : (await requireWebhook(ctx, ref)).url;
  if (!(await ctx.store.removeWebhook(account.id, url)))
    throw new PetrelError("not-found", `no webhook ${describe(ref)} in account ${account.name}`);
  return url;
}

/** Re-enables a disabled endpoint: it gets the events it missed, from where it stopped. */
export async function enableWebhook(ctx: ServiceContext, ref: WebhookRef): Promise<string> {
  const account = await requireAccount(ctx.store, ref.account);
  const url = "url" in ref ? ref.url : (await requireWebhook(ctx, ref)).url;
  if (!(await ctx.store.enableWebhook(account.id, url)))
    throw new PetrelError("not-found", `no webhook ${describe(ref)} in account ${account.name}`);
  return url;
}

/**
 * Replay: the endpoint gets the events after `since` (a time, or an event id: the events after
 * it) again, in order, with their original ids, from its next run. Events already pruned by
 * events.retention are gone and cannot be replayed.
 */
export async function replayWebhook(
  ctx: ServiceContext,
  ref: WebhookRef,
  since: { readonly at: number } | { readonly afterId: string },
): Promise<{ readonly url: string; readonly cursor: string; readonly rewound: boolean }> {
  const webhook = await requireWebhook(ctx, ref);
  const cursor = "at" in since ? cursorAt(since.at) : since.afterId;
  if (!/^[0-9A-HJKMNP-TV-Z]{26}$/.test(cursor))
    throw new PetrelError("invalid-input", "since: not an event id");
  const rewound = await ctx.store.rewindWebhookCursor(webhook.id, cursor);
  return { url: webhook.url, cursor, rewound };
}

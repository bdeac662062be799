/**
 * The spool seen by people: what is queued, for whom, in which state, and the operator's hands
 * on it — retry now, hold, release, delete (drop, recorded "dropped by operator" per recipient,
 * so nothing accepted disappears without a final record). Changes apply to a running `serve`
 * at its next claim. A message of another account than the caller's is "not found".
 */
import { canonicalDomain } from "../address.js";
import { PetrelError } from "../errors.js";
import { type MessageHeaders, readMessageHeaders } from "../message/summary.js";
import type {
  DeliveryAttempt,
  DestinationThrottle,
  MessageDetail,
  MessageSummary,
  QueueCounts,
  RecipientDetail,
  RecipientState,
} from "../store/types.js";
import { nowOf, type ServiceContext } from "./context.js";
import { explainRecipient } from "./explain.js";
import { canonicalId } from "./validate.js";

export const RECIPIENT_STATES: readonly RecipientState[] = [
  "queued",
  "delivering",
  "deferred",
  "delivered",
  "bounced",
  "expired",
  "dropped",
  "held",
];

/**
 * Issue 9, scheduled send: the state people see. A recipient stored `queued` and never attempted,
 * of a message whose send_at is still ahead, is shown `scheduled` (the store keeps it queued,
 * due at send_at, so claims need no special case).
 */
export function shownState<S extends RecipientState>(
  state: S,
  attempts: number,
  sendAt: number | null,
  now: number,
): S | "scheduled" {
  return state === "queued" && attempts === 0 && sendAt !== null && sendAt > now ? "scheduled" : state;
}

/** A summary's state counts with its scheduled recipients counted as such. */
export function shownSummary<M extends MessageSummary>(message: M, now: number): M {
  const queued = message.states.queued;
  if (!queued || message.sendAt === null || message.sendAt <= now) return message;
  const { queued: _, ...rest } = message.states;
  return { ...message, states: { ...rest, scheduled: queued } };
}

export function parseState(value: string | undefined): RecipientState | undefined {
  if (value === undefined || value === "") return undefined;
  if (!RECIPIENT_STATES.includes(value as RecipientState))
    throw new PetrelError("invalid-input", `unknown state ${value}; one of ${RECIPIENT_STATES.join(", ")}`);
  return value as RecipientState;
}

/** What a listing or search filters by: the stored states and `scheduled` (a shown state). */
export const SHOWN_STATES: readonly RecipientState[] = [...RECIPIENT_STATES, "scheduled"];

export interface StateFilter {
  readonly state?: RecipientState;
  readonly scheduledAt?: number;
  readonly unscheduledAt?: number;
}

/**
 * A shown state as a store filter: `scheduled` is stored `queued` on a message whose send_at is
 * still ahead, so it is that; and `queued` leaves those messages out (they are not queued yet).
 */
export function stateFilter(value: string | undefined, now: number): StateFilter {
  if (value === "scheduled") return { state: "queued", scheduledAt: now };
  const state = parseState(value);
  if (state === undefined) return {};
  return state === "queued" ? { state, unscheduledAt: now } : { state };
}

export interface QueueListing {
  readonly counts: QueueCounts;
  readonly messages: MessageSummary[];
  /** Issue 11: destinations delivering under throttled limits now (adaptive throttling). */
  readonly throttles: DestinationThrottle[];
}

/**
 * Issue 11: the throttled destinations that serve any of `domains` (all of them without), for
 * the queue listing and a message's explanation ("slowed down: yahoo at 150/min after …").
 */
export async function throttlesFor(
  ctx: ServiceContext,
  domains?: readonly string[],
): Promise<DestinationThrottle[]> {
  const all = await ctx.store.listThrottles();
  if (!domains) return all;
  const wanted = new Set(domains.map((d) => d.toLowerCase()));
  return all.filter((t) => t.domains.some((d) => wanted.has(d)));
}

export async function listQueue(
  ctx: ServiceContext,
  query: { readonly state?: string; readonly domain?: string; readonly limit: number },
): Promise<QueueListing> {
  const now = nowOf(ctx);
  const states = stateFilter(query.state, now);
  // A domain given with U-labels finds its recipients, stored under A-labels (issue 11).
  const domain = query.domain === undefined ? undefined : canonicalDomain(query.domain.trim());
  const messages = (await ctx.store.listMessages({ ...states, domain, limit: query.limit })).map((m) =>
    shownSummary(m, now),
  );
  const counts = await ctx.store.queueCounts({ ...(domain === undefined ? {} : { domain }), now });
  const throttles = await throttlesFor(ctx, domain ? [domain] : undefined);
  return { counts, messages, throttles };
}

/** The message (of `account` only, when given), or not-found. */
export async function requireMessage(
  ctx: ServiceContext,
  id: string,
  account?: string,
): Promise<MessageDetail> {
  const message = await ctx.store.getMessage(canonicalId(id));
  if (!message || (account !== undefined && message.accountName !== account))
    throw new PetrelError("not-found", `no message ${id}`);
  // Scheduled recipients shown as such (and explained "scheduled for …").
  const now = nowOf(ctx);
  return shownSummary(
    {
      ...message,
      recipientDetails: message.recipientDetails.map((r) => ({
        ...r,
        state: shownState(r.state, r.attempts, message.sendAt, now),
      })),
    },
    now,
  );
}

export type ShownMessage = Omit<MessageDetail, "recipientDetails"> & {
  /** Each recipient with the sentence saying why it is not delivered yet, or why it failed. */
  readonly recipientDetails: ReadonlyArray<RecipientDetail & { readonly explanation: string }>;
  readonly attempts: DeliveryAttempt[];
  /** Subject, From and Message-ID of the stored content (decoded); null when absent. */
  readonly headers: MessageHeaders;
};

export async function showMessage(ctx: ServiceContext, id: string, account?: string): Promise<ShownMessage> {
  const message = await requireMessage(ctx, id, account);
  const now = nowOf(ctx);
  const attempts = await ctx.store.listAttempts(message.id);
  const backoffs = await ctx.store.listDestinationBackoffs(now);
  const recipientDetails = message.recipientDetails.map((r) => ({
    ...r,
    explanation: explainRecipient({
      recipient: r,
      attempts: attempts.filter((a) => a.recipient === r.address),
      expiresAt: message.expiresAt,
      backoff: backoffs.find(
        (b) => b.domain === r.address.slice(r.address.lastIndexOf("@") + 1).toLowerCase(),
      ),
      now,
    }),
  }));
  const content = await ctx.store.getMessageContent(message.id);
  const headers = content
    ? await readMessageHeaders(content)
    : { subject: null, from: null, messageId: null };
  return { ...message, recipientDetails, attempts, headers };
}

/** The stored (signed) message as it is delivered. */
export async function messageContent(ctx: ServiceContext, id: string, account?: string): Promise<Buffer> {
  const { id: stored } = await requireMessage(ctx, id, account);
  const content = await ctx.store.getMessageContent(stored);
  if (!content) throw new PetrelError("not-found", `no message ${id}`);
  return content;
}

export interface ActionResult {
  readonly id: string | null;
  /** Recipients the action changed. */
  readonly recipients: number;
}

/** Makes deferred mail due now (one message, or all), lifting destination backoff. */
export async function retryMessages(
  ctx: ServiceContext,
  target: { readonly id?: string; readonly all?: boolean },
  account?: string,
): Promise<ActionResult> {
  if (!target.id && !target.all) throw new PetrelError("invalid-input", "give a queue ID or --all");
  const id = target.id ? (await requireMessage(ctx, target.id, account)).id : undefined;
  if (id === undefined && account !== undefined)
    throw new PetrelError("missing-scope", "retrying every message needs the admin scope", {
      extra: { scope: "admin" },
    });
  const recipients = await ctx.store.retryNow(
    id !== undefined ? { messageId: id } : { all: true },
    nowOf(ctx),
  );
  return { id: id ?? null, recipients };
}

export async function holdMessage(ctx: ServiceContext, id: string, account?: string): Promise<ActionResult> {
  const { id: stored } = await requireMessage(ctx, id, account);
  return { id: stored, recipients: await ctx.store.holdMessage(stored, nowOf(ctx)) };
}

export async function releaseMessage(
  ctx: ServiceContext,
  id: string,
  account?: string,
): Promise<ActionResult> {
  const { id: stored } = await requireMessage(ctx, id, account);
  return { id: stored, recipients: await ctx.store.releaseMessage(stored, nowOf(ctx)) };
}

/**
 * Issue 9: cancels a (scheduled) message — every recipient not yet attempted is dropped, with a
 * `dropped` event whose reason is `cancelled`; recipients already tried keep their course.
 * Returns how many were dropped (0: nothing left to cancel).
 */
export async function cancelMessage(
  ctx: ServiceContext,
  id: string,
  account?: string,
): Promise<ActionResult> {
  const { id: stored } = await requireMessage(ctx, id, account);
  return { id: stored, recipients: await ctx.store.cancelMessage(stored, nowOf(ctx)) };
}

export async function deleteMessage(
  ctx: ServiceContext,
  id: string,
  account?: string,
  reason = "dropped by operator",
): Promise<ActionResult> {
  const { id: stored } = await requireMessage(ctx, id, account);
  return { id: stored, recipients: await ctx.store.dropMessage(stored, nowOf(ctx), reason) };
}

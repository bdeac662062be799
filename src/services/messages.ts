/**
 * Messages as the API shows them (issue 9): a page of an account's messages, newest first, with
 * a cursor; one message with its main headers and, per recipient, every attempt and the
 * explanation sentence (src/services/explain.ts); the stored (signed) content.
 */
import { PetrelError } from "../errors.js";
import { readHeaderSection } from "../message/headers.js";
import type { MessageSearchRow, RecipientState } from "../store/types.js";
import { nowOf, requireAccount, type ServiceContext } from "./context.js";
import { explainRecipient } from "./explain.js";
import { requireMessage, shownState, stateFilter } from "./queue.js";

export interface MessageQuery {
  readonly account: string;
  readonly from?: string | undefined;
  readonly to?: string | undefined;
  readonly state?: string | undefined;
  readonly category?: string | undefined;
  readonly since?: number | undefined;
  readonly until?: number | undefined;
  readonly limit: number;
  readonly cursor?: string | undefined;
}

export interface MessagePage {
  readonly messages: MessageSearchRow[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  readonly nextCursor: string | null;
}

const CURSOR = /^[0-9A-HJKMNP-TV-Z]{26}$/;

export async function searchMessages(ctx: ServiceContext, query: MessageQuery): Promise<MessagePage> {
  const account = await requireAccount(ctx.store, query.account);
  if (query.cursor !== undefined && !CURSOR.test(query.cursor))
    throw new PetrelError("invalid-input", "cursor: not a cursor from a previous page");
  const now = nowOf(ctx);
  const states = stateFilter(query.state, now);
  const rows = await ctx.store.searchMessages({
    accountId: account.id,
    ...(query.from ? { from: query.from.trim() } : {}),
    ...(query.to ? { to: query.to.trim() } : {}),
    ...states,
    ...(query.category ? { category: query.category } : {}),
    ...(query.since === undefined ? {} : { since: query.since }),
    ...(query.until === undefined ? {} : { until: query.until }),
    ...(query.cursor ? { before: query.cursor } : {}),
    limit: query.limit + 1,
  });
  const more = rows.length > query.limit;
  const messages = (more ? rows.slice(0, query.limit) : rows).map((m) => ({
    ...m,
    recipients: m.recipients.map((r) => ({ ...r, state: shownState(r.state, 0, m.sendAt, now) })),
  }));
  return { messages, nextCursor: more ? messages.at(-1)!.id : null };
}

export interface AttemptView {
  readonly at: number;
  readonly status: string;
  readonly mxHost: string | null;
  readonly ip: string | null;
  readonly port: number | null;
  readonly tls: string | null;
  readonly reply: string;
  readonly enhancedCode: string | null;
  readonly bounceClass: string | null;
  readonly durationMs: number;
}

export interface RecipientView {
  readonly address: string;
  readonly state: RecipientState;
  readonly attemptCount: number;
  readonly nextAttemptAt: number | null;
  readonly explanation: string;
  readonly attempts: AttemptView[];
}

export interface MessageView {
  readonly id: string;
  readonly account: string;
  readonly from: string;
  readonly size: number;
  readonly receivedAt: number;
  readonly expiresAt: number;
  /** Scheduled send: when the message is (or was) to be sent (ms), or null. */
  readonly sendAt: number | null;
  readonly apiKey: string | null;
  readonly clientIp: string;
  readonly headers: Record<string, string>;
  readonly categories: readonly string[];
  readonly metadata: Record<string, unknown> | null;
  readonly recipients: RecipientView[];
}

const MAIN_HEADERS = ["from", "to", "cc", "reply-to", "subject", "date", "message-id"];
const ENHANCED = /\b([245]\.\d{1,3}\.\d{1,3})\b/;

/** One message with per-recipient attempts and explanations (another account's: not-found). */
export async function getMessageView(
  ctx: ServiceContext,
  id: string,
  account?: string,
): Promise<MessageView> {
  const message = await requireMessage(ctx, id, account);
  const now = nowOf(ctx);
  const [attempts, content, backoffs, events] = await Promise.all([
    ctx.store.listAttempts(id),
    ctx.store.getMessageContent(id),
    ctx.store.listDestinationBackoffs(now),
    ctx.store.listEvents({ messageId: id, types: ["bounce"], limit: 1000 }),
  ]);
  const headers: Record<string, string> = {};
  if (content) {
    for (const f of readHeaderSection(content).fields) {
      const name = f.name.toLowerCase();
      if (MAIN_HEADERS.includes(name) && headers[name] === undefined)
        headers[name] = Buffer.from(f.value, "latin1").toString("utf8");
    }
  }
  const classOf = new Map(events.map((e) => [e.recipient, e.bounceClass]));
  const recipients = message.recipientDetails.map((r) => {
    const mine = attempts.filter((a) => a.recipient === r.address);
    const domain = r.address.slice(r.address.lastIndexOf("@") + 1).toLowerCase();
    return {
      address: r.address,
      state: r.state,
      attemptCount: r.attempts,
      nextAttemptAt: r.nextAttemptAt,
      explanation: explainRecipient({
        recipient: r,
        attempts: mine,
        expiresAt: message.expiresAt,
        backoff: backoffs.find((b) => b.domain === domain),
        now,
      }),
      attempts: mine.map((a) => ({
        at: a.at,
        status: a.status,
        mxHost: a.mxHost,
        ip: a.ip,
        port: a.port,
        tls: a.tls,
        reply: a.reply,
        enhancedCode: ENHANCED.exec(a.reply)?.[1] ?? null,
        bounceClass: a.status === "bounced" ? (classOf.get(r.address) ?? null) : null,
        durationMs: a.durationMs,
      })),
    };
  });
  return {
    id: message.id,
    account: message.accountName,
    from: message.mailFrom,
    size: message.size,
    receivedAt: message.receivedAt,
    expiresAt: message.expiresAt,
    sendAt: message.sendAt,
    apiKey: message.apiKeyName,
    clientIp: message.clientIp,
    headers,
    categories: message.categories,
    metadata: message.metadata,
    recipients,
  };
}

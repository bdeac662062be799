/**
 * Bulk queue actions by filter (issue 9, "release everything held for example.com"): retry,
 * hold, release, delete or cancel every message that has a recipient matching the filter — at a
 * domain, in a state, or both — of one account (the API key's) or, from the CLI, of any account
 * unless --account is given. Each matching message gets the same store call as the per-message
 * action, so the rules (and the dropped events of delete and cancel) are those of
 * src/services/queue.ts; the action applies to the whole message, as the per-message one does.
 * A bulk retry leaves scheduled messages to their send time, as `retry --all` does. Returns how
 * many messages matched and how many recipients the action changed.
 */
import { canonicalDomain } from "../address.js";
import { PetrelError } from "../errors.js";
import type { RecipientState } from "../store/types.js";
import { nowOf, requireAccount, type ServiceContext } from "./context.js";
import { parseState } from "./queue.js";

export const BULK_ACTIONS = ["retry", "hold", "release", "delete", "cancel"] as const;
export type BulkAction = (typeof BULK_ACTIONS)[number];

export interface BulkFilter {
  readonly domain?: string | undefined;
  readonly state?: string | undefined;
}

export interface BulkResult {
  readonly action: BulkAction;
  readonly filter: { readonly domain: string | null; readonly state: string | null };
  /** Messages that had a matching recipient. */
  readonly messages: number;
  /** Recipients the action changed (released, held, dropped…). */
  readonly recipients: number;
}

const PAGE = 500;

export function parseBulkAction(value: string): BulkAction {
  if (!(BULK_ACTIONS as readonly string[]).includes(value))
    throw new PetrelError(
      "invalid-input",
      `unknown queue action ${value}; one of ${BULK_ACTIONS.join(", ")}`,
    );
  return value as BulkAction;
}

export async function bulkQueueAction(
  ctx: ServiceContext,
  action: BulkAction,
  filter: BulkFilter,
  account?: string,
): Promise<BulkResult> {
  const domain = filter.domain?.trim() ? canonicalDomain(filter.domain.trim()) : undefined;
  const given = parseState(filter.state);
  // Never "everything": a filter is what makes a bulk action deliberate.
  if (domain === undefined && given === undefined)
    throw new PetrelError("invalid-input", "give a domain, a state, or both (a bulk action needs a filter)");
  if (given === "scheduled")
    throw new PetrelError("invalid-input", "filter scheduled messages by state queued");
  const state = given as Exclude<RecipientState, "scheduled"> | undefined;
  const accountId = account === undefined ? undefined : (await requireAccount(ctx.store, account)).id;
  const now = nowOf(ctx);
  const apply = (id: string): Promise<number> => {
    switch (action) {
      case "retry":
        return ctx.store.retryNow({ messageId: id }, now);
      case "hold":
        return ctx.store.holdMessage(id, now);
      case "release":
        return ctx.store.releaseMessage(id, now);
      case "delete":
        return ctx.store.dropMessage(id, now, "dropped by operator");
      case "cancel":
        return ctx.store.cancelMessage(id, now);
    }
  };
  let messages = 0;
  let recipients = 0;
  let after: string | undefined;
  // Pages in id order: an action that changes the state (release of held) does not move a
  // message back into pages still to come, and each message is visited once.
  for (;;) {
    const ids = await ctx.store.listMessageIds({
      ...(accountId === undefined ? {} : { accountId }),
      ...(domain === undefined ? {} : { domain }),
      ...(state === undefined ? {} : { state }),
      ...(after === undefined ? {} : { after }),
      // A bulk retry is for mail waiting after failures: scheduled messages keep their send time
      // (as with retry --all); retry one by its ID to send it now.
      ...(action === "retry" ? { unscheduledAt: now } : {}),
      limit: PAGE,
    });
    for (const id of ids) {
      messages++;
      recipients += await apply(id);
    }
    if (ids.length < PAGE) break;
    after = ids.at(-1);
  }
  return { action, filter: { domain: domain ?? null, state: state ?? null }, messages, recipients };
}

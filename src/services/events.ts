/**
 * The event log: every recipient state change with its details and the sender's metadata, read
 * newest-first or from a cursor (an event id: ids increase in commit order, so polling from the
 * last id seen never misses one).
 */
import { encodeTime } from "ulidx";
import { envelopeAddress } from "../address.js";
import { PetrelError } from "../errors.js";
import { EVENT_TYPES, type EventFilter, type EventType, type PetrelEvent } from "../store/types.js";
import { requireAccount, type ServiceContext } from "./context.js";
import { canonicalId } from "./validate.js";

/** "delivered,bounce" → those types (undefined: every type). */
export function parseEventTypes(value: string | readonly string[] | undefined): EventType[] | undefined {
  if (value === undefined || value === "") return undefined;
  const types = (typeof value === "string" ? value.split(",") : value).map((t) => t.trim().toLowerCase());
  for (const t of types) {
    if (!EVENT_TYPES.includes(t as EventType))
      throw new PetrelError("invalid-input", `unknown event type ${t}; one of ${EVENT_TYPES.join(", ")}`);
  }
  return types as EventType[];
}

export interface EventQuery {
  readonly account?: string;
  readonly message?: string;
  readonly recipient?: string;
  readonly types?: string | readonly string[];
}

/** The store filter of a query (the account resolved to its id). */
export async function eventFilter(ctx: ServiceContext, query: EventQuery): Promise<EventFilter> {
  const types = parseEventTypes(query.types);
  const accountId = query.account ? (await requireAccount(ctx.store, query.account)).id : undefined;
  return {
    ...(query.message ? { messageId: canonicalId(query.message) } : {}),
    ...(query.recipient ? { recipient: envelopeAddress(query.recipient.trim()) } : {}),
    ...(types ? { types } : {}),
    ...(accountId === undefined ? {} : { accountId }),
  };
}

/** Events matching `filter` in id order; with `newest`, the newest `limit` (still oldest first). */
export function listEvents(
  ctx: ServiceContext,
  filter: EventFilter & { readonly limit: number },
): Promise<PetrelEvent[]> {
  return ctx.store.listEvents(filter);
}

/** The id of the newest event of any kind ("" when there is none): where a follower starts. */
export async function newestEventId(ctx: ServiceContext): Promise<string> {
  return (await ctx.store.listEvents({ limit: 1, newest: true }))[0]?.id ?? "";
}

/**
 * A cursor just before every event at or after `ms`: event ids are ULIDs that start with their
 * time, so the smallest id of that millisecond sorts before all of them.
 */
export function cursorAt(ms: number): string {
  return `${encodeTime(Math.max(0, Math.floor(ms)), 10)}${"0".repeat(16)}`;
}

/**
 * What an account's operator looks at first (the dashboard's overview, issue 9): its pending
 * recipients by state, the oldest message still waiting, the destinations of its mail that are
 * backed off now, and its webhook endpoints that are failing or disabled. One account only:
 * another account's queue or destinations are not shown (they would reveal whom it mails).
 */
import type { DestinationBackoff, RecipientState } from "../store/types.js";
import { nowOf, requireAccount, type ServiceContext } from "./context.js";
import { listWebhooks, type WebhookView } from "./webhooks.js";

/** Pending recipients counted at most (a bigger backlog shows as "10,000+"): a bounded read. */
export const QUEUE_COUNT_LIMIT = 10_000;

export interface QueueOverview {
  readonly pending: number;
  /** False when the backlog is over QUEUE_COUNT_LIMIT: the figures are lower bounds. */
  readonly complete: boolean;
  readonly byState: Partial<Record<RecipientState, number>>;
  readonly oldest: { readonly id: string; readonly receivedAt: number } | null;
  /** Backed-off destinations this account has pending mail for, with how many recipients. */
  readonly backedOff: ReadonlyArray<DestinationBackoff & { readonly pending: number }>;
}

export async function queueOverview(ctx: ServiceContext, account: string): Promise<QueueOverview> {
  const { id } = await requireAccount(ctx.store, account);
  const [queue, backoffs] = await Promise.all([
    ctx.store.accountQueue(id, QUEUE_COUNT_LIMIT),
    ctx.store.listDestinationBackoffs(nowOf(ctx)),
  ]);
  const pendingAt = new Map(queue.destinations.map((d) => [d.domain, d.pending]));
  return {
    pending: Object.values(queue.byState).reduce((a, b) => a + (b ?? 0), 0),
    complete: queue.complete,
    byState: queue.byState,
    oldest: queue.oldest,
    backedOff: backoffs
      .filter((b) => pendingAt.has(b.domain))
      .map((b) => ({ ...b, pending: pendingAt.get(b.domain)! })),
  };
}

/** The account's endpoints that failed their last POSTs or were disabled. */
export async function failingWebhooks(ctx: ServiceContext, account: string): Promise<WebhookView[]> {
  return (await listWebhooks(ctx, account)).filter((w) => w.failures > 0 || w.state === "disabled");
}

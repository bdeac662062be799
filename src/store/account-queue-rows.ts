/**
 * The rows of accountQueue() (state, domain, n, oldest, oldest_at: one per state and domain of
 * an account's pending recipients) folded into an AccountQueue, by one function both backends
 * call, so they answer alike.
 */
import type { AccountQueue, RecipientState } from "./types.js";

type Row = Record<string, unknown>;

/** `rows` counted at most limit + 1 recipients: more than `limit` means the counts are partial. */
export function accountQueueOf(rows: readonly Row[], limit: number): AccountQueue {
  const byState: Partial<Record<RecipientState, number>> = {};
  const domains = new Map<string, number>();
  let oldest: { id: string; receivedAt: number } | null = null;
  for (const row of rows) {
    const n = Number(row.n);
    const state = String(row.state) as RecipientState;
    byState[state] = (byState[state] ?? 0) + n;
    const domain = String(row.domain);
    domains.set(domain, (domains.get(domain) ?? 0) + n);
    const id = String(row.oldest);
    if (oldest === null || id < oldest.id) oldest = { id, receivedAt: Number(row.oldest_at) };
  }
  const destinations = [...domains]
    .map(([domain, pending]) => ({ domain, pending }))
    .sort((a, b) => b.pending - a.pending || (a.domain < b.domain ? -1 : 1));
  const counted = [...domains.values()].reduce((a, b) => a + b, 0);
  return { byState, oldest, destinations, complete: counted <= limit };
}

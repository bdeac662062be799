/**
 * The rows of accountQueue() (state, domain, n, oldest, oldest_at: one per state and domain of
 * an account's pending recipients) folded into an AccountQueue, by one function both backends
 * call, so they answer alike.
 */
import type { AccountQueue, RecipientState } from "./types.js";

type Row = Record<string, unknown>;

export function accountQueueOf(rows: readonly Row[]): AccountQueue {
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
  return { byState, oldest, destinations };
}

/** Issue 9, scheduled send: shared by both stores' queue counts. */
import type { RecipientState } from "./types.js";

/** A destination's scheduled recipients (stored queued) counted as scheduled, not queued. */
export function moveToScheduled(
  states: Partial<Record<RecipientState, number>> | undefined,
  n: number,
): void {
  if (!states || n <= 0) return;
  states.scheduled = (states.scheduled ?? 0) + n;
  states.queued = (states.queued ?? 0) - n;
  if (states.queued <= 0) delete states.queued;
}

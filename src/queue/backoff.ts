/**
 * Retry policy as plain functions over plain data: when a deferred recipient is due again, when it
 * expires, and how long a failing destination waits as a whole. No I/O, no clock of its own: the
 * caller passes `now` and a random source, so tests walk a message to expiry without waiting.
 *
 * Invariants: a deferral never schedules past the message's expiry: the last attempt happens at
 * the expiry time, and a deferral at or after it is final (`expired`), like Postfix's
 * maximal_queue_lifetime (one more try, then the bounce).
 */

export interface RetryPolicy {
  /** Delay after the 1st, 2nd, … deferral; the last entry repeats. */
  readonly schedule: readonly number[];
  /** Spread as a fraction: 0.1 → each delay is scaled by a factor in [0.9, 1.1). */
  readonly jitter: number;
}

/** The delay after the `attempts`-th failed attempt (1-based), with jitter from `random()` ∈ [0, 1). */
export function retryDelay(
  policy: RetryPolicy,
  attempts: number,
  random: () => number = Math.random,
): number {
  const { schedule } = policy;
  const base = schedule[Math.min(Math.max(attempts, 1), schedule.length) - 1] ?? 60_000;
  const factor = 1 + policy.jitter * (2 * random() - 1);
  return Math.max(1, Math.round(base * factor));
}

export type Deferral =
  | { readonly state: "deferred"; readonly nextAttemptAt: number }
  | { readonly state: "expired"; readonly nextAttemptAt: null };

/**
 * What a temporary failure at `now` means for a recipient that has now failed `attempts` times
 * (this one included) and whose message expires at `expiresAt`.
 */
export function deferral(
  policy: RetryPolicy,
  attempts: number,
  now: number,
  expiresAt: number,
  random: () => number = Math.random,
): Deferral {
  if (now >= expiresAt) return { state: "expired", nextAttemptAt: null };
  return {
    state: "deferred",
    nextAttemptAt: Math.min(now + retryDelay(policy, attempts, random), expiresAt),
  };
}

/**
 * How long a destination waits after `failures` consecutive connection-level failures, or null
 * while it is still below the threshold (a single refused connection is not yet a pattern).
 */
export function destinationWait(
  policy: RetryPolicy,
  failures: number,
  threshold: number,
  random: () => number = Math.random,
): number | null {
  if (failures < threshold) return null;
  return retryDelay(policy, failures - threshold + 1, random);
}

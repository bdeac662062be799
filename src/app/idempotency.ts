/**
 * Idempotency keys (issue 9): a request with an `Idempotency-Key` header (HTTP) or a message with
 * an `X-Petrel-Idempotency-Key` field (SMTP: the classic lost-`250` resubmission) is carried out
 * once per account and key for 24 h; a repeat gets the first answer (the same queue ID) and
 * nothing is queued twice. Over HTTP the same key with a different request is refused
 * (`idempotency-conflict`); over SMTP only the key counts.
 *
 * Invariants: the answer is kept only after the operation succeeded (a failed request may be
 * retried with its key); concurrent requests with one key in this process wait for the first.
 * Limitation: the record is written after the message's commit, not in its transaction, so a
 * crash between the two lets one retry through; with several nodes, two simultaneous first
 * requests may both run.
 */
import { PetrelError } from "../errors.js";
import type { Store } from "../store/types.js";

export const IDEMPOTENCY_TTL_MS = 24 * 3600_000;
export const MAX_IDEMPOTENCY_KEY = 256;

export class Idempotency {
  private readonly inflight = new Map<string, Promise<unknown>>();
  private readonly store: Store;
  private readonly now: () => number;
  private readonly onSaveError: (err: unknown) => void;

  /** `onSaveError`: the operation succeeded but its record was not kept (logged; the answer stands). */
  constructor(store: Store, onSaveError: (err: unknown) => void, now: () => number = Date.now) {
    this.store = store;
    this.onSaveError = onSaveError;
    this.now = now;
  }

  /** Checks a key's form: 1–256 printable ASCII characters. */
  static valid(key: string): boolean {
    return key.length > 0 && key.length <= MAX_IDEMPOTENCY_KEY && /^[\x21-\x7e]+$/.test(key);
  }

  /** Runs `fn` once for (account, key); a repeat returns the first result with replayed = true. */
  async once<T>(
    accountId: number,
    key: string,
    requestHash: string,
    fn: () => Promise<T>,
  ): Promise<{ readonly value: T; readonly replayed: boolean }> {
    const slot = `${accountId}\u0000${key}`;
    for (;;) {
      const running = this.inflight.get(slot);
      if (!running) break;
      await running.catch(() => {});
    }
    const found = await this.store.findIdempotencyKey(accountId, key, this.now() - IDEMPOTENCY_TTL_MS);
    if (found) {
      if (found.requestHash !== requestHash)
        throw new PetrelError(
          "idempotency-conflict",
          "this Idempotency-Key was used with a different request in the last 24 h",
        );
      return { value: JSON.parse(found.response) as T, replayed: true };
    }
    const run = (async () => {
      const value = await fn();
      const at = this.now();
      await this.store
        .saveIdempotencyKey(
          { accountId, key, requestHash, response: JSON.stringify(value), createdAt: at },
          at - IDEMPOTENCY_TTL_MS,
        )
        .catch(this.onSaveError);
      return value;
    })();
    this.inflight.set(slot, run);
    try {
      return { value: await run, replayed: false };
    } finally {
      this.inflight.delete(slot);
    }
  }
}

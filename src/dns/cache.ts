/**
 * The resolver's answer cache: positive answers (including NODATA) and NXDOMAIN, each until its
 * own expiry; temporary failures are never stored, so a SERVFAIL is retried on the next call.
 *
 * Invariants: an entry is never served after its expiry by the injected clock; a served answer
 * carries its remaining TTL (rounded up, so a live entry never says 0); the cache holds at most
 * `maxEntries` names and drops the oldest insertions first.
 * Security: names come from message recipients, i.e. from strangers; the size bound keeps a flood
 * of distinct domains from growing memory without limit.
 */

import type { DnsAnswer } from "./types.js";

/** What may be cached: everything but a temporary failure. */
export type CacheableAnswer<T> = Exclude<DnsAnswer<T>, { kind: "tempfail" }>;

interface Entry {
  readonly answer: CacheableAnswer<unknown>;
  readonly expiresAt: number;
}

export class AnswerCache {
  readonly #entries = new Map<string, Entry>();
  readonly #now: () => number;
  readonly #maxEntries: number;

  constructor(now: () => number, maxEntries: number) {
    this.#now = now;
    this.#maxEntries = maxEntries;
  }

  get<T>(key: string): CacheableAnswer<T> | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const remainingMs = entry.expiresAt - this.#now();
    if (remainingMs <= 0) {
      this.#entries.delete(key);
      return undefined;
    }
    const answer = entry.answer as CacheableAnswer<T>;
    if (answer.kind === "ok") return { ...answer, ttl: Math.ceil(remainingMs / 1000) };
    return answer;
  }

  /** Stores `answer` for `ttlSeconds`; a TTL of 0 (or less) means "do not cache" (RFC 1035 §3.2.1). */
  set<T>(key: string, answer: CacheableAnswer<T>, ttlSeconds: number): void {
    if (!(ttlSeconds > 0)) return;
    this.#entries.delete(key);
    while (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { answer, expiresAt: this.#now() + ttlSeconds * 1000 });
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}

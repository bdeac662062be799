/**
 * Event ids: ULIDs (26 characters of Crockford base32: 48 bits of milliseconds, 80 random bits)
 * that are strictly increasing in the order events are committed, across every thread and process
 * writing to the store.
 *
 * Why: webhook endpoints read the event log with a cursor ("everything after id X"), so an event
 * committed later must never get a smaller id than one already committed, or a cursor could pass
 * it by. The store therefore makes ids inside its write transaction (one writer at a time): it
 * reads the newest id once, and every id of the transaction continues from it — a fresh ULID when
 * the clock moved past it, otherwise the previous id plus one. Only the first id of a transaction
 * costs random bytes; the rest are increments.
 */
import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const MAX_TIME = 2 ** 48 - 1;

/** A ULID for `time` (milliseconds) with a random tail. */
export function randomUlid(time: number): string {
  let t = Math.max(0, Math.min(MAX_TIME, Math.floor(time)));
  let head = "";
  for (let i = 0; i < 10; i++) {
    head = ALPHABET[t % 32]! + head;
    t = Math.floor(t / 32);
  }
  const bytes = randomBytes(16);
  let tail = "";
  for (let i = 0; i < 16; i++) tail += ALPHABET[bytes[i]! & 31]!;
  return head + tail;
}

/** The ULID's time part in milliseconds. */
export function ulidTime(id: string): number {
  let t = 0;
  for (let i = 0; i < 10; i++) t = t * 32 + ALPHABET.indexOf(id[i]!);
  return t;
}

/** `id` plus one (the random part carries into the time part only at its maximum). */
export function incrementUlid(id: string): string {
  // The common case (the last character is not the highest digit) without splitting the string.
  const tail = ALPHABET.indexOf(id[id.length - 1]!);
  if (tail < 31) return id.slice(0, -1) + ALPHABET[tail + 1]!;
  const chars = id.split("");
  for (let i = chars.length - 1; i >= 0; i--) {
    const v = ALPHABET.indexOf(chars[i]!);
    if (v < 31) {
      chars[i] = ALPHABET[v + 1]!;
      return chars.join("");
    }
    chars[i] = "0";
  }
  throw new Error("ULID overflow");
}

/**
 * A generator of ids greater than `last` (the newest id committed, or undefined for an empty
 * log): the first is a fresh ULID for `now` when that sorts after `last`, each next one the
 * previous plus one.
 */
export function eventIdsAfter(last: string | undefined, now: number): () => string {
  let previous: string | undefined;
  return () => {
    if (previous === undefined) {
      const fresh = randomUlid(now);
      previous = last === undefined || fresh > last ? fresh : incrementUlid(last);
    } else {
      previous = incrementUlid(previous);
    }
    return previous;
  };
}

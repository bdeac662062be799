/**
 * Lets go of the socket's read chunks soon after they are copied, so a large DATA holds about one
 * copy of the message, not two (issue 12's memory goal: a 34 MiB message ≤ 2× its size above idle).
 *
 * Why: every read of a server-side socket is a fresh 64 KiB ArrayBuffer (Node 20 offers `onread`,
 * one reused read buffer, only to sockets a program creates itself, not to accepted ones). A chunk
 * is garbage as soon as the data reader has copied it into the message's one buffer, but its bytes
 * live outside the JavaScript heap, so nothing prompts V8 to collect it: it waits for the next
 * young-generation collection, which small JavaScript allocations bring only slowly. Measured with
 * bench:memory (one 34.2 MiB message over plain SMTP): 30–38 MiB of chunks in the C heap at the
 * peak, 1.8–2.5× the message above idle RSS depending on when V8 happened to collect.
 *
 * What: after every READ_BYTES_PER_COLLECTION bytes read by all sessions of this process (a
 * process-wide count, so many slow sessions are covered as one fast one), one young-generation
 * collection (a scavenge, which does not touch the old generation: 0.06 ms median here, 3 ms at
 * most in 50 with a populated heap; a 34 MiB message makes four). Small-message
 * traffic reads that much rarely: 4,000 messages/s of 2 KB is one collection every second.
 *
 * How: V8's `gc()` exists only with --expose-gc; the flag is set for the moment of building one new
 * context, which then holds the function, and unset again, as jest-leak-detector does, so no other
 * code sees a global `gc`. Where that fails, nothing is collected early and nothing else changes.
 */

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** Bytes read between two collections: the garbage held at most, beside what is in flight. */
export const READ_BYTES_PER_COLLECTION = 8 * 1024 * 1024;

type GcFunction = (options?: { type?: "major" | "minor"; execution?: "sync" | "async" }) => void;

function obtainGc(): GcFunction | null {
  const existing = (globalThis as { gc?: GcFunction }).gc;
  if (typeof existing === "function") return existing;
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as unknown;
    return typeof gc === "function" ? (gc as GcFunction) : null;
  } catch {
    return null;
  } finally {
    setFlagsFromString("--no-expose-gc");
  }
}

let collectYoung: GcFunction | null | undefined;
let readSinceCollection = 0;
let collections = 0;

/** Counts bytes a session read from its socket; now and then collects the young generation. */
export function noteBytesRead(n: number): void {
  readSinceCollection += n;
  if (readSinceCollection < READ_BYTES_PER_COLLECTION) return;
  readSinceCollection = 0;
  if (collectYoung === undefined) collectYoung = obtainGc();
  if (collectYoung === null) return;
  collectYoung({ type: "minor" });
  collections++;
}

/** How many collections noteBytesRead() has made in this process (for tests). */
export function readChunkCollections(): number {
  return collections;
}

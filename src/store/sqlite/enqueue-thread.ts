/**
 * Commits spool batches on a thread of their own. better-sqlite3 is synchronous, and a durable
 * commit waits for fsync (about 1 ms here, often more under load): on the main thread that wait
 * would stop every SMTP session. On this thread the main thread keeps reading and answering while
 * a batch is being made durable, and whatever arrives meanwhile forms the next batch (the spool's
 * group commit), so the fsync is shared by more messages the busier the server is.
 *
 * Invariants: one batch at a time, in order; a batch's promise settles only after its transaction
 * committed (synchronous=FULL) or rolled back. If the thread dies, every pending and later batch
 * fails (the client gets 451 4.3.0) — nothing is acknowledged that was not committed.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { freeContent, ownsBuffer } from "../../message/headroom.js";
import type { NewMessage } from "../types.js";
import { configureConnection } from "./connection.js";
import { prepareEnqueue } from "./messages.js";

type Request = { readonly seq: number; readonly messages: readonly NewMessage[] } | { readonly close: true };
type Response = { readonly seq: number; readonly error?: { message: string; code?: string } };

export class EnqueueThread {
  private readonly worker: Worker;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private failure: Error | undefined;

  constructor(file: string, busyTimeoutMs: number) {
    this.worker = new Worker(new URL(import.meta.url), {
      workerData: { petrelEnqueueThread: true, file, busyTimeoutMs },
    });
    this.worker.on("message", (response: Response) => {
      const waiter = this.pending.get(response.seq);
      if (!waiter) return;
      this.pending.delete(response.seq);
      if (this.pending.size === 0) this.worker.unref();
      if (response.error)
        waiter.reject(Object.assign(new Error(response.error.message), { code: response.error.code }));
      else waiter.resolve();
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const waiter of this.pending.values()) waiter.reject(err);
      this.pending.clear();
    };
    this.worker.on("error", fail);
    this.worker.on("exit", (code) => fail(new Error(`enqueue thread exited (${code})`)));
    // The thread keeps the process alive only while a batch is in flight (and while closing).
    this.worker.unref();
  }

  enqueue(messages: readonly NewMessage[]): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(seq, { resolve, reject });
      this.worker.postMessage({ seq, messages } satisfies Request, transferableContents(messages));
    });
  }

  /** Closes the thread's connection cleanly (WAL checkpoint) and waits for the thread to end. */
  async close(): Promise<void> {
    if (this.failure) return;
    this.failure = new Error("store closed");
    this.worker.ref();
    const exited = new Promise((resolve) => this.worker.once("exit", resolve));
    this.worker.postMessage({ close: true } satisfies Request);
    await exited;
  }
}

/**
 * Large contents move to the commit thread instead of being copied (structured cloning would hold
 * a second copy of every byte until the batch commits): a content Buffer that alone owns its
 * ArrayBuffer (Buffer.concat's result for anything over 4 KiB, or a received message with its
 * headroom, message/headroom.ts) is transferred, and is empty on
 * this thread afterwards — callers of enqueueMessages() must not read the content after the call.
 * Small contents live in Node's shared Buffer pool and are cloned, as before.
 */
const TRANSFER_MIN_BYTES = 64 * 1024;
function transferableContents(messages: readonly NewMessage[]): ArrayBuffer[] {
  const list: ArrayBuffer[] = [];
  for (const m of messages) {
    const c = m.content;
    if (
      c.byteLength >= TRANSFER_MIN_BYTES &&
      c.buffer instanceof ArrayBuffer &&
      ((c.byteOffset === 0 && c.buffer.byteLength === c.byteLength) || ownsBuffer(c)) &&
      !list.includes(c.buffer)
    )
      list.push(c.buffer);
  }
  return list;
}

// The thread's side: its own connection to the same file, the same insert code.
if (
  !isMainThread &&
  parentPort &&
  (workerData as { petrelEnqueueThread?: boolean } | null)?.petrelEnqueueThread
) {
  const { file, busyTimeoutMs } = workerData as { file: string; busyTimeoutMs: number };
  const db = new Database(file);
  configureConnection(db, busyTimeoutMs);
  const insertBatch = prepareEnqueue(db);
  const port = parentPort;
  port.on("message", (request: Request) => {
    if ("close" in request) {
      db.close();
      port.close();
      return;
    }
    // Structured cloning turns Buffers into Uint8Arrays; better-sqlite3 binds those as BLOBs too,
    // but .length must stay the byte length, which it does.
    let response: Response;
    try {
      insertBatch(request.messages);
      response = { seq: request.seq };
    } catch (err) {
      const e = err as { message?: string; code?: string };
      response = { seq: request.seq, error: { message: e.message ?? String(err), code: e.code } };
    }
    // Committed (or refused): the contents' memory goes back now, not at a garbage collection
    // this thread (which allocates little) would run only every several large messages.
    for (const m of request.messages) freeContent(m.content);
    port.postMessage(response);
  });
}

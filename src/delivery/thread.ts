/**
 * Delivery on its own thread: `petrel serve` runs the delivery engine in a worker thread with its
 * own store connection, so accepting mail (the main event loop, whose commits block it for their
 * fsync) and delivering it use both cores instead of taking turns on one.
 *
 * Protocol with the parent (plain messages): the parent starts the thread with the configuration
 * as workerData; the thread answers {type: "started"} or {type: "failed", message}; the parent
 * sends {type: "stop", graceMs} and the thread answers {type: "stopped"} once transactions in
 * flight are done, leases given back and its store closed. While it runs, the thread sends
 * {type: "stats", held} every second (recipients in flight, for the node's heartbeat).
 *
 * Invariants: the thread owns its store connection and closes it before "stopped"; a thread that
 * dies unexpectedly loses nothing: its leases expire (or are recovered at the next start) and the
 * recipients are due again.
 */
import { Worker } from "node:worker_threads";
import type { PetrelConfig } from "../config/schema.js";
import type { Logger } from "../log.js";

export type ToThread = { readonly type: "stop"; readonly graceMs: number };
export type FromThread =
  | { readonly type: "started" }
  | { readonly type: "failed"; readonly message: string }
  | { readonly type: "stopped" }
  | { readonly type: "stats"; readonly held: number };

export interface DeliveryThread {
  /** Stops claiming, lets transactions in flight finish within graceMs, gives back leases. */
  stop(graceMs: number): Promise<void>;
  /** Recipients claimed and not yet recorded (at most a second old on a thread). */
  inFlight(): number;
}

/** Starts the delivery engine on a worker thread; resolves once it runs. */
export function startDeliveryThread(config: PetrelConfig, logger: Logger): Promise<DeliveryThread> {
  const worker = new Worker(new URL("./thread-entry.js", import.meta.url), { workerData: config });
  let stopped: (() => void) | undefined;
  let held = 0;
  const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
  return new Promise<DeliveryThread>((resolve, reject) => {
    worker.on("error", (err) => {
      logger.error({ err }, "delivery thread failed");
      reject(err);
    });
    worker.on("message", (message: FromThread) => {
      if (message.type === "started") {
        resolve({
          inFlight: () => held,
          async stop(graceMs) {
            const done = new Promise<void>((res) => {
              stopped = res;
            });
            worker.postMessage({ type: "stop", graceMs } satisfies ToThread);
            // A thread that already died has nothing to stop.
            await Promise.race([done, exited]);
            await worker.terminate();
          },
        });
      } else if (message.type === "failed") {
        reject(new Error(message.message));
        void worker.terminate();
      } else if (message.type === "stopped") {
        stopped?.();
      } else if (message.type === "stats") {
        held = message.held;
      }
    });
    void exited.then((code) => reject(new Error(`delivery thread exited (${code}) before it started`)));
  });
}

/**
 * Entry point of the delivery thread (started by thread.ts, never imported elsewhere): opens its
 * own store connection and logger from the configuration it was given, runs the delivery engine,
 * and stops it when the parent says so. See thread.ts for the protocol.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { PetrelConfig } from "../config/schema.js";
import { createLogger } from "../log.js";
import { openStore } from "../store/open.js";
import { startDelivery } from "./engine.js";
import type { FromThread, ToThread } from "./thread.js";

async function runThread(): Promise<void> {
  const port = parentPort!;
  const config = workerData as PetrelConfig;
  const logger = createLogger(config);
  const store = await openStore(config);
  let engine: Awaited<ReturnType<typeof startDelivery>>;
  try {
    engine = await startDelivery({ config, store, logger });
  } catch (err) {
    await store.close();
    port.postMessage({
      type: "failed",
      message: err instanceof Error ? err.message : String(err),
    } satisfies FromThread);
    return;
  }
  port.postMessage({ type: "started" } satisfies FromThread);
  const stats = setInterval(() => {
    port.postMessage({ type: "stats", held: engine.worker.held } satisfies FromThread);
  }, 1000);
  stats.unref();
  port.on("message", (message: ToThread) => {
    if (message.type !== "stop") return;
    clearInterval(stats);
    void (async () => {
      await engine.stop(message.graceMs);
      await store.close();
      logger.flush();
      port.postMessage({ type: "stopped" } satisfies FromThread);
      port.close();
    })();
  });
}

if (parentPort) await runThread();

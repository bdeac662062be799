/**
 * Builds the delivery engine from the configuration: DNS resolver (dns.servers), routes,
 * dispatcher and worker, wired explicitly. `petrel serve` starts it from src/app/petrel.ts; tests
 * start it in-process on a store with an injected clock.
 */
import { readFileSync } from "node:fs";
import { inDataDir } from "../config/load.js";
import type { PetrelConfig } from "../config/schema.js";
import { createResolver } from "../dns/resolver.js";
import type { DnsResolver } from "../dns/types.js";
import type { Logger } from "../log.js";
import { DeliveryWorker } from "../queue/worker.js";
import type { Store } from "../store/types.js";
import { Dispatcher } from "./dispatcher.js";
import { compileRoutes } from "./routes.js";

export interface DeliveryEngine {
  readonly worker: DeliveryWorker;
  readonly dispatcher: Dispatcher;
  /** Stops claiming, finishes transactions in flight within graceMs, gives back leases. */
  stop(graceMs: number): Promise<void>;
}

export interface EngineOptions {
  readonly config: Pick<PetrelConfig, "delivery" | "dns" | "hostname" | "dataDir">;
  readonly store: Store;
  readonly logger: Logger;
  /** Clock for due times, leases and backoff (tests pass a controllable one). */
  readonly now?: () => number;
  readonly random?: () => number;
  /** A resolver to use instead of one built from `dns` (tests). */
  readonly resolver?: DnsResolver;
}

export async function startDelivery(options: EngineOptions): Promise<DeliveryEngine> {
  const { config, store, logger } = options;
  const now = options.now ?? Date.now;
  const log = logger.child({ component: "delivery" });
  const resolver =
    options.resolver ??
    createResolver({ servers: config.dns.servers, timeoutMs: config.dns.timeoutMs, tries: config.dns.tries });
  const ca = config.delivery.tlsCaFile
    ? readFileSync(inDataDir(config as PetrelConfig, config.delivery.tlsCaFile), "utf8")
    : undefined;
  const onError = (err: unknown) => log.warn({ err }, "could not update destination backoff");
  const dispatcher = new Dispatcher({
    config: config.delivery,
    resolver,
    hostname: config.hostname,
    logger: log,
    ca,
    now,
    random: options.random,
    onSuspend: (domains, until, failures, lastError) => {
      for (const domain of domains) {
        store.setDestinationBackoff({ domain, until, failures, lastError }).catch(onError);
      }
    },
    onRecover: (domains) => {
      for (const domain of domains) store.setDestinationBackoff({ domain, until: null }).catch(onError);
    },
  });
  const worker = new DeliveryWorker({
    store,
    dispatcher,
    routes: compileRoutes(config.delivery),
    config: config.delivery,
    nodeId: config.hostname,
    logger: log,
    now,
    random: options.random,
  });
  await worker.start();
  log.info(
    {
      owner: worker.owner,
      dns: "servers" in resolver ? (resolver as { servers: unknown }).servers : undefined,
    },
    "delivery started",
  );
  return {
    worker,
    dispatcher,
    stop: (graceMs) => worker.stop(graceMs),
  };
}

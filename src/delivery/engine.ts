/**
 * Builds the delivery engine from the configuration: DNS resolver (dns.servers), routes,
 * dispatcher and worker, wired explicitly. `petrel serve` starts it from src/app/petrel.ts; tests
 * start it in-process on a store with an injected clock.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createClassifier } from "../bounces/classify.js";
import { createFailureNotifier } from "../bounces/notify.js";
import { createReturnPaths } from "../bounces/return-path.js";
import { VerpCodec } from "../bounces/verp.js";
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
  /** Issue 5: without `bounces` and `domains` (tests' rigs), the built-in classification and no VERP. */
  readonly config: Pick<PetrelConfig, "delivery" | "dns" | "hostname" | "dataDir"> &
    Partial<Pick<PetrelConfig, "bounces" | "domains" | "queue">>;
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
  // ── Bounces (issue 5): classification, VERP return paths, DSNs to senders ──
  const bounces = config.bounces;
  const returnPaths =
    bounces?.verp && config.domains
      ? createReturnPaths({
          store,
          codec: await verpCodec(store),
          subdomain: config.domains.returnPath.subdomain,
        })
      : undefined;
  const onFailed = bounces?.notifySender
    ? createFailureNotifier({
        store,
        hostname: config.hostname,
        lifetimeMs: config.queue?.maxLifetimeMs ?? 72 * 3600_000,
        now,
      })
    : undefined;
  // ── end bounces ──
  const worker = new DeliveryWorker({
    store,
    dispatcher,
    routes: compileRoutes(config.delivery),
    config: config.delivery,
    nodeId: config.hostname,
    logger: log,
    now,
    random: options.random,
    classify: createClassifier(bounces?.rules ?? []),
    returnPaths,
    onFailed,
  });
  await worker.start();
  // Cluster (PostgreSQL): another node's commit made work due; look now rather than at the next poll.
  const unsubscribe = store.onDueWork?.(() => worker.poke());
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
    stop: (graceMs) => {
      unsubscribe?.();
      return worker.stop(graceMs);
    },
  };
}

/** The VERP codec with the node's key, generated into the store by whichever process needs it first. */
export async function verpCodec(store: Store): Promise<VerpCodec> {
  const secret = await store.nodeSecret("verp-key", () => randomBytes(32).toString("base64"));
  return new VerpCodec(Buffer.from(secret, "base64"));
}

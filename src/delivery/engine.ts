/**
 * Builds the delivery engine from the configuration: DNS resolver (dns.servers), routes,
 * dispatcher and worker, wired explicitly. `petrel serve` starts it from src/app/petrel.ts; tests
 * start it in-process on a store with an injected clock.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createClassifier } from "../bounces/classify.js";
import { dsnMessage, type FailedRecipient, type OriginalMessage } from "../bounces/notify.js";
import { createReturnPaths } from "../bounces/return-path.js";
import { VerpCodec } from "../bounces/verp.js";
import { inDataDir } from "../config/load.js";
import type { PetrelConfig } from "../config/schema.js";
import { createResolver } from "../dns/resolver.js";
import type { DnsResolver } from "../dns/types.js";
import type { Logger } from "../log.js";
import { DeliveryWorker } from "../queue/worker.js";
import type { Store, ThrottleChangeRecord } from "../store/types.js";
import { Dispatcher, type ThrottleEvent } from "./dispatcher.js";
import { compileRoutes } from "./routes.js";
import { StoreSlots } from "./slots.js";
import { describeLimits } from "./throttle.js";

export interface DeliveryEngine {
  readonly worker: DeliveryWorker;
  readonly dispatcher: Dispatcher;
  /** Cluster-wide connection slots (PostgreSQL store only). */
  readonly slots: StoreSlots | undefined;
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
  const bounces = config.bounces;
  const classify = createClassifier(bounces?.rules ?? []);
  // Cluster (issue 8 item 4): on PostgreSQL every connection holds one of its destination's slots,
  // shared by every node. SQLite has one serve per file: the dispatcher's own counts are the cap.
  const slots =
    store.kind === "postgres"
      ? new StoreSlots({
          store,
          owner: `${config.hostname}:${process.pid}:${randomBytes(4).toString("hex")}`,
          leaseMs: config.delivery.slotLeaseMs,
          logger: log,
          // The wall clock, not a test's clock: slot leases are shared with other processes.
        })
      : undefined;
  slots?.start();
  const dispatcher = new Dispatcher({
    config: config.delivery,
    resolver,
    hostname: config.hostname,
    logger: log,
    ca,
    now,
    random: options.random,
    slots,
    onSuspend: (domains, until, failures, lastError) => {
      for (const domain of domains) {
        store.setDestinationBackoff({ domain, until, failures, lastError }).catch(onError);
      }
    },
    onRecover: (domains) => {
      for (const domain of domains) store.setDestinationBackoff({ domain, until: null }).catch(onError);
    },
    // Issue 11: replies classed `reputation` ("[TSS04] … temporarily deferred", "4.7.650 …") throttle.
    isThrottle: (reply) => classify(reply).class === "reputation",
    onThrottle: (event) => {
      store.recordThrottle(throttleRecord(config.hostname, event)).catch((err: unknown) => {
        log.warn({ err, destination: event.destination }, "could not record a throttle change");
      });
    },
  });
  // This node's throttles lived in the memory of its previous run.
  await store.clearThrottles(config.hostname);
  // ── Bounces (issue 5): classification, VERP return paths, DSNs to senders ──
  const returnPaths =
    bounces?.verp && config.domains
      ? createReturnPaths({
          store,
          codec: await verpCodec(store),
          subdomain: config.domains.returnPath.subdomain,
        })
      : undefined;
  const dsn = { hostname: config.hostname, lifetimeMs: config.queue?.maxLifetimeMs ?? 72 * 3600_000, now };
  const notification = bounces?.notifySender
    ? (original: OriginalMessage, failed: readonly FailedRecipient[]) => dsnMessage(dsn, original, failed)
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
    classify,
    returnPaths,
    notification,
    // Only a store that wakes the worker (onDueWork) lets idle claims space out.
    ...(store.onDueWork ? { idlePollMaxMs: config.delivery.idlePollMaxMs } : {}),
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
    slots,
    stop: async (graceMs) => {
      unsubscribe?.();
      await worker.stop(graceMs);
      await slots?.stop();
    },
  };
}

/** The VERP codec with the node's key, generated into the store by whichever process needs it first. */
export async function verpCodec(store: Store): Promise<VerpCodec> {
  const secret = await store.nodeSecret("verp-key", () => randomBytes(32).toString("base64"));
  return new VerpCodec(Buffer.from(secret, "base64"));
}

/** A dispatcher throttle change as the store records it (a row and a `throttled` event). */
export function throttleRecord(node: string, e: ThrottleEvent): ThrottleChangeRecord {
  const name = e.provider ?? e.destination;
  const description =
    e.kind === "restored"
      ? `${name}: back to its configured limits (${describeLimits(e.to)})`
      : `${name}: ${e.kind} from ${describeLimits(e.from)} to ${describeLimits(e.to)}` +
        (e.holdUntil !== null ? `; no step up before ${new Date(e.holdUntil).toISOString()}` : "");
  return {
    node,
    destination: e.destination,
    provider: e.provider,
    domains: e.domains,
    kind: e.kind,
    limits: e.to,
    configured: e.configured,
    reply: e.throttleReply,
    since: e.since,
    messageId: e.messageId,
    recipient: e.recipient,
    cause: e.reply,
    at: e.at,
    description,
  };
}

/**
 * The composition root: builds every part from the configuration and wires them explicitly
 * (no registries, no import-time side effects). `petrel serve` and the tests start Petrel here.
 */

import { type BounceListener, startBounces } from "../bounces/listener.js";
import { inDataDir } from "../config/load.js";
import type { PetrelConfig } from "../config/schema.js";
import { compileNetworks, compileTrustedNetworks, smtpWorkerCount } from "../config/schema.js";
import { startDelivery } from "../delivery/engine.js";
import { type DeliveryThread, startDeliveryThread } from "../delivery/thread.js";
import { createResolver } from "../dns/resolver.js";
import { startDomainRechecker } from "../domains/recheck.js";
import { DomainsService } from "../domains/service.js";
import { createMessageSigning, type SigningStats } from "../domains/signer.js";
import { UsageError } from "../errors.js";
import { startEventRetention } from "../events/retention.js";
import { WebhookDispatcher } from "../events/webhook-dispatcher.js";
import { HttpMetrics } from "../http/metrics.js";
import { httpTls, type RunningHttp, startHttp } from "../http/server.js";
import type { Logger, LogStats } from "../log.js";
import { type AuthGuard, AuthThrottle } from "../policy/auth-throttle.js";
import { Spool } from "../queue/spool.js";
import { BindError, SmtpServer } from "../smtp/server.js";
import type { ListenerSpec } from "../smtp/types.js";
import { withLookupCache } from "../store/lookup-cache.js";
import { openStore } from "../store/open.js";
import type { Store } from "../store/types.js";
import { loadCertificate } from "./certificate.js";
import { Idempotency } from "./idempotency.js";
import { jobTurns } from "./job-turns.js";
import { NodeRegistry } from "./node-registry.js";
import { lockDatabase } from "./serve-lock.js";
import { SharedAuthThrottle } from "./shared-auth-throttle.js";
import { createSubmissionHooks, type Submitter } from "./submission.js";

export interface StartOptions {
  /** The counters of the logger's sink (src/log-sink.ts), passed on for /metrics. */
  readonly logStats?: LogStats;
}

export interface RunningPetrel {
  /** Counters for /metrics: log lines dropped, mail refused because it could not be signed. */
  readonly counters: PetrelCounters;
  readonly store: Store;
  readonly spool: Spool;
  readonly smtp: SmtpServer<Submitter>;
  /** Delivery workers (issue 3); undefined when delivery.enabled is false. */
  readonly delivery: DeliveryThread | undefined;
  /** Webhook dispatcher (issue 5); undefined when events.webhooks.enabled is false. */
  readonly webhooks: WebhookDispatcher | undefined;
  /** The bounce listener (issue 5); undefined when off or its port could not be bound. */
  readonly bounces: BounceListener | undefined;
  /** The HTTP API (issue 9); undefined when http.enabled is false or its port could not be bound. */
  readonly http: RunningHttp | undefined;
  /** This node's row in the node registry and the store's reachability (issue 8 item 5). */
  readonly node: NodeRegistry;
  /** Stops accepting, lets DATA transactions finish within the grace period, closes the store. */
  close(): Promise<void>;
}

/** Where to change a listener's port, for the one-line bind error. */
const PORT_OPTIONS: Record<string, string> = {
  submission: "--submission-port, smtp.submission.port or PETREL_SMTP__SUBMISSION__PORT",
  submissions: "--tls-port, smtp.submissions.port or PETREL_SMTP__SUBMISSIONS__PORT",
  alternate: "--alternate-port, smtp.alternate.port or PETREL_SMTP__ALTERNATE__PORT",
};

const KEY_USE_FLUSH_MS = 30_000;

export interface PetrelCounters {
  readonly log: LogStats | undefined;
  readonly signing: SigningStats;
}

export async function startPetrel(
  config: PetrelConfig,
  logger: Logger,
  options: StartOptions = {},
): Promise<RunningPetrel> {
  // One serve per SQLite database (issue 13): taken before the store is opened, held until close.
  const lock =
    config.store.driver === "sqlite" ? lockDatabase(inDataDir(config, config.store.sqlite.file)) : undefined;
  let store: Store;
  try {
    // Issue 12: the per-message lookups from memory while nothing changed (lookup-cache.ts).
    store = withLookupCache(await openStore(config, { forServer: true }));
  } catch (err) {
    lock?.release();
    throw err;
  }
  try {
    const running = await startWithStore(config, logger, store, options);
    const close = running.close;
    let closing: Promise<void> | undefined;
    return {
      ...running,
      close: () => {
        closing ??= close().finally(() => lock?.release());
        return closing;
      },
    };
  } catch (err) {
    await store.close();
    lock?.release();
    throw err;
  }
}

async function startWithStore(
  config: PetrelConfig,
  logger: Logger,
  store: Store,
  options: StartOptions,
): Promise<RunningPetrel> {
  const trusted = [];
  for (const network of compileTrustedNetworks(config)) {
    const account = await store.getAccount(network.account);
    if (!account) {
      throw new UsageError(
        `auth.trustedNetworks: no account named ${network.account} (create it with: petrel accounts create ${network.account})`,
      );
    }
    trusted.push({ ...network, accountId: account.id });
  }
  const certificate = await loadCertificate(config, logger);
  const spool = new Spool(store, {
    maxBatch: config.queue.maxBatch,
    delayMs: config.queue.groupCommitDelayMs,
  });
  const authRule = {
    maxFailures: config.auth.maxFailures,
    windowMs: config.auth.failureWindowMs,
    lockoutMs: config.auth.lockoutMs,
  };
  // Issue 8 item 4: on PostgreSQL an address's AUTH failures count across every node.
  const shared =
    store.kind === "postgres"
      ? new SharedAuthThrottle({ store, rule: authRule, logger: logger.child({ component: "auth" }) })
      : undefined;
  shared?.start();
  const throttle: AuthGuard = shared ?? new AuthThrottle(authRule);

  // "Last used" is bookkeeping, not worth an fsync per AUTH: coalesce and write every 30 s.
  const keyUses = new Map<number, number>();
  const flushKeyUses = async () => {
    if (keyUses.size === 0) return;
    const uses = [...keyUses].map(([id, at]) => ({ id, at }));
    keyUses.clear();
    await store
      .recordApiKeyUse(uses)
      .catch((err: unknown) => logger.warn({ err }, "could not record key use"));
  };
  const housekeeping = setInterval(() => {
    throttle.sweep();
    void flushKeyUses();
  }, KEY_USE_FLUSH_MS);
  housekeeping.unref();

  // Sender domains (issue 4): sign at accept time; re-check verified domains' DNS periodically.
  // The check's resolver does not cache: a re-check must see what is published now.
  const domains = new DomainsService({
    store,
    config,
    resolver: createResolver({
      servers: config.dns.servers,
      timeoutMs: config.dns.timeoutMs,
      tries: config.dns.tries,
      cache: false,
    }),
  });
  const signing = createMessageSigning(store);
  // Issue 9: metrics count SMTP and HTTP accepts here, and every thread's outcomes from the event log.
  let inbound: (() => number) | undefined;
  const metrics = new HttpMetrics({
    store,
    inboundConnections: () => inbound?.() ?? 0,
    log: options.logStats,
    signing: signing.stats,
  });
  await metrics.start();
  const onKeyUsed = (id: number, at: number) => keyUses.set(id, at);
  // Issue 8 item 5: the node's registry row; while the store is unreachable SMTP answers 421.
  let delivery: DeliveryThread | undefined;
  const node = new NodeRegistry({
    store,
    config,
    logger,
    connections: () => inbound?.() ?? 0,
    deliveries: () => delivery?.inFlight() ?? 0,
  });
  const idempotency = new Idempotency(store, (err) =>
    logger.error({ err }, "could not keep an idempotency key"),
  );
  const hooks = createSubmissionHooks({
    config,
    store,
    spool,
    throttle,
    trusted,
    logger,
    onKeyUsed,
    signing,
    metrics,
    idempotency,
    availability: node,
  });
  const listeners: ListenerSpec[] = [];
  const { host } = config.smtp;
  const { submission, submissions, alternate } = config.smtp;
  if (submission.enabled)
    listeners.push({
      name: "submission",
      host,
      port: submission.port,
      mode: "starttls",
      proxyProtocol: submission.proxyProtocol,
    });
  if (submissions.enabled)
    listeners.push({
      name: "submissions",
      host,
      port: submissions.port,
      mode: "implicit",
      proxyProtocol: submissions.proxyProtocol,
    });
  if (alternate.enabled)
    listeners.push({
      name: "alternate",
      host,
      port: alternate.port,
      mode: "starttls",
      proxyProtocol: alternate.proxyProtocol,
    });
  if (listeners.length === 0)
    throw new UsageError("no SMTP listener is enabled (smtp.submission, smtp.submissions, smtp.alternate)");

  const smtp = new SmtpServer<Submitter>({
    hostname: config.hostname,
    listeners,
    tls: { key: certificate.key, cert: certificate.cert, minVersion: config.smtp.tls.minVersion },
    allowInsecureAuth: config.smtp.allowInsecureAuth,
    // With longLines: reencode the submission hooks fix long lines (src/message/normalize.ts), so
    // the DATA reader must not refuse them; the size limit still bounds what it holds.
    limits: {
      ...config.smtp.limits,
      maxLineLength: config.smtp.limits.longLines === "reject" ? config.smtp.limits.maxLineLength : 0,
    },
    hooks,
    logger,
    proxyProtocol: { trusted: compileNetworks(config.smtp.proxyProtocol.trustedNetworks) },
    // Issue 12 item 1: sessions on several event loops; hooks and commit stay here.
    workers: smtpWorkerCount(config),
  });
  try {
    await smtp.listen();
  } catch (err) {
    if (err instanceof BindError) {
      const why =
        err.code === "EADDRINUSE"
          ? "the port is already in use"
          : err.code === "EACCES"
            ? "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            : err.code;
      throw new UsageError(
        `cannot listen on ${err.host}:${err.port} for ${err.listener}: ${why}; change it with ${PORT_OPTIONS[err.listener] ?? "the configuration"}`,
      );
    }
    throw err;
  }
  for (const a of smtp.addresses) logger.info({ listener: a.name, port: a.port }, "listening");
  inbound = () => smtp.connectionCount();

  // ── Bounces (issue 5): the inbound listener for VERP return paths (bounces.listener) ──
  let bounces: BounceListener | undefined;
  try {
    bounces = await startBounces(
      config,
      store,
      logger,
      { key: certificate.key, cert: certificate.cert },
      () => node.refusal(),
    );
  } catch (err) {
    await smtp.close(0);
    throw err;
  }
  // ── end bounces ──

  // ── Delivery (issue 3): workers claim due recipients with leases and deliver them ──
  // On its own thread with its own store connection (delivery.thread), or in-process.
  if (config.delivery.enabled) {
    try {
      if (config.delivery.thread) delivery = await startDeliveryThread(config, logger);
      else {
        const engine = await startDelivery({ config, store, logger });
        delivery = { stop: (graceMs) => engine.stop(graceMs), inFlight: () => engine.worker.held };
      }
    } catch (err) {
      await smtp.close(0);
      throw err;
    }
  }
  // ── end delivery ──
  // ── Events and webhooks (issue 5): POST new events to endpoints; delete old events ──
  // Started after the listeners and delivery, stopped after them (below) so events written by
  // the last transactions still go out when the grace period allows.
  let webhooks: WebhookDispatcher | undefined;
  if (config.events.webhooks.enabled) {
    webhooks = new WebhookDispatcher({
      store,
      config: config.events.webhooks,
      logger: logger.child({ component: "webhooks" }),
      node: config.hostname,
    });
    webhooks.start();
  }
  // Issue 8 item 4: periodic jobs take turns through the store, once per cluster.
  const turns = jobTurns(store, config.hostname, logger);
  const retention = startEventRetention(store, config.events, logger, turns);
  // ── end events and webhooks ──
  const rechecker = startDomainRechecker(domains, store, logger, {
    intervalMs: config.domains.recheckIntervalMs,
    turns,
  });
  // ── HTTP API (issue 9): the same services and accept path; a taken port is one warning ──
  let ready = false;
  let http: RunningHttp | undefined;
  if (config.http.enabled) {
    try {
      http = await startHttp(
        {
          config,
          store,
          spool,
          logger,
          signing,
          idempotency,
          throttle,
          onKeyUsed,
          metrics,
          ctx: { store, config },
          notReady: () => (ready ? node.notReady() : "starting"),
        },
        logger,
        httpTls(config, { key: certificate.key, cert: certificate.cert }),
      );
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "EADDRINUSE" && code !== "EACCES") {
        await smtp.close(0);
        await delivery?.stop(0);
        await webhooks?.stop(0);
        await bounces?.close(0);
        throw err;
      }
      logger.warn(
        { host: config.http.host, port: config.http.port, code },
        "cannot listen for the HTTP API; running without it (change http.port or PETREL_HTTP__PORT)",
      );
    }
  }
  // ── end HTTP API ──
  try {
    await node.start();
  } catch (err) {
    await http?.close();
    await smtp.close(0);
    await delivery?.stop(0);
    await webhooks?.stop(0);
    await bounces?.close(0);
    throw err;
  }
  ready = true;

  let closing: Promise<void> | undefined;
  return {
    counters: { log: options.logStats, signing: signing.stats },
    store,
    spool,
    smtp,
    delivery,
    webhooks,
    bounces,
    http,
    node,
    close() {
      closing ??= (async () => {
        // Drain (issue 8 item 7): new sessions get 421 4.3.2 and the others see `draining`.
        await node.drain();
        ready = false;
        clearInterval(housekeeping);
        await shared?.stop();
        await http?.close();
        await rechecker.stop();
        await smtp.close(config.smtp.shutdownGraceMs);
        await bounces?.close(config.smtp.shutdownGraceMs);
        await spool.drain();
        // Transactions in flight may finish within the grace period; unsent work is given back.
        await delivery?.stop(config.smtp.shutdownGraceMs);
        // Events and webhooks (issue 5): POSTs in flight may finish; unsent events stay in the log.
        await retention.stop();
        await webhooks?.stop(Math.min(config.smtp.shutdownGraceMs, config.events.webhooks.timeoutMs));
        await flushKeyUses();
        // Gone from `petrel nodes`: its leases are given back and its sessions closed.
        await node.stop();
        await store.close();
        logger.info("stopped");
      })();
      return closing;
    },
  };
}

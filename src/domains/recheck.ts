/**
 * `serve`'s periodic re-check of sender domains (issue 4): every domain that is verified, failing
 * or waiting for a rotated key's record is looked up again once its last check is older than
 * `domains.recheckIntervalMs` (default daily). A domain that stops matching is logged at warn and
 * the change recorded as a domain event (by the store, with the check); one that recovers, or
 * switches to a rotated key, is logged at info.
 *
 * Due-ness is kept in the store (last_checked_at), so a restart neither re-checks everything at
 * once nor forgets a domain; a CLI `verify` in between counts as a check.
 * Cluster (issue 8 item 4): with `turns`, a timer tick runs a pass only if no node has run one
 * within the last ~tick (src/app/job-turns.ts), so the nodes do not look up the same domains
 * together; runOnce() (tests, operators) always runs.
 * Invariants: one pass at a time; a failure of one domain's check never stops the others; the
 * timer is unref'd and stop() waits for a running pass.
 */
import type { JobTurns } from "../app/job-turns.js";
import type { Logger } from "../log.js";
import type { Store } from "../store/types.js";
import type { DomainsService } from "./service.js";

export interface RecheckOptions {
  readonly intervalMs: number;
  readonly now?: () => number;
  /** Cluster: ticks take turns with the other nodes. */
  readonly turns?: JobTurns;
}

export interface DomainRechecker {
  /** One pass over the due domains; resolves when it is done. */
  runOnce(): Promise<void>;
  stop(): Promise<void>;
}

/** The timer never waits longer than this between looks at the store, whatever the interval. */
const MAX_TICK_MS = 3600_000;

export function startDomainRechecker(
  service: DomainsService,
  store: Pick<Store, "listDomainsToRecheck">,
  logger: Logger,
  options: RecheckOptions,
): DomainRechecker {
  const now = options.now ?? Date.now;
  let running: Promise<void> | undefined;
  let stopped = false;

  async function pass(): Promise<void> {
    const due = await store.listDomainsToRecheck(now() - options.intervalMs);
    for (const domain of due) {
      if (stopped) return;
      try {
        const report = await service.verify(domain);
        const { previous, status, activated, retired } = report.change;
        const failed = report.checks
          .filter((c) => c.required && c.result !== "match")
          .map((c) => `${c.purpose} ${c.name}: ${c.result}`);
        if (status === "failing" && previous !== "failing") {
          logger.warn({ domain, previous, status, failed }, "sender domain stopped matching its DNS records");
        } else if (status !== previous) {
          logger.info({ domain, previous, status }, "sender domain status changed");
        } else if (report.outcome === "unknown") {
          logger.warn({ domain, failed }, "sender domain re-check could not complete (DNS)");
        }
        if (activated.length > 0) logger.info({ domain, activated, retired }, "DKIM key switched");
      } catch (err) {
        logger.error({ domain, err }, "sender domain re-check failed");
      }
    }
  }

  function runOnce(turn?: () => Promise<unknown>): Promise<void> {
    running ??= (turn ? turn() : pass())
      .then(() => undefined)
      .catch((err: unknown) => logger.error({ err }, "sender domain re-check failed"))
      .finally(() => {
        running = undefined;
      });
    return running;
  }

  const tick = Math.max(1, Math.min(options.intervalMs, MAX_TICK_MS));
  const { turns } = options;
  const onTick = () => void runOnce(turns ? () => turns.run("domains.recheck", tick * 0.9, pass) : undefined);
  const timer = options.intervalMs > 0 ? setInterval(onTick, tick) : undefined;
  timer?.unref();

  return {
    runOnce: () => runOnce(),
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      await running;
    },
  };
}

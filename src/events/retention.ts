/**
 * Event log retention: `serve` deletes events older than `events.retentionDays` once an hour (and
 * once shortly after start). Events an active webhook has not been given yet are kept whatever
 * their age (Store.pruneEvents), so retention never loses a webhook delivery.
 *
 * Cluster (issue 8 item 4): with `turns`, each hourly tick runs only if no node has run it in the
 * last ~hour (src/app/job-turns.ts), so N nodes prune once an hour, not N times. The same pass
 * forgets rows of the cluster tables nothing has used for a day (free connection slots, AUTH
 * failure counts), so it runs even when events are kept forever.
 */

import type { JobTurns } from "../app/job-turns.js";
import type { EventsConfig } from "../config/events-schema.js";
import type { Logger } from "../log.js";
import type { Store } from "../store/types.js";

const DAY_MS = 86_400_000;
const EVERY_MS = 3_600_000;
const FIRST_AFTER_MS = 60_000;

export interface EventRetention {
  stop(): Promise<void>;
}

export function startEventRetention(
  store: Store,
  config: Pick<EventsConfig, "retentionDays">,
  logger: Logger,
  turns?: JobTurns,
): EventRetention {
  let running: Promise<unknown> | undefined;
  const pass = async () => {
    if (config.retentionDays > 0) {
      const deleted = await store.pruneEvents(Date.now() - config.retentionDays * DAY_MS);
      if (deleted > 0) logger.info({ deleted, retentionDays: config.retentionDays }, "old events deleted");
    }
    await store.pruneSlots(Date.now() - DAY_MS);
    await store.pruneAuthFailures(Date.now() - DAY_MS);
  };
  const prune = () => {
    // A little under the hour: a node whose timer fires early still takes its turn.
    running ??= (turns ? turns.run("retention", EVERY_MS * 0.9, pass) : pass())
      .catch((err: unknown) => logger.warn({ err }, "could not delete old events"))
      .finally(() => {
        running = undefined;
      });
  };
  const first = setTimeout(prune, FIRST_AFTER_MS);
  const timer = setInterval(prune, EVERY_MS);
  first.unref();
  timer.unref();
  return {
    async stop() {
      clearTimeout(first);
      clearInterval(timer);
      await running;
    },
  };
}

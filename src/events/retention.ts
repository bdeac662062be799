/**
 * Event log retention: `serve` deletes events older than `events.retentionDays` once an hour (and
 * once shortly after start). Events an active webhook has not been given yet are kept whatever
 * their age (Store.pruneEvents), so retention never loses a webhook delivery.
 */
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
): EventRetention {
  if (config.retentionDays <= 0) return { stop: async () => {} };
  let running: Promise<void> | undefined;
  const prune = () => {
    running ??= store
      .pruneEvents(Date.now() - config.retentionDays * DAY_MS)
      .then((deleted) => {
        if (deleted > 0) logger.info({ deleted, retentionDays: config.retentionDays }, "old events deleted");
      })
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

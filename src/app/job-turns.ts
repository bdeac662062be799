/**
 * Periodic jobs once per cluster (issue 8 item 4): every node keeps its timers, and each tick asks
 * the store whether it is this node's turn (Store.claimJob: nobody is running the job and its last
 * start is at least `everyMs` ago). The job then runs under a lease renewed every third of
 * JOB_LEASE_MS and given back when it ends; if its node dies mid-run, the lease expires and the
 * next turn comes at the next tick after the interval. On SQLite (one node) the same rows keep a
 * restarted serve from repeating a job it has just run.
 *
 * Jobs are written to be idempotent anyway (a turn may be repeated after a lease expiry): domain
 * re-checks keep due-ness per domain in the store, retention deletes what is old.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "../log.js";
import type { LeaseStore } from "../store/types.js";

/** A job's lease: long enough for a pass over many domains' DNS; renewed while it runs. */
export const JOB_LEASE_MS = 600_000;

export interface JobTurns {
  /** Runs `fn` if it is this node's turn for `name`; false when another node has it (or had it lately). */
  run(name: string, everyMs: number, fn: () => Promise<void>): Promise<boolean>;
}

export function jobTurns(
  store: Pick<LeaseStore, "claimJob" | "takeLease" | "releaseLease">,
  node: string,
  logger: Logger,
  now: () => number = Date.now,
): JobTurns {
  const owner = `${node}:${process.pid}:${randomBytes(4).toString("hex")}`;
  return {
    async run(name, everyMs, fn) {
      const lease = `job:${name}`;
      let mine: boolean;
      try {
        mine = await store.claimJob(lease, owner, now(), JOB_LEASE_MS, everyMs);
      } catch (err) {
        logger.warn({ err, job: name }, "could not ask for a periodic job's turn; skipped this time");
        return false;
      }
      if (!mine) return false;
      const renew = setInterval(() => {
        store.takeLease(lease, owner, now(), JOB_LEASE_MS).catch(() => {});
      }, JOB_LEASE_MS / 3);
      renew.unref();
      try {
        await fn();
      } finally {
        clearInterval(renew);
        await store.releaseLease(lease, owner).catch(() => {});
      }
      return true;
    },
  };
}

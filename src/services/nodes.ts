/**
 * The cluster's nodes (issue 8 items 5 and 7), for `petrel nodes` and `petrel drain`.
 *
 * - listNodes: the registry rows (src/app/node-registry.ts writes them), each marked stale when
 *   its heartbeat is older than cluster.staleAfterMs — a node killed, or cut off from the store.
 * - drainNode: the `petrel serve` of this data directory (its pid from listening.json, written
 *   by serve itself) gets SIGTERM, which is the drain: stop accepting (421 4.3.2), finish or give
 *   back leases, leave the registry, exit 0. A signal rather than an HTTP call: it needs no API
 *   key and no listener, and only someone who may signal the process (its user, root) can drain
 *   it. The wait ends when the process is gone.
 */
import type { PetrelConfig } from "../config/schema.js";
import { PetrelError } from "../errors.js";
import type { NodeRecord } from "../store/types.js";
import { nowOf, type ServiceContext } from "./context.js";
import { isAlive, readListening } from "./listeners.js";

export interface NodeView extends NodeRecord {
  /** No heartbeat for longer than cluster.staleAfterMs. */
  readonly stale: boolean;
  /** Milliseconds since its last heartbeat. */
  readonly heartbeatAgeMs: number;
}

export async function listNodes(ctx: ServiceContext): Promise<NodeView[]> {
  const now = nowOf(ctx);
  const limit = ctx.config.cluster.staleAfterMs;
  return (await ctx.store.listNodes()).map((n) => ({
    ...n,
    heartbeatAgeMs: Math.max(0, now - n.heartbeatAt),
    stale: now - n.heartbeatAt > limit,
  }));
}

export interface DrainResult {
  readonly pid: number;
  readonly drained: boolean;
  readonly waitedMs: number;
}

/** SIGTERMs the serve of `config.dataDir` and waits (up to timeoutMs) until it has exited. */
export async function drainNode(
  config: Pick<PetrelConfig, "dataDir">,
  timeoutMs: number,
  wait: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
): Promise<DrainResult> {
  const running = readListening(config);
  if (!running)
    throw new PetrelError("not-found", `no petrel serve is running on the data directory ${config.dataDir}`);
  const { pid } = running;
  const started = Date.now();
  try {
    process.kill(pid, "SIGTERM");
  } catch (err) {
    throw new PetrelError(
      "invalid-input",
      `cannot signal petrel serve (pid ${pid}): ${(err as Error).message}`,
    );
  }
  while (isAlive(pid)) {
    if (Date.now() - started > timeoutMs) return { pid, drained: false, waitedMs: Date.now() - started };
    await wait(100);
  }
  return { pid, drained: true, waitedMs: Date.now() - started };
}

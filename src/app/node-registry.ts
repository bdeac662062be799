/**
 * This node in the cluster (issue 8 items 5 and 7): its row in the store's node registry, kept
 * fresh by a heartbeat, and what the node may promise while the store is or is not reachable.
 *
 * - Registration: at start a row (id, name, version, pid, started, heartbeat) is written; every
 *   cluster.heartbeatMs the heartbeat refreshes it with what the node is doing (SMTP connections
 *   in, recipients in flight). `petrel nodes` reads the rows (src/services/nodes.ts) and shows a
 *   row whose heartbeat is older than cluster.staleAfterMs as stale: a node killed leaves its
 *   row behind; a clean stop deletes it.
 * - Availability: the heartbeat is a durable write, so its success is the proof that the store
 *   takes commits. When it fails (or times out), or a commit at the end of DATA fails, the node
 *   counts the store as unreachable: SMTP answers `421 4.3.0` at connect (RFC 5321 §3.8: the
 *   service is not available; the client tries later or another MX/node) and /readyz answers 503
 *   with the reason, so the balancer and the clients go elsewhere; a session already past the
 *   greeting still gets `451 4.3.0` at the end of DATA when its commit fails — never 250. It
 *   tries again every cluster.retryMs and the pools reconnect by themselves (pg makes a new
 *   connection for the next query), so the node recovers without a restart.
 * - Drain: drain() marks the row `draining` (seen in `petrel nodes`) and SMTP answers new
 *   sessions `421 4.3.2` (RFC 3463: system not accepting network messages) until the process
 *   stops; stop() deletes the row.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { PetrelConfig } from "../config/schema.js";
import type { Logger } from "../log.js";
import type { SmtpReply } from "../smtp/types.js";
import type { NodeRecord, NodeState, Store } from "../store/types.js";
import { PETREL_VERSION } from "../version.js";

/** Rows of nodes silent this long are deleted by any live node (they are long dead). */
const FORGET_AFTER_MS = 24 * 3600_000;

const STORE_DOWN: SmtpReply = {
  code: 421,
  enhanced: "4.3.0",
  text: "Service temporarily unavailable (message store unreachable), try again later",
};
const DRAINING: SmtpReply = {
  code: 421,
  enhanced: "4.3.2",
  text: "Service shutting down, try another server or later",
};

export interface NodeRegistryOptions {
  readonly store: Store;
  readonly config: Pick<PetrelConfig, "cluster">;
  readonly logger: Logger;
  /** SMTP connections open now. */
  readonly connections: () => number;
  /** Recipients the delivery worker holds now. */
  readonly deliveries: () => number;
  readonly now?: () => number;
}

export class NodeRegistry {
  readonly id: string;
  readonly name: string;
  private readonly startedAt: number;
  private readonly now: () => number;
  private state: NodeState = "running";
  private reachable = true;
  private downReason = "";
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private stopped = false;
  private lastForget = 0;

  constructor(private readonly opts: NodeRegistryOptions) {
    this.now = opts.now ?? Date.now;
    this.name = opts.config.cluster.nodeName || hostname();
    this.id = `${this.name}:${process.pid}:${randomBytes(3).toString("hex")}`;
    this.startedAt = this.now();
  }

  /** Registers the node (the store was just opened: this must succeed) and starts the heartbeat. */
  async start(): Promise<void> {
    await this.opts.store.heartbeatNode(this.record());
    this.schedule();
  }

  /** Whether the store took the last heartbeat. */
  get storeReachable(): boolean {
    return this.reachable;
  }

  /** Why the node must not take mail now (for /readyz), or null. */
  notReady(): string | null {
    if (this.state === "draining") return "draining";
    return this.reachable ? null : `the store is unreachable (${this.downReason})`;
  }

  /** The reply for a new SMTP session that must be refused now, or undefined. */
  refusal(): SmtpReply | undefined {
    if (this.state === "draining") return DRAINING;
    return this.reachable ? undefined : STORE_DOWN;
  }

  /** A commit failed: check the store now rather than at the next heartbeat. */
  suspect(): void {
    if (!this.stopped) void this.beat();
  }

  /** Marks the node draining (new sessions get 421 4.3.2) and tells the others. */
  async drain(): Promise<void> {
    this.state = "draining";
    await this.beat();
  }

  /** Stops the heartbeat and deletes the node's row (best effort: a dead store keeps it, stale). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.beating;
    await this.opts.store.removeNode(this.id).catch((err: unknown) => {
      this.opts.logger.warn({ err, node: this.id }, "could not remove this node from the registry");
    });
  }

  private record(): NodeRecord {
    const at = this.now();
    return {
      id: this.id,
      name: this.name,
      version: PETREL_VERSION,
      pid: process.pid,
      startedAt: this.startedAt,
      heartbeatAt: at,
      state: this.state,
      connections: this.opts.connections(),
      deliveries: this.opts.deliveries(),
    };
  }

  private schedule(): void {
    if (this.stopped) return;
    const { heartbeatMs, retryMs } = this.opts.config.cluster;
    this.timer = setTimeout(
      () => {
        void this.beat().finally(() => this.schedule());
      },
      this.reachable ? heartbeatMs : retryMs,
    );
    this.timer.unref();
  }

  /** One heartbeat at a time; a second caller waits for the one under way. */
  private beat(): Promise<void> {
    this.beating ??= this.heartbeat().finally(() => {
      this.beating = undefined;
    });
    return this.beating;
  }

  private async heartbeat(): Promise<void> {
    const { store, logger, config } = this.opts;
    // A hung connection must count as down too: bounded by the heartbeat period (at least 1 s).
    const limit = Math.max(1000, config.cluster.heartbeatMs);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        store.heartbeatNode(this.record()),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${limit} ms`)), limit);
        }),
      ]);
      if (!this.reachable) logger.info({ node: this.id }, "store reachable again: accepting mail");
      this.reachable = true;
      if (this.now() - this.lastForget > 3600_000) {
        this.lastForget = this.now();
        await store.forgetNodes(this.now() - FORGET_AFTER_MS).catch(() => 0);
      }
    } catch (err) {
      if (this.reachable)
        logger.error(
          { err, node: this.id },
          "store unreachable: refusing mail with 421 4.3.0 until it answers",
        );
      this.reachable = false;
      this.downReason = err instanceof Error ? err.message : String(err);
    } finally {
      clearTimeout(timer);
    }
  }
}

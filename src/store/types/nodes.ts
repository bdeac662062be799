/**
 * Store part: what the nodes sharing one store keep in common — the secrets Petrel generates for
 * itself (the VERP key) and the node registry (issue 8 item 5): each `petrel serve` registers a
 * row at start, refreshes it with a heartbeat (what it is doing), and deletes it when it stops
 * cleanly; a node killed leaves its row behind, which readers mark stale by its heartbeat's age.
 */

export type NodeState = "running" | "draining";

export interface NodeRecord {
  /** Unique per process start: "<name>:<pid>:<random>" (a restarted node is a new row). */
  readonly id: string;
  /** The machine's host name (or cluster.nodeName). */
  readonly name: string;
  readonly version: string;
  readonly pid: number;
  readonly startedAt: number;
  readonly heartbeatAt: number;
  readonly state: NodeState;
  /** SMTP connections open on the node at its last heartbeat. */
  readonly connections: number;
  /** Recipients its delivery worker held (claimed and not yet recorded) at its last heartbeat. */
  readonly deliveries: number;
}

export interface NodeStore {
  /** A secret Petrel keeps for itself (the VERP key): created with generate() on first use, the same for every process. */
  nodeSecret(name: string, generate: () => string): Promise<string>;
  /** Inserts the node's row or refreshes it (startedAt is kept from the first call). */
  heartbeatNode(node: NodeRecord): Promise<void>;
  /** Deletes the node's row (a clean stop: the node leaves the list). */
  removeNode(id: string): Promise<void>;
  /** Every registered node, oldest start first. */
  listNodes(): Promise<NodeRecord[]>;
  /** Deletes rows whose last heartbeat is older than `before` (long-dead nodes); returns how many. */
  forgetNodes(before: number): Promise<number>;
}

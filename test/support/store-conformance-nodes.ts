/**
 * Store conformance, issue 8 item 5: the node registry. A heartbeat inserts a node's row and
 * then refreshes it (keeping its start time), a clean stop deletes it, and old rows of dead
 * nodes are forgotten by age.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { NodeRecord, Store } from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

const node = (id: string, at: number, extra: Partial<NodeRecord> = {}): NodeRecord => ({
  id,
  name: "host-a",
  version: "0.1.0",
  pid: 4242,
  startedAt: at,
  heartbeatAt: at,
  state: "running",
  connections: 0,
  deliveries: 0,
  ...extra,
});

export function nodeConformance(withStore: WithStore): void {
  it(
    "registers nodes by heartbeat, refreshes them, removes one that stops, forgets old ones",
    withStore(async (store) => {
      assert.deepEqual(await store.listNodes(), []);
      await store.heartbeatNode(node("a:1:x", 1000));
      await store.heartbeatNode(node("b:2:y", 2000, { name: "host-b" }));
      // A later heartbeat carries what the node does now; its start time stays the first one.
      await store.heartbeatNode(
        node("a:1:x", 9999, { heartbeatAt: 5000, state: "draining", connections: 3, deliveries: 17 }),
      );
      const [a, b] = await store.listNodes();
      assert.deepEqual(
        a,
        node("a:1:x", 1000, { heartbeatAt: 5000, state: "draining", connections: 3, deliveries: 17 }),
      );
      assert.equal(b?.name, "host-b");
      await store.removeNode("a:1:x");
      assert.deepEqual(
        (await store.listNodes()).map((n) => n.id),
        ["b:2:y"],
      );
      assert.equal(await store.forgetNodes(2000), 0, "a heartbeat at the limit is kept");
      assert.equal(await store.forgetNodes(2001), 1);
      assert.deepEqual(await store.listNodes(), []);
    }),
  );
}

/**
 * Issue 8: three `petrel serve` nodes on one PostgreSQL database behind a real HAProxy
 * (send-proxy-v2), built with test/support/cluster.ts. Any node accepts (HAProxy spreads the
 * connections round robin), any node delivers, and each logs the real client's address, not the
 * balancer's. Skipped when haproxy is not installed (.ci/run installs it).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CLIENT_ADDRESS, type Cluster, hasHaproxy, startCluster, waitFor } from "./support/cluster.js";

describe("cluster: three nodes behind HAProxy", { skip: !hasHaproxy() && "haproxy is not installed" }, () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ nodes: 3, haproxy: true });
    const added = await cluster.cli(["senders", "add", "app@sender.test"]);
    assert.equal(added.code, 0, added.stderr);
  });
  after(async () => {
    await cluster?.close();
  });

  it("spreads submissions over the nodes, delivers each once, and logs the real client", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await cluster.submit(`user${i}@cluster.test`);
      assert.equal(r.code, 250, r.text);
      ids.push(r.queueId!);
    }
    await cluster.mx.waitForMessages(12, 60_000);
    const queuedBy = await waitFor(
      () => {
        const byNode = cluster.nodes.map((n) =>
          n.petrel.logRecords().filter((r) => r.msg === "queued" && ids.includes(String(r.queueId))),
        );
        return byNode.flat().length === 12 && byNode;
      },
      { what: "12 queued log lines", timeoutMs: 10_000 },
    );
    // Round robin: every node accepted some of the twelve connections.
    for (const [i, lines] of queuedBy.entries()) assert.ok(lines.length > 0, `node ${i + 1} accepted none`);
    for (const line of queuedBy.flat())
      assert.equal(line.ip, CLIENT_ADDRESS, "the logged IP is the client's");
    const to = cluster.mx.messages.flatMap((m) => m.to).sort();
    assert.deepEqual(to, [...Array(12).keys()].map((i) => `user${i}@cluster.test`).sort(), "each once");
    const received = cluster.mx.messages.map((m) => m.content.toString("latin1"));
    for (const content of received) assert.match(content, /\[127\.0\.10\.58\]/, "Received names the client");
  });
});

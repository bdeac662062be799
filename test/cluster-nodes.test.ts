/**
 * Issue 8 items 5 and 7 against real `petrel serve` processes on one PostgreSQL database
 * (test/support/cluster.ts):
 *  - `petrel nodes` lists every node with its host name, version, start, heartbeat and what it
 *    does; a node killed with SIGKILL stays listed, marked stale;
 *  - `petrel drain`: the node answers an open session 421 4.3.2, delivers what it holds,
 *    exits 0 and leaves the list; the other node goes on.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { NodeView } from "../src/services/nodes.js";
import { CLIENT_ADDRESS, type Cluster, startCluster, waitFor } from "./support/cluster.js";
import { petrelOk, removeDataDir, startPetrel, tempDataDir } from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";

describe("cluster: petrel nodes and petrel drain", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ nodes: 3 });
    const added = await cluster.cli(["senders", "add", "app@sender.test"]);
    assert.equal(added.code, 0, added.stderr);
  });
  after(async () => {
    await cluster?.close();
  });

  const nodes = async (): Promise<NodeView[]> => {
    const out = await cluster.cli(["nodes", "--json"]);
    assert.equal(out.code, 0, out.stderr);
    return JSON.parse(out.stdout) as NodeView[];
  };

  it("lists every node with what it is doing", async () => {
    const list = await nodes();
    assert.deepEqual(list.map((n) => n.name).sort(), ["node1", "node2", "node3"]);
    for (const n of list) {
      assert.equal(n.version, "0.1.0");
      assert.equal(n.state, "running");
      assert.equal(n.stale, false);
      assert.ok(n.startedAt <= n.heartbeatAt);
      assert.match(n.id, /^node\d:\d+:[0-9a-f]{6}$/);
    }
    // An open SMTP session shows as a connection in on its node, at the next heartbeat.
    const session = await RawSmtpSession.open({
      host: cluster.nodes[0]!.address,
      port: cluster.nodes[0]!.submissionPort,
      localAddress: CLIENT_ADDRESS,
    });
    try {
      await waitFor(async () => (await nodes()).find((n) => n.name === "node1")?.connections === 1, {
        what: "node1 showing 1 connection",
        timeoutMs: 10_000,
      });
    } finally {
      await session.quit();
    }
    const table = await cluster.cli(["nodes"]);
    assert.match(
      table.stdout,
      /^ID\s+HOST\s+VERSION\s+STARTED\s+HEARTBEAT\s+STATE\s+CONNECTIONS\s+DELIVERIES$/m,
    );
    assert.match(table.stdout, /node2:\d+:\w+\s+node2\s+0\.1\.0 .* running /);
  });

  it("drains a node: 421 4.3.2 to its open session, the held delivery finished, exit 0, gone from the list", async () => {
    const target = cluster.nodes[1]!;
    // A delivery in progress on node 2: the MX holds its end of DATA until released.
    cluster.mx.holdAll = true;
    const held = await RawSmtpSession.open({
      host: target.address,
      port: target.submissionPort,
      localAddress: CLIENT_ADDRESS,
    });
    const r = await held.send({
      from: "app@sender.test",
      to: ["drain@cluster.test"],
      content: Buffer.from("From: app@sender.test\r\nSubject: drain\r\n\r\nhello\r\n"),
    });
    assert.equal(r.code, 250, r.text);
    // Whichever node claimed it, release once it is held so the drain can finish its delivery.
    await cluster.mx.waitForHeld(1, 30_000);
    // The node delivering it shows the recipient in flight, at its next heartbeat.
    await waitFor(async () => (await nodes()).some((n) => n.deliveries >= 1), {
      what: "a node showing a delivery in flight",
      timeoutMs: 10_000,
    });
    const idle = await RawSmtpSession.open({
      host: target.address,
      port: target.submissionPort,
      localAddress: CLIENT_ADDRESS,
    });
    const drain = cluster.cli(["drain", "--json"], 1);
    // RFC 5321 §3.8: the server closing down answers 421 unprompted to a session between commands.
    const bye = await idle.readReply();
    assert.equal(bye.code, 421);
    assert.match(bye.text, /4\.3\.2/);
    cluster.mx.holdAll = false;
    cluster.mx.release();
    const result = await drain;
    assert.equal(result.code, 0, result.stderr);
    assert.equal((JSON.parse(result.stdout) as { drained: boolean }).drained, true);
    assert.equal(await target.petrel.exited, 0, "the drained node exits 0");
    held.destroy();
    idle.destroy();
    assert.deepEqual((await nodes()).map((n) => n.name).sort(), ["node1", "node3"]);
    await cluster.mx.waitForMessages(1, 30_000);
    assert.ok(cluster.mx.messages.some((m) => m.to.includes("drain@cluster.test")));
    const after = await cluster.submit("after-drain@cluster.test");
    assert.equal(after.code, 250, "the others still accept");
  });

  it("shows a node killed with SIGKILL as stale, and keeps it listed", async () => {
    await cluster.kill(2);
    const stale = await waitFor(async () => (await nodes()).find((n) => n.name === "node3" && n.stale), {
      what: "node3 stale",
      timeoutMs: 20_000,
    });
    assert.ok(stale.heartbeatAgeMs > 3000);
    const table = await cluster.cli(["nodes"]);
    assert.match(table.stdout, /node3\s+0\.1\.0 .* stale /);
    assert.equal((await nodes()).find((n) => n.name === "node1")?.stale, false);
  });
});

describe("a single node registers too (the default store)", () => {
  it("lists the running serve, and not after a clean stop (exit 0)", async () => {
    const dataDir = tempDataDir("petrel-node-");
    try {
      const petrel = await startPetrel(dataDir);
      const list = JSON.parse(await petrelOk(dataDir, ["nodes", "--json"])) as NodeView[];
      assert.equal(list.length, 1);
      assert.equal(list[0]!.pid, petrel.child.pid);
      assert.equal(list[0]!.state, "running");
      const ready = await fetch(`http://127.0.0.1:${petrel.ports.http}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(await petrel.stop("SIGTERM"), 0);
      assert.deepEqual(JSON.parse(await petrelOk(dataDir, ["nodes", "--json"])), []);
      assert.match(await petrelOk(dataDir, ["nodes"]), /No node is registered/);
    } finally {
      removeDataDir(dataDir);
    }
  });
});

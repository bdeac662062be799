/**
 * Issue 8, the cluster's promise: three `petrel serve` nodes on one PostgreSQL database behind a
 * real HAProxy (send-proxy-v2, test/support/cluster.ts). 2,000 messages are submitted through
 * HAProxy by 12 clients; in the middle of deliveries one node is killed with SIGKILL and not
 * restarted. Then:
 *  - a delivery was in progress on it at the kill (the test MX held a transaction from its
 *    address, and the store still had recipients leased to it);
 *  - every acknowledged message reaches the test MX — none lost; the dead node's leased
 *    recipients are delivered by the others once the lease (5 s here) expires;
 *  - duplicates (a subject received twice) are counted and are no more than the recipients
 *    the dead node had in flight;
 *  - every node logged the real client's address, not HAProxy's.
 * A client whose session was on the killed node sees its connection cut and submits its next
 * message on a new connection (HAProxy redispatches it); a message cut off before its 250 is
 * not counted as acknowledged. Skipped without haproxy (.ci/run installs it).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PostgresStore } from "../src/store/postgres/postgres-store.js";
import {
  BALANCER,
  CLIENT_ADDRESS,
  type Cluster,
  hasHaproxy,
  startCluster,
  waitFor,
} from "./support/cluster.js";
import { RawSmtpSession } from "./support/raw-smtp.js";

const MESSAGES = 2000;
const CLIENTS = 12;
const LEASE_MS = 5000;
const VICTIM = 1;

describe("cluster: a node killed during deliveries", {
  skip: !hasHaproxy() && "haproxy is not installed",
}, () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({
      nodes: 3,
      haproxy: true,
      leaseMs: LEASE_MS,
      // The cap is cluster-wide (issue 8 item 4): with the default 10, the other two nodes' held
      // transactions could take every slot, and the victim would never get one held at the MX.
      config: { delivery: { maxConnectionsPerDestination: 60 } },
    });
    const added = await cluster.cli(["senders", "add", "app@sender.test"]);
    assert.equal(added.code, 0, added.stderr);
  });
  after(async () => {
    await cluster?.close();
  });

  it("loses no acknowledged message, and duplicates no more than the dead node had in flight", async () => {
    const acked = new Map<string, string>(); // subject → queue id
    let next = 0;
    let cut = 0;
    let inProgress = 0;
    const client = async () => {
      let session: RawSmtpSession | undefined;
      while (acked.size + inProgress < MESSAGES) {
        inProgress++;
        const i = ++next;
        const subject = `load ${i}`;
        try {
          session ??= await RawSmtpSession.open({ ...cluster.entry, localAddress: CLIENT_ADDRESS });
          const r = await session.send({
            from: "app@sender.test",
            to: [`load-${i}@cluster.test`],
            content: Buffer.from(`From: app@sender.test\r\nSubject: ${subject}\r\n\r\nhello ${i}\r\n`),
          });
          assert.equal(r.code, 250, `${subject}: ${r.code} ${r.text}`);
          acked.set(subject, /queued as (\S+)/.exec(r.text)![1]!);
        } catch (err) {
          if (err instanceof assert.AssertionError) throw err;
          // The session was on the killed node: this message is unacknowledged; go on elsewhere.
          cut++;
          session?.destroy();
          session = undefined;
        } finally {
          inProgress--;
        }
      }
      await session?.quit();
    };
    const clients = Array.from({ length: CLIENTS }, client);

    // In the middle of deliveries: hold every transaction at the MX until the victim has one.
    await waitFor(() => cluster.mx.messages.length >= 300, { what: "300 delivered", timeoutMs: 60_000 });
    const victim = cluster.nodes[VICTIM]!;
    cluster.mx.holdAll = true;
    await waitFor(() => cluster.mx.heldFrom().includes(victim.address), {
      what: "a delivery of the victim held at the MX",
      timeoutMs: 30_000,
    });
    const heldByVictim = cluster.mx.heldFrom().filter((a) => a === victim.address).length;
    await cluster.kill(VICTIM);
    const killedAt = Date.now();
    // What it had in flight: its leases, untouched by anyone until they expire.
    const store = (await cluster.store()) as PostgresStore;
    const { rows } = await store.pool.query(
      `SELECT q.recipient_id, r.address FROM queue q JOIN recipients r ON r.id = q.recipient_id
       WHERE q.lease_owner LIKE $1`,
      [`node${VICTIM + 1}.petrel.test:%`],
    );
    const inFlight = rows.map((r) => String(r.address));
    assert.ok(heldByVictim >= 1 && inFlight.length >= 1, "a delivery was in progress on the victim");
    cluster.mx.holdAll = false;
    cluster.mx.release();

    await Promise.all(clients);
    assert.equal(acked.size, MESSAGES);
    const subjectOf = (m: { content: Buffer }) =>
      /Subject: (load \d+)/.exec(m.content.toString("latin1"))?.[1];
    const delivered = () => new Set(cluster.mx.messages.map(subjectOf));
    await waitFor(() => [...acked.keys()].every((s) => delivered().has(s)), {
      what: `all ${MESSAGES} acknowledged messages at the MX`,
      timeoutMs: 90_000,
      describe: () => `${[...acked.keys()].filter((s) => !delivered().has(s)).length} missing`,
    });
    // The dead node's recipients, delivered by the others after its leases expired.
    const inFlightSubjects = inFlight.map((a) => a.replace(/^load-(\d+)@.*/, "load $1"));
    const lastTakenOver = Math.max(
      ...cluster.mx.messages.filter((m) => inFlightSubjects.includes(subjectOf(m)!)).map((m) => m.at),
    );
    const failoverMs = lastTakenOver - killedAt;

    const counts = new Map<string, number>();
    for (const m of cluster.mx.messages) counts.set(subjectOf(m)!, (counts.get(subjectOf(m)!) ?? 0) + 1);
    const duplicates = [...counts.values()].reduce((sum, n) => sum + n - 1, 0);
    process.stdout.write(
      `# failover: ${MESSAGES} acknowledged (${cut} cut before their 250), victim held ${heldByVictim} at the MX and ` +
        `${inFlight.length} leased; all delivered; ${duplicates} duplicates; its recipients delivered by the others ` +
        `${(failoverMs / 1000).toFixed(1)} s after the kill (lease ${LEASE_MS / 1000} s)\n`,
    );
    assert.ok(duplicates <= inFlight.length, `${duplicates} duplicates > ${inFlight.length} in flight`);
    for (const m of cluster.mx.messages)
      assert.ok(
        m.remoteAddress !== victim.address || m.at < killedAt + 1000,
        "nothing from the dead node after its death",
      );

    // The logged client IP is the real client's on every node (the victim's log kept its lines).
    // (The log is written after the 250, asynchronously: the last lines of the killed node may be
    // lost with it, so the lines cover nearly all, and the store's record covers all.)
    const queued = cluster.nodes.flatMap((n) => n.petrel.logRecords().filter((r) => r.msg === "queued"));
    assert.ok(queued.length >= MESSAGES * 0.95, `${queued.length} queued lines`);
    const ips = await store.pool.query("SELECT DISTINCT client_ip FROM messages");
    assert.deepEqual(
      ips.rows.map((r) => r.client_ip),
      [CLIENT_ADDRESS],
      "the client address recorded with every message",
    );
    for (const line of queued) assert.equal(line.ip, CLIENT_ADDRESS, `never the balancer ${BALANCER}`);
    for (const n of cluster.nodes)
      assert.ok(
        n.petrel.logRecords().some((r) => r.msg === "queued"),
        `node ${n.index + 1} accepted some of the load`,
      );
  });
});

/**
 * bench:relay on PostgreSQL with N nodes (issue 8): the same load as bench/relay.ts — Postfix's
 * smtp-source → Petrel → smtp-sink, every accept and every outcome committed — on N `petrel serve`
 * processes sharing one fresh database. The load is split evenly: one smtp-source per node
 * (sessions/N each, straight to the node: no balancer's CPU in the figures).
 *
 * CPU per message is reported in two parts, which predict scaling on a bigger machine (this one
 * has 2 cores shared by everything):
 *  - Petrel: user+system time of the N serve processes (all their threads), from /proc;
 *  - PostgreSQL: user+system time of the backend processes serving this database (pids from
 *    pg_stat_activity, sampled every 200 ms; a backend's last sample counts). The server's own
 *    background processes (WAL writer, checkpointer) are shared with other databases and left out.
 *
 * Failover (`failover()`, N ≥ 2): N nodes with delivery.leaseMs = 10 s in front of the in-process
 * test MX; the MX holds every transaction until node 2 is delivering, node 2 is SIGKILLed, and the
 * time from the kill to the last of its leased recipients delivered by the others is printed
 * beside the goal (lease + 5 s).
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import pg from "pg";
import type { PostgresStore } from "../src/store/postgres/postgres-store.js";
import { startCluster, waitFor } from "../test/support/cluster.js";
import {
  type PetrelProcess,
  petrelCli,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "../test/support/petrel-process.js";
import { freshPostgresDatabase } from "../test/support/postgres.js";

export interface ClusterRunOptions {
  readonly nodes: number;
  readonly messages: number;
  readonly sessions: number;
  readonly size: number;
  readonly sinkPort: number;
  /** Write a CPU profile of each node into this directory (bench:relay --profile). */
  readonly profileDir?: string;
}

export interface ClusterRunResult {
  readonly nodes: number;
  readonly acceptRate: number;
  readonly endToEndRate: number;
  readonly endToEndSeconds: number;
  readonly inQueueP50Ms: number;
  readonly inQueueP99Ms: number;
  readonly petrelCpuMsPerMessage: number;
  readonly postgresCpuMsPerMessage: number;
  readonly notDelivered: number;
  /** Recipients that took more than one attempt (a deferral), and the slowest time in queue. */
  readonly retried: number;
  readonly inQueueMaxMs: number;
  /**
   * Delivered at the first attempt but more than LATE_MS after acceptance: recipients that a
   * claim missed and only the 60 s full scan found (claim-watermark.ts; commit 9ef257f). Should be 0.
   */
  readonly late: number;
  /**
   * Where the slowest recipient's time went: accepted → claimed (the attempt's start, when the
   * worker handed it to the dispatcher), claimed → its SMTP transaction (waiting in the node for
   * a connection or a cluster slot, plus the outcome commit), and the transaction itself.
   */
  readonly slowest: { readonly claimMs: number; readonly inNodeMs: number; readonly transactionMs: number };
  /** The longest SMTP transaction (delivery_attempts.duration_ms) and how many took over 1 s. */
  readonly longestTransactionMs: number;
  readonly transactionsOver1s: number;
  /** The nodes' "a delivery job waited long for a connection" lines (dispatcher.ts), and the longest. */
  readonly longWaits: number;
  readonly longestWait: Record<string, unknown> | undefined;
}

/** Far above any time in queue of a healthy run here (p99 < 1 s), far below the 60 s full scan. */
export const LATE_MS = 10_000;

const TICK_MS = 10; // USER_HZ = 100 on Linux

function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return undefined; // gone
  }
}

/** CPU of this database's backends: first and last sample per pid. */
class BackendCpu {
  private readonly first = new Map<number, number>();
  private readonly last = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly admin: pg.Client,
    private readonly database: string,
  ) {}
  async sample(): Promise<void> {
    const { rows } = await this.admin.query("SELECT pid FROM pg_stat_activity WHERE datname = $1", [
      this.database,
    ]);
    for (const { pid } of rows as Array<{ pid: number }>) {
      const ms = cpuMs(pid);
      if (ms === undefined) continue;
      if (!this.first.has(pid)) this.first.set(pid, ms);
      this.last.set(pid, ms);
    }
  }
  start(): void {
    this.timer = setInterval(() => void this.sample().catch(() => {}), 200);
  }
  async stop(): Promise<number> {
    clearInterval(this.timer);
    await this.sample();
    let total = 0;
    for (const [pid, end] of this.last) total += end - (this.first.get(pid) ?? end);
    return total;
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function smtpSource(port: number, host: string, sessions: number, messages: number, size: number) {
  return new Promise<void>((resolve, reject) => {
    execFile(
      "smtp-source",
      [
        "-s",
        String(sessions),
        "-l",
        String(size),
        "-m",
        String(messages),
        "-f",
        "bench@bench.example",
        "-t",
        "sink@example.com",
        `${host}:${port}`,
      ],
      { maxBuffer: 1 << 24 },
      (err, _stdout, stderr) => (err ? reject(new Error(`smtp-source failed: ${stderr}`)) : resolve()),
    );
  });
}

export async function runCluster(options: ClusterRunOptions): Promise<ClusterRunResult> {
  const { nodes, messages, sessions, size, sinkPort, profileDir } = options;
  const db = await freshPostgresDatabase("petrel_bench");
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  const dataDirs = Array.from({ length: nodes }, (_, i) => tempDataDir(`petrel-bench-node${i + 1}-`));
  const env = { PETREL_STORE__DRIVER: "postgres", PETREL_STORE__POSTGRES__URL: db.url };
  const processes: PetrelProcess[] = [];
  try {
    const added = await petrelCli(dataDirs[0]!, ["domains", "add", "bench.example"], env);
    if (added.code !== 0) throw new Error(`domains add failed: ${added.stderr}`);
    for (const [i, dataDir] of dataDirs.entries()) {
      processes.push(
        await startPetrel(dataDir, {
          ...(profileDir ? { nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] } : {}),
          config: {
            hostname: `bench${i + 1}.petrel.test`,
            cluster: { nodeName: `bench${i + 1}` },
            store: { driver: "postgres", postgres: { url: db.url, poolSize: 10 } },
            auth: { trustedNetworks: [{ network: "127.0.0.0/8", account: "default" }] },
            smtp: { limits: { maxConnectionsPerIp: 5000, maxConnections: 5000 } },
            delivery: {
              enabled: true,
              routes: [
                {
                  match: "*",
                  transport: "relay",
                  host: "127.0.0.1",
                  port: sinkPort,
                  security: "none",
                  maxConnections: 20,
                },
              ],
            },
          },
        }),
      );
    }
    const cpu0 = processes.map((p) => cpuMs(p.child.pid!) ?? 0);
    const backends = new BackendCpu(admin, db.name);
    await backends.sample();
    backends.start();
    const t0 = Date.now();
    const per = Math.floor(messages / nodes);
    await Promise.all(
      processes.map((p, i) =>
        smtpSource(
          p.ports.submission!,
          "127.0.0.1",
          Math.max(1, Math.round(sessions / nodes)),
          i === nodes - 1 ? messages - per * (nodes - 1) : per,
          size,
        ),
      ),
    );
    const acceptMs = Date.now() - t0;
    await waitFor(
      async () => {
        const { rows } = await admin.query(
          "SELECT count(*)::int AS n FROM recipients WHERE state = 'delivered'",
        );
        return Number(rows[0].n) >= messages;
      },
      { what: `${messages} delivered`, timeoutMs: 600_000, intervalMs: 100 },
    );
    const petrelCpu = processes.reduce((sum, p, i) => sum + (cpuMs(p.child.pid!) ?? 0) - cpu0[i]!, 0);
    const postgresCpu = await backends.stop();
    const { rows } = await admin.query(
      `SELECT r.updated_at AS done, m.received_at AS received, r.attempts FROM recipients r
       JOIN messages m ON m.id = r.message_id WHERE r.state = 'delivered'`,
    );
    const notDelivered = Number(
      (await admin.query("SELECT count(*)::int AS n FROM recipients WHERE state != 'delivered'")).rows[0].n,
    );
    const retried = Number(
      (await admin.query("SELECT count(*)::int AS n FROM recipients WHERE attempts > 1")).rows[0].n,
    );
    const slowestRows = await admin.query(
      `SELECT m.received_at, r.updated_at, a.at, a.duration_ms FROM recipients r
       JOIN messages m ON m.id = r.message_id JOIN delivery_attempts a ON a.recipient_id = r.id
       WHERE r.state = 'delivered' ORDER BY r.updated_at - m.received_at DESC LIMIT 1`,
    );
    const sr = slowestRows.rows[0];
    const longest = await admin.query(
      "SELECT max(duration_ms)::int AS ms, count(*) FILTER (WHERE duration_ms > 1000)::int AS over FROM delivery_attempts",
    );
    const slowest = sr
      ? {
          claimMs: Number(sr.at) - Number(sr.received_at),
          inNodeMs: Number(sr.updated_at) - Number(sr.at) - Number(sr.duration_ms),
          transactionMs: Number(sr.duration_ms),
        }
      : { claimMs: 0, inNodeMs: 0, transactionMs: 0 };
    const waits = processes.flatMap((p, i) =>
      p
        .logRecords()
        .filter((r) => r.msg === "a delivery job waited long for a connection")
        .map((r): Record<string, unknown> => ({ node: i + 1, ...r })),
    );
    const longestWait = waits.sort((a, b) => Number(b.waitedMs) - Number(a.waitedMs))[0];
    const done = rows.map((r) => Number(r.done));
    const lastDone = Math.max(...done);
    const inQueue = rows.map((r) => Number(r.done) - Number(r.received)).sort((a, b) => a - b);
    return {
      nodes,
      acceptRate: Math.round(messages / (acceptMs / 1000)),
      endToEndRate: Math.round(messages / ((lastDone - t0) / 1000)),
      endToEndSeconds: (lastDone - t0) / 1000,
      inQueueP50Ms: percentile(inQueue, 50),
      inQueueP99Ms: percentile(inQueue, 99),
      petrelCpuMsPerMessage: Number((petrelCpu / messages).toFixed(2)),
      postgresCpuMsPerMessage: Number((postgresCpu / messages).toFixed(2)),
      notDelivered,
      retried,
      inQueueMaxMs: inQueue[inQueue.length - 1] ?? 0,
      late: rows.filter((r) => Number(r.attempts) === 1 && Number(r.done) - Number(r.received) > LATE_MS)
        .length,
      slowest,
      longestTransactionMs: Number(longest.rows[0].ms ?? 0),
      transactionsOver1s: Number(longest.rows[0].over ?? 0),
      longWaits: waits.length,
      longestWait: longestWait && {
        node: longestWait.node,
        waitedMs: longestWait.waitedMs,
        queued: longestWait.queued,
        connections: longestWait.connections,
        slotted: longestWait.slotted,
      },
    };
  } finally {
    await Promise.all(processes.map((p) => p.stop()));
    await admin.end();
    for (const d of dataDirs) removeDataDir(d);
    await db.drop();
  }
}

export interface FailoverResult {
  readonly nodes: number;
  readonly leaseMs: number;
  readonly leasedByVictim: number;
  readonly failoverMs: number;
}

/** Kill -9 one of N nodes while it delivers; time until the others delivered its recipients. */
export async function failover(nodes: number, leaseMs = 10_000): Promise<FailoverResult> {
  // Slots to spare: every node must get one while the MX holds every transaction (a node left
  // without gives its claimed jobs back, dispatcher.ts, and the victim would never be delivering).
  const cluster = await startCluster({
    nodes,
    leaseMs,
    config: { delivery: { pollIntervalMs: 25, maxConnectionsPerDestination: 100 } },
  });
  try {
    await cluster.cli(["senders", "add", "app@sender.test"]);
    cluster.mx.holdAll = true;
    for (let i = 0; i < 200; i++) {
      const r = await cluster.submit(`fo-${i}@cluster.test`, { subject: `fo ${i}` });
      if (r.code !== 250) throw new Error(`submission refused: ${r.code} ${r.text}`);
    }
    const victim = cluster.nodes[1]!;
    const store = (await cluster.store()) as PostgresStore;
    const leased = async () =>
      (
        await store.pool.query(
          "SELECT r.address FROM queue q JOIN recipients r ON r.id = q.recipient_id WHERE q.lease_owner LIKE $1",
          [`node2.petrel.test:%`],
        )
      ).rows.map((r) => String(r.address));
    await waitFor(async () => cluster.mx.heldFrom().includes(victim.address) && (await leased()).length > 0, {
      what: "node 2 delivering",
      timeoutMs: 60_000,
    });
    await cluster.kill(1);
    const killedAt = Date.now();
    const theirs = await leased();
    cluster.mx.holdAll = false;
    cluster.mx.release();
    await waitFor(
      () => theirs.every((a) => cluster.mx.messages.some((m) => m.to.includes(a) && m.at > killedAt)),
      { what: "node 2's recipients delivered by the others", timeoutMs: leaseMs + 120_000 },
    );
    const last = Math.max(
      ...theirs.map((a) =>
        Math.min(...cluster.mx.messages.filter((m) => m.to.includes(a) && m.at > killedAt).map((m) => m.at)),
      ),
    );
    return { nodes, leaseMs, leasedByVictim: theirs.length, failoverMs: last - killedAt };
  } finally {
    await cluster.close();
  }
}

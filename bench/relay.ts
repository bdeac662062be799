/**
 * bench:relay — Petrel end to end: N messages (default 20,000, 2 KB) submitted by Postfix's
 * smtp-source over 20 sessions (one connection per message, plaintext from a trusted network) to
 * a fresh `petrel serve`, which relays them (route `*` → relay, no TLS) to Postfix's smtp-sink.
 * Every message is committed durably before its 250, and every delivery outcome is committed too.
 *
 * Prints: accept rate (smtp-source start to exit), end-to-end rate (first submit to last delivery
 * committed), p50/p99 time in queue (accepted → delivery committed, from the store), the server's
 * CPU ms per message and its peak RSS. `--json` prints the same as one JSON object (for
 * bench/compare-postfix.sh, which runs Postfix on the same load and sink in the same run).
 *
 * Webhooks (issue 5, on unless `--webhook off`): a local HTTP receiver in this process is added
 * with `petrel webhooks add` before the start, with the default batching (100 events or 1 s);
 * it reports the events/s it received while Petrel relayed (every event: processed + delivered),
 * and the lag from a recipient's delivery commit (its `delivered` event's timestamp) to the
 * arrival of that event at the receiver, p50/p99.
 *
 * Cluster (issue 8): `--store postgres --nodes N` (or `--nodes 1,2,3`) runs the same load on N
 * nodes sharing one fresh PostgreSQL database (bench/relay-cluster.ts), after the SQLite run of
 * the same invocation, and prints them side by side, with CPU per message split into Petrel's
 * processes and PostgreSQL's backends, and — for N ≥ 2 — the failover time of a node killed
 * while delivering. Webhooks are off in this mode (on both stores, so the figures compare).
 *
 * Usage: npm run bench:relay -- [--messages 20000] [--sessions 20] [--size 2048] [--sink-port P] [--json]
 *        [--profile DIR]   (a CPU profile of the server, written when it stops; with --store
 *                           postgres the nodes' profiles go to DIR/postgres)
 *        [--in-process]    (delivery on the main event loop: delivery.thread false)
 *        [--webhook on|off]
 *        [--store sqlite|postgres] [--nodes 1|2|3|1,2,3] [--rounds N]   (SQLite and PostgreSQL
 *                           alternated N times; the one-node share is the median of the rounds)
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { petrelOk, removeDataDir, startPetrel, tempDataDir } from "../test/support/petrel-process.js";
import {
  type ClusterRunResult,
  type FailoverResult,
  failover,
  LATE_MS,
  runCluster,
} from "./relay-cluster.js";
import { median } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "20000" },
    sessions: { type: "string", default: "20" },
    size: { type: "string", default: "2048" },
    "sink-port": { type: "string" },
    /** Write a CPU profile of the server into this directory. */
    profile: { type: "string" },
    /** Deliver on the main event loop (delivery.thread: false) instead of a thread of its own. */
    "in-process": { type: "boolean", default: false },
    /** A local webhook receiver for every event (on), or none (off). */
    webhook: { type: "string", default: "on" },
    /** sqlite (default) or postgres: the SQLite run, then the cluster runs beside it. */
    store: { type: "string", default: "sqlite" },
    /** Nodes on PostgreSQL: one number or a comma list (1,2,3). */
    nodes: { type: "string", default: "1" },
    /** With --store postgres: SQLite and PostgreSQL runs alternated this many times (median ratio). */
    rounds: { type: "string", default: "1" },
    json: { type: "boolean", default: false },
  },
});
const MESSAGES = Number(args.messages);
const SESSIONS = Number(args.sessions);
const SIZE = Number(args.size);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function procStats(pid: number): { cpuMs: number; peakRssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuMs: ticks * 10, peakRssMb: hwm / 1024 };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

interface Receiver {
  readonly url: string;
  events: number;
  firstAt: number;
  lastAt: number;
  /** Delivery commit → arrival at the receiver, per delivered event (ms). */
  readonly deliveredLag: number[];
  /** Accepted → arrival, per processed event (ms). */
  readonly processedLag: number[];
  close(): Promise<void>;
}

/** A webhook receiver that counts events and their lag (it answers 200 and checks nothing). */
async function startReceiver(): Promise<Receiver> {
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const now = Date.now();
      const events = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Array<{
        type: string;
        timestamp: number;
      }>;
      if (receiver.events === 0) receiver.firstAt = now;
      receiver.lastAt = now;
      receiver.events += events.length;
      for (const e of events) {
        if (e.type === "delivered") receiver.deliveredLag.push(now - e.timestamp);
        else if (e.type === "processed") receiver.processedLag.push(now - e.timestamp);
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const receiver: Receiver = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`,
    events: 0,
    firstAt: 0,
    lastAt: 0,
    deliveredLag: [],
    processedLag: [],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return receiver;
}

async function startSink(port: number): Promise<ChildProcess> {
  const sink = spawn("smtp-sink", ["-u", "nobody", `127.0.0.1:${port}`, "1024"], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      execFile("bash", ["-c", `exec 3<>/dev/tcp/127.0.0.1/${port}`], (err) => resolve(!err));
    });
    if (up) return sink;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("smtp-sink did not start");
}

async function main(): Promise<void> {
  if (args.store === "postgres") return cluster();
  if (args.store !== "sqlite") throw new Error(`--store sqlite|postgres, not ${args.store}`);
  await single(args.webhook !== "off");
}

async function single(withWebhook: boolean): Promise<Awaited<ReturnType<typeof relayOnce>>> {
  const result = await relayOnce(withWebhook);
  if (args.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    process.stdout.write(
      `Petrel relay, ${MESSAGES} × ${SIZE} B, ${SESSIONS} sessions (smtp-source → petrel → smtp-sink):\n` +
        `  accept rate      ${result.acceptRate} msg/s\n` +
        `  end-to-end rate  ${result.endToEndRate} msg/s (${result.endToEndSeconds.toFixed(1)} s, first submit → last delivery committed)\n` +
        `  time in queue    p50 ${result.inQueueP50Ms} ms, p99 ${result.inQueueP99Ms} ms\n` +
        `  server CPU       ${result.cpuMsPerMessage} ms/message\n` +
        `  peak RSS         ${result.peakRssMb} MB\n` +
        ("webhookEvents" in result
          ? `  webhook          ${result.webhookEventsPerSecond} events/s received (${result.webhookEvents} events, first submit → last event in ${result.webhookSeconds} s)\n` +
            `  webhook lag      delivered → received p50 ${result.webhookLagP50Ms} ms, p99 ${result.webhookLagP99Ms} ms; accepted → received p50 ${result.webhookProcessedLagP50Ms} ms\n`
          : ""),
    );
  }
  return result;
}

/** SQLite, then PostgreSQL with each node count, the same load; then failover for N ≥ 2. */
async function cluster(): Promise<void> {
  const counts = args.nodes.split(",").map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 9))
    throw new Error("--nodes 1..9 or a list 1,2,3");
  const rounds = Number(args.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error("--rounds 1 or more");
  const ownSink = args["sink-port"] === undefined;
  const sinkPort = ownSink ? await freePort() : Number(args["sink-port"]);
  const sink = ownSink ? await startSink(sinkPort) : undefined;
  // Alternated (SQLite, then each node count, round after round): this host's speed drifts over
  // minutes, so a ratio is only fair between runs made next to each other.
  const sqliteRuns: Awaited<ReturnType<typeof relayOnce>>[] = [];
  const runs: ClusterRunResult[] = [];
  const failovers: FailoverResult[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      sqliteRuns.push(await relayOnce(false));
      for (const nodes of counts)
        runs.push(
          await runCluster({
            nodes,
            messages: MESSAGES,
            sessions: SESSIONS,
            size: SIZE,
            sinkPort,
            ...(args.profile ? { profileDir: join(args.profile, "postgres") } : {}),
          }),
        );
    }
  } finally {
    sink?.kill("SIGTERM");
  }
  for (const nodes of counts) if (nodes >= 2) failovers.push(await failover(nodes));
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ sqlite: sqliteRuns, postgres: runs, failover: failovers })}\n`);
    return;
  }
  const row = (name: string, accept: number, e2e: number, p99: number, petrel: number, pgCpu: string) =>
    `  ${name.padEnd(18)}${String(accept).padStart(8)}${String(e2e).padStart(10)}${String(p99).padStart(10)}${petrel.toFixed(2).padStart(10)}${pgCpu.padStart(10)}\n`;
  process.stdout.write(
    `Petrel relay, ${MESSAGES} × ${SIZE} B, ${SESSIONS} sessions in all, webhooks off (smtp-source → petrel → smtp-sink):\n` +
      `  ${"store".padEnd(18)}${"accept/s".padStart(8)}${"e2e/s".padStart(10)}${"p99 ms".padStart(10)}${"Petrel ms".padStart(10)}${"PG ms".padStart(10)}  (CPU per message)\n` +
      sqliteRuns
        .map(
          (sqlite, round) =>
            row(
              "SQLite",
              sqlite.acceptRate,
              sqlite.endToEndRate,
              sqlite.inQueueP99Ms,
              sqlite.cpuMsPerMessage,
              "-",
            ) +
            runs
              .slice(round * counts.length, (round + 1) * counts.length)
              .map((r) =>
                row(
                  `PostgreSQL ${r.nodes} node${r.nodes > 1 ? "s" : ""}`,
                  r.acceptRate,
                  r.endToEndRate,
                  r.inQueueP99Ms,
                  r.petrelCpuMsPerMessage,
                  r.postgresCpuMsPerMessage.toFixed(2),
                ),
              )
              .join(""),
        )
        .join("") +
      oneNodeShare(sqliteRuns, runs, counts) +
      runs
        .filter((r) => r.notDelivered > 0)
        .map((r) => `  ${r.nodes} nodes: ${r.notDelivered} NOT delivered\n`)
        .join("") +
      runs
        .map(
          (r) =>
            `  ${r.nodes} node${r.nodes > 1 ? "s" : ""}: slowest recipient ${(r.inQueueMaxMs / 1000).toFixed(1)} s in queue (claimed after ${(r.slowest.claimMs / 1000).toFixed(1)} s, then ${(r.slowest.inNodeMs / 1000).toFixed(1)} s waiting in the node for a connection or slot and its outcome commit, ${(r.slowest.transactionMs / 1000).toFixed(1)} s in SMTP), ${r.retried} needed more than one attempt, ${r.late} late (first attempt > ${LATE_MS / 1000} s after accept: missed by claims)\n`,
        )
        .join("") +
      runs
        .filter((r) => r.longWaits > 0)
        .map(
          (r) =>
            `  ${r.nodes} nodes: ${r.longWaits} jobs waited > 5 s in a node for a connection; the longest: ${JSON.stringify(r.longestWait)}; the longest SMTP transaction took ${r.longestTransactionMs} ms (${r.transactionsOver1s} over 1 s)\n`,
        )
        .join("") +
      failovers
        .map(
          (f) =>
            `  failover, ${f.nodes} nodes: the killed node's ${f.leasedByVictim} leased recipients delivered by the others ${(f.failoverMs / 1000).toFixed(1)} s after the kill (goal ≤ lease ${f.leaseMs / 1000} s + 5 s)\n`,
        )
        .join(""),
  );
}

/** One node's end-to-end rate as a share of SQLite's, per round (each beside its own SQLite run). */
function oneNodeShare(
  sqliteRuns: ReadonlyArray<{ readonly endToEndRate: number }>,
  runs: readonly ClusterRunResult[],
  counts: readonly number[],
): string {
  const at = counts.indexOf(1);
  if (at < 0) return "";
  const shares = sqliteRuns.map((sqlite, round) =>
    Math.round((100 * runs[round * counts.length + at]!.endToEndRate) / sqlite.endToEndRate),
  );
  const middle = Math.round(median(shares));
  return shares.length === 1
    ? `  one node on PostgreSQL: ${middle}% of the SQLite end-to-end rate (goal ≥ 70%)\n`
    : `  one node on PostgreSQL: ${shares.join(" / ")}% of SQLite in alternated rounds, median ${middle}% (goal ≥ 70%)\n`;
}

async function relayOnce(withWebhook: boolean) {
  const ownSink = args["sink-port"] === undefined;
  const sinkPort = ownSink ? await freePort() : Number(args["sink-port"]);
  const sink = ownSink ? await startSink(sinkPort) : undefined;
  const dataDir = tempDataDir("petrel-bench-relay-");
  const receiver = withWebhook ? await startReceiver() : undefined;
  try {
    await petrelOk(dataDir, ["domains", "add", "bench.example"]);
    if (receiver) await petrelOk(dataDir, ["webhooks", "add", receiver.url]);
    const petrel = await startPetrel(dataDir, {
      // nodeArgs: node's own flags for the server process (test/support/petrel-process.ts).
      ...(args.profile ? { nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${args.profile}`] } : {}),
      config: {
        auth: { trustedNetworks: [{ network: "127.0.0.0/8", account: "default" }] },
        smtp: { limits: { maxConnectionsPerIp: 5000, maxConnections: 5000 } },
        delivery: {
          enabled: true,
          thread: !args["in-process"],
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
    });
    const pid = petrel.child.pid!;
    const cpuBefore = procStats(pid).cpuMs;
    const t0 = Date.now();
    const source = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(
        "smtp-source",
        [
          "-s",
          String(SESSIONS),
          "-l",
          String(SIZE),
          "-m",
          String(MESSAGES),
          "-f",
          "bench@bench.example",
          "-t",
          "sink@example.com",
          `127.0.0.1:${petrel.ports.submission}`,
        ],
        { maxBuffer: 1 << 24 },
        (err, _stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }),
      );
    });
    const acceptMs = Date.now() - t0;
    if (source.code !== 0) throw new Error(`smtp-source failed: ${source.stderr}`);

    const db = new Database(join(dataDir, "petrel.db"), { readonly: true, fileMustExist: true });
    db.pragma("busy_timeout = 5000");
    const count = db.prepare("SELECT COUNT(*) FROM recipients WHERE state = 'delivered'").pluck();
    const deadline = Date.now() + 600_000;
    while ((count.get() as number) < MESSAGES) {
      if (Date.now() > deadline) throw new Error(`only ${count.get()} of ${MESSAGES} delivered`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const stats = procStats(pid);
    const rows = db
      .prepare(
        `SELECT r.updated_at AS done, m.received_at AS received FROM recipients r
         JOIN messages m ON m.id = r.message_id WHERE r.state = 'delivered'`,
      )
      .all() as Array<{ done: number; received: number }>;
    const notDelivered = db
      .prepare("SELECT COUNT(*) FROM recipients WHERE state != 'delivered'")
      .pluck()
      .get();
    db.close();
    // Every event (processed and delivered per message) must reach the receiver.
    const webhookDeadline = Date.now() + 300_000;
    while (receiver && receiver.events < 2 * MESSAGES) {
      if (Date.now() > webhookDeadline)
        throw new Error(`webhook: only ${receiver.events} of ${2 * MESSAGES} events`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await petrel.stop();

    const lastDone = Math.max(...rows.map((r) => r.done));
    const inQueue = rows.map((r) => r.done - r.received).sort((a, b) => a - b);
    const result = {
      messages: MESSAGES,
      sessions: SESSIONS,
      size: SIZE,
      acceptRate: Math.round(MESSAGES / (acceptMs / 1000)),
      endToEndRate: Math.round(MESSAGES / ((lastDone - t0) / 1000)),
      endToEndSeconds: (lastDone - t0) / 1000,
      inQueueP50Ms: percentile(inQueue, 50),
      inQueueP99Ms: percentile(inQueue, 99),
      cpuMsPerMessage: Number(((stats.cpuMs - cpuBefore) / MESSAGES).toFixed(2)),
      peakRssMb: Math.round(stats.peakRssMb),
      notDelivered: Number(notDelivered),
      ...(receiver ? webhookFigures(receiver, t0) : {}),
    };
    return result;
  } finally {
    await receiver?.close();
    sink?.kill("SIGTERM");
    removeDataDir(dataDir);
  }
}

function webhookFigures(receiver: Receiver, t0: number) {
  const delivered = [...receiver.deliveredLag].sort((a, b) => a - b);
  const processed = [...receiver.processedLag].sort((a, b) => a - b);
  const seconds = (receiver.lastAt - t0) / 1000;
  return {
    webhookEvents: receiver.events,
    webhookSeconds: Number(seconds.toFixed(1)),
    webhookEventsPerSecond: Math.round(receiver.events / seconds),
    webhookLagP50Ms: percentile(delivered, 50),
    webhookLagP99Ms: percentile(delivered, 99),
    webhookProcessedLagP50Ms: percentile(processed, 50),
  };
}

await main();

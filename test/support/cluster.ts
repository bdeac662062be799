/**
 * A Petrel cluster for multi-node tests (issue 8): N real `petrel serve` processes on one fresh
 * PostgreSQL database, each with its own data directory and its own loopback address, a real
 * test DNS server and test MX, and optionally a real HAProxy in front (`send-proxy-v2`) and a
 * cuttable TCP proxy between the nodes and PostgreSQL.
 *
 *   const cluster = await startCluster({ nodes: 3, haproxy: true });
 *   try {
 *     await cluster.cli(["senders", "add", "app@sender.test"]);
 *     const r = await cluster.submit("ann@cluster.test");     // through HAProxy, from CLIENT_ADDRESS
 *     await cluster.kill(1);                                   // SIGKILL node 1, not restarted
 *     await waitFor(() => cluster.mx.messages.length >= 1, { what: "delivered" });
 *   } finally {
 *     await cluster.close();                                   // every process, the database
 *   }
 *
 * Addresses (all loopback, every port bound as port 0 on the exact address):
 *   node i (0-based)  127.0.10.(11+i): its SMTP and HTTP listeners, and its delivery source address,
 *                     so the test MX's stats.remoteAddresses tell which node delivered;
 *   test MX           MX_ADDRESS (127.0.10.2), the MX of every domain in DEFAULT_ZONE;
 *   HAProxy           listens on 127.0.0.1 (a socket this process binds and hands over as fd 3),
 *                     connects to the nodes from BALANCER (127.0.10.7), the only PROXY-trusted address;
 *   the client        CLIENT_ADDRESS (127.0.10.58), a trusted network acting as account "default".
 * Nodes reach PostgreSQL directly, or through `cluster.pg` (a TcpProxy: cut() is an outage) with
 * `pgProxy: true`. Admin commands (`cluster.cli`) always go directly.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { openPostgresStore } from "../../src/store/postgres/postgres-store.js";
import type { Store } from "../../src/store/types.js";
import { startDnsServer, type TestDnsServer, type ZoneRecords } from "./dns-server.js";
import {
  type CliResult,
  type PetrelProcess,
  petrelCli,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./petrel-process.js";
import { type FreshDatabase, freshPostgresDatabase, POSTGRES_ADMIN_URL } from "./postgres.js";
import { RawSmtpSession, type Reply } from "./raw-smtp.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";
import { startTestMx, type TestMx } from "./test-mx.js";

export { waitFor } from "./wait.js";

export const MX_ADDRESS = "127.0.10.2";
export const BALANCER = "127.0.10.7";
export const CLIENT_ADDRESS = "127.0.10.58";
export const nodeAddress = (index: number): string => `127.0.10.${11 + index}`;

/** cluster.test and sender.test, both with MX mx.cluster.test → MX_ADDRESS. */
export const DEFAULT_ZONE: ZoneRecords = {
  "cluster.test": { MX: [{ preference: 10, exchange: "mx.cluster.test" }] },
  "sender.test": { MX: [{ preference: 10, exchange: "mx.cluster.test" }] },
  "mx.cluster.test": { A: [MX_ADDRESS] },
};

export interface ClusterOptions {
  /** How many `petrel serve` processes (default 3). */
  readonly nodes?: number;
  /** A real HAProxy in front (send-proxy-v2); the nodes' submission listeners then expect PROXY headers. */
  readonly haproxy?: boolean;
  /** Nodes reach PostgreSQL through `cluster.pg`, a TCP proxy the test can cut. */
  readonly pgProxy?: boolean;
  /** delivery.leaseMs of every node (default 5000: a dead node's work waits that long). */
  readonly leaseMs?: number;
  /** Extra DNS records, merged over DEFAULT_ZONE. */
  readonly zone?: ZoneRecords;
  /** Configuration merged over every node's (deeply; arrays replace). */
  readonly config?: Record<string, unknown>;
  /** Configuration for one node, merged last. */
  readonly nodeConfig?: (index: number) => Record<string, unknown>;
}

export interface ClusterNode {
  readonly index: number;
  /** Its loopback address: listeners, HTTP API and delivery source. */
  readonly address: string;
  readonly dataDir: string;
  /** The running (or last) process; replaced by start(). */
  readonly petrel: PetrelProcess;
  /** Whether the process is still running. */
  readonly alive: boolean;
  /** A URL on its HTTP API, e.g. node.http("/readyz"). */
  http(path: string): string;
  /** Its submission port (expects a PROXY header when the cluster has HAProxy). */
  readonly submissionPort: number;
}

export interface Cluster {
  readonly db: FreshDatabase;
  readonly dns: TestDnsServer;
  readonly mx: TestMx;
  readonly nodes: readonly ClusterNode[];
  /** HAProxy's front (127.0.0.1:port), when started with haproxy: true. */
  readonly haproxy: { readonly host: string; readonly port: number } | undefined;
  /** The cuttable proxy to PostgreSQL, when started with pgProxy: true. */
  readonly pg: TcpProxy | undefined;
  /** Where clients submit: HAProxy's front, else node 0's submission listener. */
  readonly entry: { readonly host: string; readonly port: number };
  /**
   * Runs `petrel <args> --data-dir <node's>` against the cluster's database (directly, not
   * through `pg`); `node` (default 0) picks the data directory (for `petrel drain`).
   */
  cli(args: readonly string[], node?: number): Promise<CliResult>;
  /**
   * Submits one message from CLIENT_ADDRESS through `entry` (plaintext, trusted network) and
   * returns the reply to DATA (or the first refusal), with the queue id of a 250.
   */
  submit(to: string | readonly string[], options?: { from?: string; subject?: string }): Promise<Submitted>;
  /** SIGKILLs node i and waits until it is gone. */
  kill(index: number): Promise<void>;
  /** Sends a signal (default SIGTERM) to node i and resolves with its exit code or signal. */
  stop(index: number, signal?: NodeJS.Signals): Promise<number | string>;
  /** Starts node i again (same data directory and address; new ports). */
  start(index: number): Promise<void>;
  /** A store on the cluster's database, for assertions; closed by close(). */
  store(): Promise<Store>;
  /** Stops everything this harness started, drops the database, removes the data directories. */
  close(): Promise<void>;
}

export interface Submitted extends Reply {
  readonly queueId: string | undefined;
}

export function hasHaproxy(): boolean {
  try {
    execFileSync("haproxy", ["-v"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const count = options.nodes ?? 3;
  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {});
  };
  try {
    const db = await freshPostgresDatabase("petrel_cluster");
    cleanups.push(() => db.drop());
    const dns = await startDnsServer({ ...DEFAULT_ZONE, ...options.zone });
    cleanups.push(() => dns.close());
    const mx = await startTestMx({ address: MX_ADDRESS });
    cleanups.push(() => mx.close());
    let pg: TcpProxy | undefined;
    let nodeDbUrl = db.url;
    if (options.pgProxy) {
      const admin = new URL(POSTGRES_ADMIN_URL);
      pg = await startTcpProxy({ host: admin.hostname, port: Number(admin.port || 5432) });
      cleanups.push(() => pg!.close());
      const url = new URL(db.url);
      url.hostname = pg.address;
      url.port = String(pg.port);
      nodeDbUrl = url.toString();
    }
    const storeEnv = { PETREL_STORE__DRIVER: "postgres", PETREL_STORE__POSTGRES__URL: db.url };
    const configFor = (index: number): Record<string, unknown> =>
      merge(
        merge(
          {
            hostname: `node${index + 1}.petrel.test`,
            // Fast heartbeats: an outage is noticed, and a dead node shown stale, within seconds.
            cluster: { nodeName: `node${index + 1}`, heartbeatMs: 300, staleAfterMs: 3000, retryMs: 200 },
            smtp: {
              host: nodeAddress(index),
              submission: { port: 0, proxyProtocol: options.haproxy === true },
              submissions: { port: 0 },
              proxyProtocol: { trustedNetworks: [`${BALANCER}/32`] },
              shutdownGraceMs: 5000,
              limits: { maxConnectionsPerIp: 1000, maxConnections: 1000 },
            },
            http: { host: nodeAddress(index), port: 0 },
            bounces: { listener: { host: nodeAddress(index), port: 0 } },
            auth: { trustedNetworks: [{ network: `${CLIENT_ADDRESS}/32`, account: "default" }] },
            dns: { servers: [dns.server], timeoutMs: 2000, tries: 2 },
            store: {
              driver: "postgres",
              postgres: { url: nodeDbUrl, poolSize: 4, connectTimeoutMs: 2000, statementTimeoutMs: 10_000 },
            },
            delivery: {
              enabled: true,
              port: mx.port,
              pollIntervalMs: 50,
              idleTimeoutMs: 500,
              retryJitter: 0,
              retrySchedule: [1000],
              leaseMs: options.leaseMs ?? 5000,
              connectTimeoutMs: 5000,
              greetingTimeoutMs: 10_000,
              commandTimeoutMs: 60_000,
              sources: [{ address: nodeAddress(index) }],
            },
          },
          options.config ?? {},
        ),
        options.nodeConfig?.(index) ?? {},
      );

    const dataDirs = Array.from({ length: count }, (_, i) => tempDataDir(`petrel-node${i + 1}-`));
    cleanups.push(() => {
      for (const d of dataDirs) removeDataDir(d);
    });
    const processes: PetrelProcess[] = [];
    const startNode = async (index: number) => {
      processes[index] = await startPetrel(dataDirs[index]!, { config: configFor(index) });
    };
    cleanups.push(async () => {
      await Promise.all(processes.map((p) => p?.stop("SIGKILL")));
    });
    // Together, as an operator's deployment would: the migrations' advisory lock decides who migrates.
    await Promise.all(dataDirs.map((_, i) => startNode(i)));
    const nodes: ClusterNode[] = dataDirs.map((dataDir, index) => ({
      index,
      address: nodeAddress(index),
      dataDir,
      get petrel() {
        return processes[index]!;
      },
      get alive() {
        const child = processes[index]!.child;
        return child.exitCode === null && child.signalCode === null;
      },
      get submissionPort() {
        return processes[index]!.ports.submission!;
      },
      http: (path: string) => `http://${nodeAddress(index)}:${processes[index]!.ports.http}${path}`,
    }));

    let haproxy: { host: string; port: number } | undefined;
    if (options.haproxy) {
      const started = await startHaproxy(
        join(dataDirs[0]!, "haproxy.cfg"),
        nodes.map((n) => ({ address: n.address, port: n.submissionPort, httpPort: n.petrel.ports.http! })),
      );
      cleanups.push(() => started.stop());
      haproxy = { host: "127.0.0.1", port: started.port };
    }
    const entry = haproxy ?? { host: nodeAddress(0), port: nodes[0]!.submissionPort };
    const stores: Store[] = [];
    cleanups.push(async () => {
      for (const s of stores) await s.close();
    });
    let seq = 0;
    return {
      db,
      dns,
      mx,
      nodes,
      haproxy,
      pg,
      entry,
      cli: (args, node = 0) => petrelCli(dataDirs[node]!, args, storeEnv),
      async submit(to, submitOptions = {}) {
        const rcpts = typeof to === "string" ? [to] : to;
        const from = submitOptions.from ?? "app@sender.test";
        const subject = submitOptions.subject ?? `cluster ${++seq}`;
        let session: RawSmtpSession;
        try {
          session = await RawSmtpSession.open({ ...entry, localAddress: CLIENT_ADDRESS });
        } catch (err) {
          // A refusal at connect (421) or a connection cut before the greeting.
          const m = /expected 220, got (\d{3}) (.*)/s.exec(String((err as Error).message));
          if (m) return { code: Number(m[1]), text: m[2]!, queueId: undefined };
          throw err;
        }
        try {
          const reply = await session.send({
            from,
            to: rcpts,
            content: Buffer.from(
              `From: ${from}\r\nTo: ${rcpts.join(", ")}\r\nSubject: ${subject}\r\n` +
                `Message-ID: <${Date.now()}.${seq}.${process.pid}@sender.test>\r\n\r\nHello ${subject}\r\n`,
            ),
          });
          const queueId = reply.code === 250 ? /queued as (\S+)/.exec(reply.text)?.[1] : undefined;
          return { ...reply, queueId };
        } finally {
          await session.quit();
        }
      },
      async kill(index) {
        await processes[index]!.stop("SIGKILL");
      },
      stop: (index, signal = "SIGTERM") => processes[index]!.stop(signal),
      start: (index) => startNode(index),
      async store() {
        const s = await openPostgresStore({ url: db.url, poolSize: 2 });
        stores.push(s);
        return s;
      },
      close: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * Debian's HAProxy in TCP mode, round robin over the nodes with PROXY v2 (the config
 * docs/cluster.md shows). It listens on a socket this process binds to port 0 and hands over as
 * descriptor 3 (`bind fd@3`), so no port is guessed; `option redispatch` with `retries` sends a
 * connection refused by a dead or draining node to another one.
 */
async function startHaproxy(
  cfgFile: string,
  servers: ReadonlyArray<HaproxyServer>,
): Promise<{ port: number; stop(): Promise<void> }> {
  const front: Server = createServer();
  await new Promise<void>((resolve) => front.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const port = (front.address() as { port: number }).port;
  writeFileSync(cfgFile, haproxyConfig("fd@3", servers));
  const fd = (front as unknown as { _handle: { fd: number } })._handle.fd;
  const child: ChildProcess = spawn("haproxy", ["-db", "-f", cfgFile], {
    stdio: ["ignore", "ignore", "pipe", fd],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const reap = () => child.kill("SIGKILL");
  process.once("exit", reap);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // This process must not accept on the socket it handed over (see test/proxy-protocol.test.ts).
  front.close();
  // HAProxy takes the inherited socket at once; a bad config makes it exit at once.
  const early = await Promise.race([
    exited.then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), 300)),
  ]);
  if (early) throw new Error(`haproxy exited at start: ${stderr}`);
  return {
    port,
    async stop() {
      process.off("exit", reap);
      child.kill("SIGTERM");
      await exited;
    },
  };
}

export interface HaproxyServer {
  readonly address: string;
  /** Its submission port (PROXY v2 expected). */
  readonly port: number;
  /** Its HTTP API port: the health check asks /readyz there. */
  readonly httpPort: number;
}

/**
 * The HAProxy configuration the tests run (docs/cluster.md shows it): round robin, PROXY v2 to
 * the nodes from BALANCER, a health check on each node's /readyz (a node whose store is
 * unreachable, or that drains, answers 503 and is taken out), and a refused connection
 * redispatched to another node.
 */
export function haproxyConfig(bind: string, servers: ReadonlyArray<HaproxyServer>): string {
  return [
    "global",
    "  maxconn 4000",
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 5m",
    "  timeout server 5m",
    "  retries 3",
    "  option redispatch 1",
    "frontend smtp_submission",
    `  bind ${bind}`,
    "  default_backend petrel_submission",
    "backend petrel_submission",
    "  balance roundrobin",
    "  option httpchk",
    "  http-check send meth GET uri /readyz",
    "  http-check expect status 200",
    "  default-server inter 1s fall 2 rise 2",
    ...servers.map(
      (s, i) =>
        `  server node${i + 1} ${s.address}:${s.port} send-proxy-v2 source ${BALANCER} check port ${s.httpPort}`,
    ),
    "",
  ].join("\n");
}

function merge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key];
    out[key] = isObject(current) && isObject(value) ? merge(current, value) : value;
  }
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

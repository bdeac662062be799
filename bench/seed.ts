/**
 * bench:seed — the seed pattern: every message on a new connection with STARTTLS (and AUTH for
 * Petrel), one message, QUIT — what the README's Python snippet and most applications do.
 *
 * One lean client for every server (bench/starttls-source.c: OpenSSL + POSIX threads, compiled
 * here with cc), so the client's CPU stays small and ratios are fair. In each round, against fresh
 * servers:
 *   bare     a bare Node.js server: greet, STARTTLS with `new TLSSocket`, one line (the baseline);
 *   dialogue a bare Node.js server answering the auth load's whole dialogue with fixed replies
 *            (bench/bare-dialogue-server.ts): what Node.js itself spends on such a session;
 *   postfix  Postfix's smtpd, STARTTLS (self-signed ECDSA certificate, smtpd_tls_security_level=may),
 *            no AUTH, trusted network (mynetworks), mail put on hold (spooled, not delivered);
 *   petrel   Petrel, STARTTLS, no AUTH, trusted network (delivery off: mail stays queued);
 *   auth     Petrel, STARTTLS + AUTH PLAIN with an API key;
 *   resume   Petrel, STARTTLS + AUTH, the client resuming its previous TLS session (tickets).
 * Rounds interleave the loads (the machine is shared); every figure is the median of the rounds.
 * It prints messages/s, server CPU ms per message (from /proc; Postfix: master + every child),
 * the client's CPU, and the goals beside them.
 *
 * Usage: npm run bench:seed -- [--messages 1500] [--sessions 20] [--rounds 3] [--only bare,dialogue,postfix,petrel,auth,resume]
 *        [--profile DIR] (CPU profiles of the Petrel servers, written when they stop)
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { petrelOk, startPetrel, tempDataDir } from "../test/support/petrel-process.js";
import { startPostfix } from "./postfix-instance.js";
import { median } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "1500" },
    sessions: { type: "string", default: "20" },
    rounds: { type: "string", default: "3" },
    only: { type: "string", default: "bare,dialogue,postfix,petrel,auth,resume" },
    profile: { type: "string" },
  },
});
const MESSAGES = Number(args.messages);
const SESSIONS = Number(args.sessions);
const ROUNDS = Number(args.rounds);
const ONLY = new Set(args.only.split(","));

const here = dirname(fileURLToPath(import.meta.url));
const sourceFile = join(here, "../../bench/starttls-source.c");
const clientBin = join(here, "starttls-source");

/** Compiles the client when it is missing or older than its source. */
function buildClient(): void {
  if (existsSync(clientBin) && statSync(clientBin).mtimeMs >= statSync(sourceFile).mtimeMs) return;
  execFileSync("cc", ["-O2", "-o", clientBin, sourceFile, "-lssl", "-lcrypto", "-lpthread"], {
    stdio: "inherit",
  });
}

interface ClientResult {
  messages: number;
  errors: number;
  seconds: number;
  rate: number;
  clientCpuMsPerMessage: number;
  resumed: number;
  p50Ms: number;
  p99Ms: number;
}

function runClient(port: number, extra: string[]): Promise<ClientResult> {
  const argv = ["-p", String(port), "-s", String(SESSIONS), "-m", String(MESSAGES), ...extra];
  return new Promise((resolve, reject) =>
    execFile(clientBin, argv, { timeout: 600_000 }, (err, stdout, stderr) => {
      try {
        const result = JSON.parse(stdout) as ClientResult;
        if (result.errors > 0) reject(new Error(`client: ${result.errors} failed sessions ${stderr}`));
        else resolve(result);
      } catch {
        reject(new Error(`client failed: ${err?.message ?? ""} ${stderr}`));
      }
    }),
  );
}

function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Figure {
  rate: number;
  serverCpuMs: number;
  clientCpuMs: number;
  resumed: number;
  p50Ms: number;
}

async function measure(port: number, cpu: () => number, extra: string[]): Promise<Figure> {
  const before = cpu();
  const r = await runClient(port, extra);
  const after = cpu();
  return {
    rate: r.rate,
    serverCpuMs: (after - before) / r.messages,
    clientCpuMs: r.clientCpuMsPerMessage,
    resumed: r.resumed / r.messages,
    p50Ms: r.p50Ms,
  };
}

async function bare(certFile: string, keyFile: string, kind: "bare" | "dialogue"): Promise<Figure> {
  const profile = args.profile
    ? ["--cpu-prof", `--cpu-prof-dir=${args.profile}`, `--cpu-prof-name=${kind}-${Date.now()}.cpuprofile`]
    : [];
  const script = kind === "bare" ? "bare-starttls-server.js" : "bare-dialogue-server.js";
  const child = spawn(process.execPath, [...profile, join(here, script), certFile, keyFile], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((res) =>
    child.stdout!.once("data", (d: Buffer) => res(Number(String(d).trim()))),
  );
  try {
    // The dialogue baseline gets the auth load's client (AUTH PLAIN, any credentials).
    return await measure(port, () => cpuMsOf(child.pid!), kind === "bare" ? ["-b"] : ["-a", "apikey:bare"]);
  } finally {
    child.kill();
    await new Promise((r) => child.once("exit", r));
  }
}

async function postfix(certFile: string, keyFile: string): Promise<Figure> {
  const instance = await startPostfix(await freePort(), { certFile, keyFile });
  try {
    return await measure(instance.port, () => instance.cpuMs(), []);
  } finally {
    instance.stop();
  }
}

async function petrel(mode: "petrel" | "auth" | "resume"): Promise<Figure> {
  const dataDir = tempDataDir(`petrel-bench-seed-${mode}-`);
  await petrelOk(dataDir, ["domains", "add", "bench.example"]);
  const key = (await petrelOk(dataDir, ["keys", "create", "--name", "bench"])).trim();
  const server = await startPetrel(dataDir, {
    config: {
      // "petrel": the trusted network submits without AUTH; "auth"/"resume": no trusted network.
      auth: { trustedNetworks: mode === "petrel" ? [{ network: "127.0.0.0/8", account: "default" }] : [] },
      smtp: { limits: { maxConnectionsPerIp: 5000, maxConnections: 5000 } },
    },
    nodeArgs: args.profile
      ? ["--cpu-prof", `--cpu-prof-dir=${args.profile}`, `--cpu-prof-name=${mode}-${Date.now()}.cpuprofile`]
      : [],
  });
  try {
    const extra = mode === "petrel" ? [] : ["-a", `apikey:${key}`];
    if (mode === "resume") extra.push("-r");
    return await measure(server.ports.submission!, () => cpuMsOf(server.child.pid!), extra);
  } finally {
    await server.stop();
  }
}

buildClient();
// One ECDSA P-256 certificate for every server (Petrel's own default kind of key).
const certDir = tempDataDir("petrel-bench-seed-cert-");
const certFile = join(certDir, "cert.pem");
const keyFile = join(certDir, "key.pem");
execFileSync(
  "openssl",
  [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=bench.test",
    "-keyout",
    keyFile,
    "-out",
    certFile,
  ],
  { stdio: "ignore" },
);

const LOADS: Record<string, { label: string; run: () => Promise<Figure> }> = {
  bare: { label: "bare Node.js STARTTLS session (baseline)", run: () => bare(certFile, keyFile, "bare") },
  dialogue: {
    label: "bare Node.js, whole dialogue, fixed replies",
    run: () => bare(certFile, keyFile, "dialogue"),
  },
  postfix: { label: "Postfix smtpd, STARTTLS, trusted network", run: () => postfix(certFile, keyFile) },
  petrel: { label: "Petrel, STARTTLS, trusted network", run: () => petrel("petrel") },
  auth: { label: "Petrel, STARTTLS + AUTH", run: () => petrel("auth") },
  resume: { label: "Petrel, STARTTLS + AUTH, TLS resumption", run: () => petrel("resume") },
};
const keys = Object.keys(LOADS).filter((k) => ONLY.has(k));
const figures = new Map<string, Figure[]>(keys.map((k) => [k, []]));
console.log(
  `bench:seed — ${MESSAGES} messages × ${ROUNDS} rounds, ${SESSIONS} sessions, a new connection + STARTTLS per message (client: bench/starttls-source.c)`,
);
for (let round = 0; round < ROUNDS; round++) {
  for (const k of keys) figures.get(k)!.push(await LOADS[k]!.run());
}
const med = new Map<string, Figure>();
for (const k of keys) {
  const list = figures.get(k)!;
  const pick = (f: (x: Figure) => number) => median(list.map(f));
  const m: Figure = {
    rate: pick((x) => x.rate),
    serverCpuMs: pick((x) => x.serverCpuMs),
    clientCpuMs: pick((x) => x.clientCpuMs),
    resumed: pick((x) => x.resumed),
    p50Ms: pick((x) => x.p50Ms),
  };
  med.set(k, m);
  console.log(
    `${LOADS[k]!.label.padEnd(44)} ${m.rate.toFixed(0).padStart(6)} msg/s  server cpu ${m.serverCpuMs.toFixed(3)} ms/msg  ` +
      `client cpu ${m.clientCpuMs.toFixed(3)} ms/msg  p50 ${m.p50Ms.toFixed(1)} ms${m.resumed > 0 ? `  resumed ${(100 * m.resumed).toFixed(0)}%` : ""}` +
      `  (rates ${list.map((x) => x.rate.toFixed(0)).join(", ")})`,
  );
}
const b = med.get("bare");
const p = med.get("petrel");
const a = med.get("auth");
const pf = med.get("postfix");
if (p && pf)
  console.log(`STARTTLS per message, Petrel / Postfix: ${(p.rate / pf.rate).toFixed(2)}×   (goal ≥ 2×)`);
if (a)
  console.log(
    `STARTTLS + AUTH per message, server CPU: ${a.serverCpuMs.toFixed(2)} ms   (goal ≤ 1.4 ms)` +
      (b
        ? `; ${(a.serverCpuMs - b.serverCpuMs).toFixed(2)} ms above the bare session's ${b.serverCpuMs.toFixed(2)}   (goal ≤ 0.5 ms)`
        : ""),
  );
const d = med.get("dialogue");
if (a && d)
  console.log(
    `  of which Node.js's own dialogue (bare server, fixed replies): ${d.serverCpuMs.toFixed(2)} ms; Petrel's work above it: ${(a.serverCpuMs - d.serverCpuMs).toFixed(2)} ms`,
  );

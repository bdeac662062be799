/**
 * What bench:accept's SMTP loads are made of, shared with bench:http (which measures load (b)
 * beside the HTTP API in the same run): the 2 KB bench message, a fresh `petrel serve` with a
 * sender domain and a key, Postfix's smtp-source against it, a probe session timing end of
 * DATA → 250, and the server's CPU and memory from /proc.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { type PetrelProcess, petrelOk, startPetrel, tempDataDir } from "../test/support/petrel-process.js";
import { RawSmtpSession } from "../test/support/raw-smtp.js";
import { type DkimMode, prepareBenchSender } from "./dkim-setup.js";

export const FROM = "bench@bench.example";

export const BODY = `${"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n".repeat(24)}`;

export function benchMessage(n: number): Buffer {
  return Buffer.from(`From: ${FROM}\r\nTo: sink@example.com\r\nSubject: bench ${n}\r\n\r\n${BODY}`);
}

export interface ProcStats {
  cpuMs: number;
  /** The part of cpuMs spent in processes below the server's own (smtp.workers' session processes). */
  workersCpuMs: number;
  peakRssMb: number;
  rssMb: number;
}

/**
 * CPU of `pid` and of every process under it (smtp.workers forks session processes: their CPU is
 * the server's too): the live ones' utime+stime (fields 14, 15 of /proc/PID/stat, in clock ticks,
 * 100/s here) plus cutime+cstime (16, 17: children already reaped, e.g. a replaced worker). Memory
 * is the sum of the processes' RSS and peaks (an upper bound: shared pages count in each).
 */
export function procStats(pid: number): ProcStats {
  let ticks = 0;
  let ownTicks = 0;
  let rssKb = 0;
  let peakKb = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const t = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
      ticks += t;
      if (p === pid) ownTicks = Number(fields[11]) + Number(fields[12]);
      const status = readFileSync(`/proc/${p}/status`, "utf8");
      const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
      rssKb += kb("VmRSS");
      peakKb += kb("VmHWM");
    } catch {
      // exited between the listing and the read: its CPU is now in its parent's cutime
    }
  }
  return {
    cpuMs: ticks * 10,
    workersCpuMs: (ticks - ownTicks) * 10,
    peakRssMb: peakKb / 1024,
    rssMb: rssKb / 1024,
  };
}

/** Every process below `pid`, from each thread's /proc/PID/task/TID/children. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    let children = "";
    try {
      children = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8");
    } catch {
      continue;
    }
    for (const c of children.split(" ").filter(Boolean)) out.push(Number(c), ...descendants(Number(c)));
  }
  return out;
}

/**
 * Pins `pid` and every process below it, all their threads, to `cpus` (a taskset list: "0",
 * "0-1"). Processes forked later (a replaced worker) inherit the mask.
 */
export async function pinProcessTree(pid: number, cpus: string): Promise<void> {
  for (const p of [pid, ...descendants(pid)]) {
    await new Promise<void>((resolve, reject) =>
      execFile("taskset", ["-a", "-p", "-c", cpus, String(p)], (err, _o, stderr) =>
        err ? reject(new Error(`taskset: ${stderr || err.message}`)) : resolve(),
      ),
    );
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A fresh `petrel serve` (own data directory) with the bench sender and an API key. */
export async function startBenchServer(
  label: string,
  options: { dkim?: DkimMode | undefined; profile?: boolean; scopes?: string; workers?: number } = {},
): Promise<{ petrel: PetrelProcess; key: string }> {
  const dataDir = tempDataDir(`petrel-bench-${label}-`);
  let extra: Record<string, unknown> = {};
  if (options.dkim === undefined) await petrelOk(dataDir, ["domains", "add", "bench.example"]);
  else extra = await prepareBenchSender(dataDir, FROM, options.dkim);
  const key = (
    await petrelOk(dataDir, [
      "keys",
      "create",
      "--name",
      "bench",
      ...(options.scopes ? ["--scopes", options.scopes] : []),
    ])
  ).trim();
  const petrel = await startPetrel(dataDir, {
    config: {
      auth: { trustedNetworks: [{ network: "127.0.0.0/8", account: "default" }] },
      smtp: {
        limits: { maxConnectionsPerIp: 5000, maxConnections: 5000 },
        ...(options.workers ? { workers: options.workers } : {}),
      },
      ...extra,
    },
    nodeArgs: options.profile ? ["--cpu-prof", `--cpu-prof-dir=${dataDir}`] : [],
  });
  return { petrel, key };
}

/** A session that submits one message after another during a load, timing end of DATA → 250. */
export function startProbe(port: number): { stop: () => Promise<number[]> } {
  const latencies: number[] = [];
  let running = true;
  const loop = (async () => {
    const session = await RawSmtpSession.open({ port });
    let n = 0;
    while (running) {
      const t0 = performance.now();
      const reply = await session.send({ from: FROM, to: ["sink@example.com"], content: benchMessage(n++) });
      if (reply.code !== 250) throw new Error(`probe: ${reply.code} ${reply.text}`);
      latencies.push(reply.afterDataMs ?? performance.now() - t0);
    }
    await session.quit();
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return latencies.sort((a, b) => a - b);
    },
  };
}

/** Postfix's smtp-source: `sessions` parallel sessions, `messages` 2 KB messages in all. */
export function smtpSource(port: number, sessions: number, messages: number, extra: string[]): Promise<void> {
  const argv = [
    "-s",
    String(sessions),
    "-m",
    String(messages),
    "-l",
    "2048",
    "-f",
    FROM,
    "-t",
    "sink@example.com",
    ...extra,
    `127.0.0.1:${port}`,
  ];
  return new Promise((resolve, reject) => {
    execFile("smtp-source", argv, { timeout: 600_000 }, (err, _stdout, stderr) =>
      err ? reject(new Error(`smtp-source: ${stderr || err.message}`)) : resolve(),
    );
  });
}

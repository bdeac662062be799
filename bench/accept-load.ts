/**
 * What bench:accept's SMTP loads are made of, shared with bench:http (which measures load (b)
 * beside the HTTP API in the same run): the 2 KB bench message, a fresh `petrel serve` with a
 * sender domain and a key, Postfix's smtp-source against it, a probe session timing end of
 * DATA → 250, and the server's CPU and memory from /proc.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
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
  peakRssMb: number;
  rssMb: number;
}

export function procStats(pid: number): ProcStats {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 (1-based) of /proc/PID/stat, in clock ticks (100/s here).
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { cpuMs: ticks * 10, peakRssMb: kb("VmHWM") / 1024, rssMb: kb("VmRSS") / 1024 };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A fresh `petrel serve` (own data directory) with the bench sender and an API key. */
export async function startBenchServer(
  label: string,
  options: { dkim?: DkimMode | undefined; profile?: boolean; scopes?: string } = {},
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
      smtp: { limits: { maxConnectionsPerIp: 5000, maxConnections: 5000 } },
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

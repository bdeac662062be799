/**
 * bench:http — how fast the HTTP API accepts mail, beside SMTP in the same run (issue 9).
 *
 * Loads, each against a fresh `petrel serve` child process with its own data directory:
 *  (b) SMTP: bench:accept's load (b), Postfix's smtp-source -d (20 sessions, many messages per
 *      connection, 2 KB) — the rate the API is compared with;
 *  (h) POST /v1/messages from 20 concurrent keep-alive clients, one 2 KB text message each
 *      request, timing request → 202;
 *  (B) POST /v1/messages/batch with 100 such messages per request, from 20 clients;
 *  (m) POST /v1/messages/mime with the same message ready-made (no MailComposer), from 20
 *      clients — not a goal of its own: it shows what composing the MIME costs.
 * For each: messages/s, p50/p99 latency (to 250 via a probe session for SMTP, to 202/200 for the
 * API, per request), the server's CPU ms per message (from /proc; the client shares the cores:
 * see the design notes). Goals printed beside the figures: (h) ≥ 80% of (b)'s rate, (B) ≥ 2×.
 *
 * The API clients are raw keep-alive HTTP/1.1 over net sockets (bench/raw-http.ts): node:http's
 * Agent cost about as much client CPU per request as the server spent, on the same 2 cores.
 * The loads run --rounds times, interleaved (b, h, B, m, b, h, …: the host's other load hits
 * them alike); the summary gives each load's median rate and CPU, and the ratios of the medians.
 *
 * Usage: npm run bench:http -- [--messages 10000] [--batch-messages 20000] [--clients 20]
 *        [--only b,h,B,m] [--rounds 3] [--profile]
 */
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import type { PetrelProcess } from "../test/support/petrel-process.js";
import {
  BODY,
  benchMessage,
  FROM,
  type ProcStats,
  percentile,
  procStats,
  smtpSource,
  startBenchServer,
  startProbe,
} from "./accept-load.js";
import { RawHttpClient } from "./raw-http.js";
import { median } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "10000" },
    "batch-messages": { type: "string", default: "20000" },
    "batch-size": { type: "string", default: "100" },
    clients: { type: "string", default: "20" },
    only: { type: "string", default: "b,h,B,m" },
    rounds: { type: "string", default: "3" },
    profile: { type: "boolean", default: false },
  },
});
const MESSAGES = Number(args.messages);
const BATCH_MESSAGES = Number(args["batch-messages"]);
const BATCH_SIZE = Number(args["batch-size"]);
const CLIENTS = Number(args.clients);
const ONLY = new Set(args.only.split(","));
const ROUNDS = Number(args.rounds);

interface Result {
  readonly rate: number;
  readonly cpuMsPerMessage: number;
}

function report(
  label: string,
  count: number,
  seconds: number,
  before: ProcStats,
  after: ProcStats,
  latencies: number[],
  goal = "",
): Result {
  const rate = count / seconds;
  const cpu = (after.cpuMs - before.cpuMs) / count;
  console.log(
    `${label.padEnd(46)} ${rate.toFixed(0).padStart(6)} msg/s  p50 ${percentile(latencies, 50).toFixed(2)} ms  ` +
      `p99 ${percentile(latencies, 99).toFixed(2)} ms  cpu ${cpu.toFixed(3)} ms/msg  peak RSS ${after.peakRssMb.toFixed(0)} MB  ` +
      `(${count} msgs in ${seconds.toFixed(1)} s)${goal ? `  ${goal}` : ""}`,
  );
  return { rate, cpuMsPerMessage: cpu };
}

function jsonMessage(n: number): Record<string, unknown> {
  return { from: FROM, to: ["sink@example.com"], subject: `bench ${n}`, text: BODY };
}

/**
 * `clients` loops, each with its own keep-alive connection, sending `requests` request bodies
 * between them; returns each request's latency (ms), sorted.
 */
async function httpLoad(
  port: number,
  key: string,
  path: string,
  requests: number,
  bodyOf: (n: number) => Buffer,
  expect: number,
): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      // One socket per client: keep-alive, as an app's HTTP client pool would hold.
      const client = await RawHttpClient.open(port, headers);
      try {
        for (;;) {
          const n = next++;
          if (n >= requests) return;
          const body = bodyOf(n);
          const t0 = performance.now();
          const answer = await client.request("POST", path, body);
          latencies.push(performance.now() - t0);
          if (answer.status !== expect)
            throw new Error(`${path}: ${answer.status} ${answer.body.toString().slice(0, 300)}`);
        }
      } finally {
        client.close();
      }
    }),
  );
  return latencies.sort((a, b) => a - b);
}

async function measured<T>(
  label: string,
  fn: (petrel: PetrelProcess, key: string) => Promise<T>,
): Promise<{ value: T; seconds: number; before: ProcStats; after: ProcStats }> {
  const { petrel, key } = await startBenchServer(label, { scopes: "mail.send", profile: args.profile });
  try {
    const pid = petrel.child.pid!;
    const before = procStats(pid);
    const t0 = performance.now();
    const value = await fn(petrel, key);
    const seconds = (performance.now() - t0) / 1000;
    const after = procStats(pid);
    return { value, seconds, before, after };
  } finally {
    await petrel.stop();
  }
}

async function loadSmtp(): Promise<Result> {
  const run = await measured("smtp", async (petrel) => {
    const port = petrel.ports.submission!;
    const probe = startProbe(port);
    await smtpSource(port, CLIENTS, MESSAGES, ["-d"]);
    return probe.stop();
  });
  return report(
    `(b) SMTP, smtp-source -d, ${CLIENTS} sessions`,
    MESSAGES,
    run.seconds,
    run.before,
    run.after,
    run.value,
  );
}

async function loadHttp(smtp: Result | undefined): Promise<Result> {
  // Bodies prepared before the clock starts: the client's JSON work is not the server's.
  const bodies = Array.from({ length: MESSAGES }, (_, n) => Buffer.from(JSON.stringify(jsonMessage(n))));
  const run = await measured("http", (petrel, key) =>
    httpLoad(petrel.ports.http!, key, "/v1/messages", MESSAGES, (n) => bodies[n]!, 202),
  );
  const rate = MESSAGES / run.seconds;
  const goal = smtp
    ? `→ ${((100 * rate) / smtp.rate).toFixed(0)}% of SMTP (b)   (goal ≥ 80%: ${rate >= 0.8 * smtp.rate ? "met" : "not met"})`
    : "";
  return report(
    `(h) POST /v1/messages, ${CLIENTS} keep-alive clients`,
    MESSAGES,
    run.seconds,
    run.before,
    run.after,
    run.value,
    goal,
  );
}

async function loadBatch(smtp: Result | undefined): Promise<Result> {
  const requests = Math.ceil(BATCH_MESSAGES / BATCH_SIZE);
  const bodies = Array.from({ length: requests }, (_, r) =>
    Buffer.from(
      JSON.stringify({
        messages: Array.from({ length: BATCH_SIZE }, (_, i) => jsonMessage(r * BATCH_SIZE + i)),
      }),
    ),
  );
  const run = await measured("batch", (petrel, key) =>
    httpLoad(petrel.ports.http!, key, "/v1/messages/batch", requests, (n) => bodies[n]!, 200),
  );
  const count = requests * BATCH_SIZE;
  const rate = count / run.seconds;
  const goal = smtp
    ? `→ ${(rate / smtp.rate).toFixed(2)}× SMTP (b)   (goal ≥ 2×: ${rate >= 2 * smtp.rate ? "met" : "not met"})`
    : "";
  return report(
    `(B) POST /v1/messages/batch, ${BATCH_SIZE}/request, ${CLIENTS} clients`,
    count,
    run.seconds,
    run.before,
    run.after,
    run.value,
    `(latency per request) ${goal}`,
  );
}

async function loadMime(smtp: Result | undefined): Promise<Result> {
  const bodies = Array.from({ length: MESSAGES }, (_, n) =>
    Buffer.from(JSON.stringify({ from: FROM, to: ["sink@example.com"], raw: benchMessage(n).toString() })),
  );
  const run = await measured("mime", (petrel, key) =>
    httpLoad(petrel.ports.http!, key, "/v1/messages/mime", MESSAGES, (n) => bodies[n]!, 202),
  );
  const rate = MESSAGES / run.seconds;
  return report(
    `(m) POST /v1/messages/mime, ${CLIENTS} clients`,
    MESSAGES,
    run.seconds,
    run.before,
    run.after,
    run.value,
    smtp ? `→ ${((100 * rate) / smtp.rate).toFixed(0)}% of SMTP (b) (no goal: MIME ready-made)` : "",
  );
}

console.log(
  `bench:http — 2 KB text messages, durable commits (SQLite WAL, synchronous=FULL); client and server share the cores; ${ROUNDS} round(s)`,
);
const runs: Record<"b" | "h" | "B" | "m", Result[]> = { b: [], h: [], B: [], m: [] };
for (let round = 1; round <= ROUNDS; round++) {
  if (ROUNDS > 1) console.log(`round ${round}/${ROUNDS}`);
  // Each round's ratios are to that round's SMTP rate; the summary uses the medians.
  const smtp = ONLY.has("b") ? await loadSmtp() : undefined;
  if (smtp) runs.b.push(smtp);
  if (ONLY.has("h")) runs.h.push(await loadHttp(smtp));
  if (ONLY.has("B")) runs.B.push(await loadBatch(smtp));
  if (ONLY.has("m")) runs.m.push(await loadMime(smtp));
}

if (ROUNDS > 1 || ONLY.size > 1) {
  console.log(`summary (medians of ${ROUNDS} round(s)):`);
  const smtpRate = runs.b.length > 0 ? median(runs.b.map((r) => r.rate)) : undefined;
  const labels = { b: "(b) SMTP", h: "(h) POST /v1/messages", B: "(B) batch", m: "(m) mime" } as const;
  for (const load of ["b", "h", "B", "m"] as const) {
    const results = runs[load];
    if (results.length === 0) continue;
    const rate = median(results.map((r) => r.rate));
    const cpu = median(results.map((r) => r.cpuMsPerMessage));
    let versus = "";
    if (smtpRate !== undefined && load !== "b") {
      const ratio = rate / smtpRate;
      versus =
        load === "h"
          ? `  ${(100 * ratio).toFixed(0)}% of SMTP (goal ≥ 80%: ${ratio >= 0.8 ? "met" : "not met"})`
          : load === "B"
            ? `  ${ratio.toFixed(2)}× SMTP (goal ≥ 2×: ${ratio >= 2 ? "met" : "not met"})`
            : `  ${(100 * ratio).toFixed(0)}% of SMTP`;
    }
    console.log(
      `  ${labels[load].padEnd(24)} ${rate.toFixed(0).padStart(6)} msg/s  cpu ${cpu.toFixed(3)} ms/msg` +
        `  (rates ${results.map((r) => r.rate.toFixed(0)).join(", ")})${versus}`,
    );
  }
}

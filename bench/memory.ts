/**
 * bench:memory — what a large message costs the server in memory (issue 12's memory goal).
 *
 * A 34 MiB message (a 25 MB attachment, base64) is submitted from a trusted network over plain
 * SMTP to a fresh `petrel serve`; the server's peak RSS (VmHWM from /proc, tracked by the kernel,
 * so no peak is missed between samples) minus its idle RSS is printed beside the goal (≤ 2× the
 * message's size). Then, against another fresh server, ten such messages in flight at once
 * (goal: the peak stays under 1 GB). Last, issue 13's memory budget: 200 sessions sending 30 MB
 * each at once to a server with smtp.limits.maxBufferedBytes 256 MB; the peak RSS above idle is
 * printed beside the goal (≤ the budget + 300 MB), with how many got 250 and how many 452 4.3.1.
 *
 * The one-message figure is the median of `--runs` fresh servers (3 by default, each run printed):
 * where the peak falls against the garbage collector's timing varies from run to run.
 *
 * With --workers N (smtp.workers; default 1, the shipped default) the figures are summed over the
 * server's processes: RSS at idle, and at the peak each process's own peak (VmHWM), so the sum
 * may exceed the moment the whole tree peaked, never fall short of it.
 *
 * Usage: npm run bench:memory -- [--attachment-mb 25] [--parallel 10] [--runs 3] [--workers 1]
 *          [--sessions 200] [--session-mb 30] [--budget-mb 256] [--only one|parallel|burst]
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { petrelOk, startPetrel, tempDataDir } from "../test/support/petrel-process.js";
import { RawSmtpSession } from "../test/support/raw-smtp.js";
import { procStats } from "./accept-load.js";
import { median } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    "attachment-mb": { type: "string", default: "25" },
    parallel: { type: "string", default: "10" },
    sessions: { type: "string", default: "200" },
    "session-mb": { type: "string", default: "30" },
    "budget-mb": { type: "string", default: "256" },
    runs: { type: "string", default: "3" },
    workers: { type: "string", default: "1" },
    only: { type: "string" },
  },
});
const FROM = "bench@bench.example";
const WORKERS = Number(args.workers);
const MB = 1024 * 1024;

function bigMessage(attachmentBytes: number): Buffer {
  const b64 = randomBytes(attachmentBytes).toString("base64").replace(/.{76}/g, "$&\r\n");
  return Buffer.from(
    `From: ${FROM}\r\nTo: sink@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n` +
      `Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n` +
      `--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n--b--\r\n`,
  );
}

async function run(content: Buffer, parallel: number): Promise<{ idleMb: number; peakMb: number }> {
  const dataDir = tempDataDir("petrel-bench-memory-");
  await petrelOk(dataDir, ["domains", "add", "bench.example"]);
  const petrel = await startPetrel(dataDir, {
    config: {
      auth: { trustedNetworks: [{ network: "127.0.0.0/8", account: "default" }] },
      smtp: { workers: WORKERS, limits: { maxMessageSize: 64 * MB } },
    },
  });
  try {
    const port = petrel.ports.submission!;
    // Warm up: one small message, so the idle figure includes what every first message loads.
    const warm = await RawSmtpSession.open({ port });
    await warm.send({
      from: FROM,
      to: ["sink@example.com"],
      content: Buffer.from(`From: ${FROM}\r\n\r\nhi\r\n`),
    });
    await warm.quit();
    await new Promise((r) => setTimeout(r, 500));
    const idleMb = procStats(petrel.child.pid!).rssMb;
    const sessions = await Promise.all(Array.from({ length: parallel }, () => RawSmtpSession.open({ port })));
    const replies = await Promise.all(
      sessions.map((s) => s.send({ from: FROM, to: ["sink@example.com"], content })),
    );
    for (const r of replies) if (r.code !== 250) throw new Error(`${r.code} ${r.text}`);
    await Promise.all(sessions.map((s) => s.quit()));
    return { idleMb, peakMb: procStats(petrel.child.pid!).peakRssMb };
  } finally {
    await petrel.stop();
  }
}

const content = bigMessage(Number(args["attachment-mb"]) * MB);
const sizeMb = content.length / MB;
console.log(
  `bench:memory — a ${sizeMb.toFixed(1)} MiB message (${args["attachment-mb"]} MiB attachment, base64)` +
    (WORKERS === 1 ? "" : `, smtp.workers ${WORKERS} (summed over the server's processes)`),
);
const only = args.only;
if (only === undefined || only === "one") {
  const ratios: number[] = [];
  for (let i = 0; i < Number(args.runs); i++) {
    const one = await run(content, 1);
    const above = one.peakMb - one.idleMb;
    ratios.push(above / sizeMb);
    console.log(
      `one message (run ${i + 1}):   peak RSS ${one.peakMb.toFixed(0)} MB, idle ${one.idleMb.toFixed(0)} MB → ` +
        `${above.toFixed(0)} MB above idle = ${(above / sizeMb).toFixed(1)}× its size`,
    );
  }
  console.log(
    `one message:   median ${median(ratios).toFixed(1)}× its size above idle over ${ratios.length} runs ` +
      `(${Math.min(...ratios).toFixed(1)}–${Math.max(...ratios).toFixed(1)}×)   (goal ≤ 2×)`,
  );
}
if (only === undefined || only === "parallel") {
  const n = Number(args.parallel);
  const many = await run(content, n);
  console.log(
    `${n} in flight:  peak RSS ${many.peakMb.toFixed(0)} MB (idle ${many.idleMb.toFixed(0)} MB), ` +
      `${((many.peakMb - many.idleMb) / n / sizeMb).toFixed(1)}× size each   (goal < 1024 MB)`,
  );
}

/** Many sessions in DATA at once against a memory budget: peak RSS above idle, and every reply. */
async function burst(sessions: number, messageMb: number, budgetMb: number) {
  const dataDir = tempDataDir("petrel-bench-memory-");
  await petrelOk(dataDir, ["senders", "add", FROM]);
  const petrel = await startPetrel(dataDir, {
    config: {
      auth: { trustedNetworks: [{ network: "127.0.0.0/8", account: "default" }] },
      smtp: {
        workers: WORKERS,
        limits: { maxBufferedBytes: budgetMb * MB, maxConnectionsPerIp: sessions + 10, maxLineLength: 0 },
      },
    },
  });
  try {
    const port = petrel.ports.submission!;
    await new Promise((r) => setTimeout(r, 500));
    const idleMb = procStats(petrel.child.pid!).rssMb;
    const line = `${"m".repeat(998)}\r\n`;
    // Just under the 30 MB default maxMessageSize (over it would be 552 5.3.4).
    const body = line.repeat(Math.floor((messageMb * MB - 64 * 1024) / line.length));
    const message = Buffer.from(`From: ${FROM}\r\nSubject: burst\r\n\r\n${body}`);
    const replies = await Promise.all(
      Array.from({ length: sessions }, async () => {
        const session = await RawSmtpSession.open({ port });
        try {
          await session.command(`MAIL FROM:<${FROM}>`, 250);
          await session.command("RCPT TO:<sink@example.com>", 250);
          return await session.sendStuffed(message); // no line starts with a dot
        } finally {
          await session.quit();
        }
      }),
    );
    return { idleMb, peakMb: procStats(petrel.child.pid!).peakRssMb, replies };
  } finally {
    await petrel.stop();
  }
}

if (only === undefined || only === "burst") {
  const sessions = Number(args.sessions);
  const budgetMb = Number(args["budget-mb"]);
  const b = await burst(sessions, Number(args["session-mb"]), budgetMb);
  const accepted = b.replies.filter((r) => r.code === 250).length;
  const storage = b.replies.filter((r) => r.code === 452 && r.text.startsWith("4.3.1")).length;
  const other = b.replies.length - accepted - storage;
  console.log(
    `${sessions} × ${args["session-mb"]} MB, budget ${budgetMb} MB: peak RSS ${b.peakMb.toFixed(0)} MB (idle ${b.idleMb.toFixed(0)} MB) → ` +
      `${(b.peakMb - b.idleMb).toFixed(0)} MB above idle   (goal ≤ ${budgetMb + 300} MB); ${accepted} got 250, ` +
      `${storage} got 452 4.3.1${other > 0 ? `, ${other} OTHER` : ""}`,
  );
}

/**
 * Memory budget and back-pressure (issue 13 item 3), against a real `petrel serve` whose RSS is
 * read from /proc while it runs:
 *  - many sessions send big messages at once: RSS stays within the budget plus 300 MB, every
 *    refusal is `452 4.3.1` (at DATA, or at the end for a session given up mid-DATA), and every
 *    message answered 250 is in the store. Scaled to run in well under a minute here
 *    (MEMORY_TEST_SESSIONS / MEMORY_TEST_MB / MEMORY_TEST_BUDGET_MB give the full figure:
 *    200 × 30 MB).
 *  - clients that pipeline commands and never read the replies: each is paused at a small
 *    bound, and its idle timeout still closes it.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import {
  type PetrelProcess,
  petrelOk,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";

const MB = 1024 * 1024;
const SESSIONS = Number(process.env.MEMORY_TEST_SESSIONS ?? 200);
const MESSAGE_MB = Number(process.env.MEMORY_TEST_MB ?? 3);
const BUDGET_MB = Number(process.env.MEMORY_TEST_BUDGET_MB ?? 64);
const IDLE_MS = 3000;
const SILENT_READERS = 100;

function idleTimeouts(petrel: PetrelProcess): number {
  return petrel.logRecords().filter((r) => r.msg === "smtp session closed" && r.reason === "idle-timeout")
    .length;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

async function serve(dataDir: string, idleTimeoutMs: number): Promise<PetrelProcess> {
  await petrelOk(dataDir, ["senders", "add", "big@memory.example"]);
  return startPetrel(dataDir, {
    config: {
      auth: { trustedNetworks: [{ network: "127.0.0.1/32", account: "default" }] },
      smtp: {
        limits: {
          maxBufferedBytes: BUDGET_MB * MB,
          maxConnectionsPerIp: 1000,
          maxLineLength: 0,
          idleTimeoutMs,
        },
      },
    },
  });
}

describe("memory budget", () => {
  const dataDir = tempDataDir();
  let petrel: PetrelProcess;
  before(async () => {
    petrel = await serve(dataDir, 120_000);
  });
  after(async () => {
    await petrel?.stop();
    removeDataDir(dataDir);
  });

  it(`${SESSIONS} sessions × ${MESSAGE_MB} MB: RSS within budget + 300 MB, refusals 452 4.3.1, none lost`, async () => {
    const pid = petrel.child.pid!;
    const baseline = rssBytes(pid);
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssBytes(pid));
    }, 20);
    const line = `${"m".repeat(998)}\r\n`;
    // Just under the 30 MB default maxMessageSize at the full figure (over it would be 552 5.3.4).
    const body = Buffer.from(line.repeat(Math.floor((MESSAGE_MB * MB - 64 * 1024) / line.length)));
    const content = Buffer.concat([Buffer.from("From: big@memory.example\r\nSubject: big\r\n\r\n"), body]);
    const started = performance.now();
    const outcomes = await Promise.all(
      Array.from({ length: SESSIONS }, async () => {
        const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
        try {
          await session.command("MAIL FROM:<big@memory.example>", 250);
          await session.command("RCPT TO:<user@example.com>", 250);
          return await session.sendStuffed(content); // no line starts with a dot: stuffed as is
        } finally {
          await session.quit();
        }
      }),
    );
    clearInterval(sampler);
    const seconds = (performance.now() - started) / 1000;
    const accepted = outcomes.filter((r) => r.code === 250);
    const refused = outcomes.filter((r) => r.code !== 250);
    const atData = refused.filter((r) => r.afterDataMs === undefined).length;
    console.log(
      `# ${SESSIONS} sessions × ${MESSAGE_MB} MB, budget ${BUDGET_MB} MB: RSS ${(baseline / MB).toFixed(0)} → peak ` +
        `${(peak / MB).toFixed(0)} MB (goal ≤ baseline + ${BUDGET_MB} + 300); ${accepted.length} accepted, ` +
        `${refused.length} got 452 4.3.1 (${atData} at DATA, ${refused.length - atData} at the end); ${seconds.toFixed(1)} s`,
    );
    for (const r of refused) assert.match(`${r.code} ${r.text}`, /^452 4\.3\.1 /);
    assert.ok(accepted.length > 0, "some sessions got through");
    assert.ok(refused.length > 0, "the budget refused some");
    assert.ok(
      peak - baseline <= (BUDGET_MB + 300) * MB,
      `RSS grew by ${((peak - baseline) / MB).toFixed(0)} MB`,
    );
    // None lost: every 250 is in the store.
    const db = new Database(join(dataDir, "petrel.db"), { readonly: true });
    try {
      const has = db.prepare("SELECT 1 FROM messages WHERE id = ?").pluck();
      for (const r of accepted) {
        const id = /queued as (\S+)/.exec(r.text)![1]!;
        assert.equal(has.get(id), 1, `${id} stored`);
      }
    } finally {
      db.close();
    }
    const logged = petrel.logRecords();
    assert.ok(!logged.some((r) => r.msg === "smtp session failed"));
  });
});

describe("a message that fits the budget alone", () => {
  const dataDir = tempDataDir();
  let petrel: PetrelProcess;
  before(async () => {
    await petrelOk(dataDir, ["senders", "add", "big@memory.example"]);
    petrel = await startPetrel(dataDir, {
      config: {
        auth: { trustedNetworks: [{ network: "127.0.0.1/32", account: "default" }] },
        smtp: { limits: { maxBufferedBytes: 8 * MB, maxLineLength: 0 } },
      },
    });
  });
  after(async () => {
    await petrel?.stop();
    removeDataDir(dataDir);
  });

  it("is accepted though finishing it would count twice its size more than the budget has", async () => {
    // 6 MB received fits 8 MB; the finish's copies (12 MB) cannot, and need not: nothing else waits.
    const line = `${"m".repeat(998)}\r\n`;
    const content = Buffer.from(
      `From: big@memory.example\r\n\r\n${line.repeat(Math.floor((6 * MB) / line.length))}`,
    );
    const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
    try {
      await session.command("MAIL FROM:<big@memory.example>", 250);
      await session.command("RCPT TO:<user@example.com>", 250);
      const reply = await session.sendStuffed(content);
      assert.equal(reply.code, 250, `${reply.code} ${reply.text}`);
    } finally {
      await session.quit();
    }
  });
});

describe("clients that do not read their replies", () => {
  const dataDir = tempDataDir();
  let petrel: PetrelProcess;
  before(async () => {
    petrel = await serve(dataDir, IDLE_MS);
  });
  after(async () => {
    await petrel?.stop();
    removeDataDir(dataDir);
  });

  it(`${SILENT_READERS} clients that never read replies are paused and still time out`, async () => {
    const pid = petrel.child.pid!;
    const baseline = rssBytes(pid);
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssBytes(pid));
    }, 20);
    // EHLO: 8 bytes in, ~150 out, so the replies soon exceed what the kernel buffers.
    const ehlos = Buffer.from("EHLO x\r\n".repeat(20_000));
    const sockets: Socket[] = [];
    const timeoutsBefore = idleTimeouts(petrel);
    for (let i = 0; i < SILENT_READERS; i++) {
      const socket = netConnect({ host: "127.0.0.1", port: petrel.ports.submission! });
      socket.on("error", () => {});
      socket.pause(); // never read: the server's replies pile up
      socket.on("connect", () => socket.write(ehlos));
      sockets.push(socket);
    }
    const t0 = performance.now();
    // A client that does not read would not notice the close either: count them at the server.
    const deadline = Date.now() + IDLE_MS + 15_000;
    while (idleTimeouts(petrel) - timeoutsBefore < SILENT_READERS && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    clearInterval(sampler);
    const closedAfter = performance.now() - t0;
    const timeouts = idleTimeouts(petrel) - timeoutsBefore;
    console.log(
      `# ${SILENT_READERS} clients not reading replies: RSS ${(baseline / MB).toFixed(0)} → peak ${(peak / MB).toFixed(0)} MB, ` +
        `${timeouts} closed by the idle timeout (${IDLE_MS} ms) within ${closedAfter.toFixed(0)} ms`,
    );
    assert.equal(timeouts, SILENT_READERS);
    assert.ok(peak - baseline < 150 * MB, `RSS grew by ${((peak - baseline) / MB).toFixed(0)} MB`);
    for (const s of sockets) s.destroy();
  });
});

/**
 * Admission before TLS (issue 13 item 2), against a real `petrel serve` process: 10,000
 * connections from one IP to the implicit-TLS port that each send half a ClientHello and stall.
 * The per-IP cap is counted from TCP accept, so the server holds at most that many of them
 * (descriptors counted in /proc), the rest are closed at once, the held ones are dropped at the
 * TLS handshake timeout, clients from other IPs are served meanwhile, and the refusals are
 * logged rate-limited (a few lines, not 10,000).
 */
import assert from "node:assert/strict";
import { readdirSync, readlinkSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { after, before, describe, it } from "node:test";
import { connect as tlsConnect } from "node:tls";
import {
  type PetrelProcess,
  readCa,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { waitFor } from "./support/wait.js";

const PER_IP = 20;
const ATTACKS = 10_000;
const IN_FLIGHT = 400;
const HANDSHAKE_TIMEOUT_MS = 8000;
/** The start of a TLS record carrying a ClientHello, cut short: the server waits for the rest. */
const HALF_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);

function socketsHeld(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) n++;
    } catch {
      // closed between readdir and readlink
    }
  }
  return n;
}

/** Time from connect to the 220 greeting over implicit TLS, from another IP. */
function greetingTime(port: number, ca: Buffer, localAddress: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const raw = netConnect({ host: "127.0.0.1", port, localAddress });
    const socket = tlsConnect({ socket: raw, ca, servername: "localhost" });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no greeting within 5 s"));
    }, 5000);
    socket.setEncoding("utf8");
    socket.once("data", (text: string) => {
      clearTimeout(timer);
      socket.end("QUIT\r\n");
      if (text.startsWith("220 ")) resolve(performance.now() - started);
      else reject(new Error(`unexpected greeting ${text}`));
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Sockets held by the server: the main process and its session processes (smtp.workers). */
function serverSocketsHeld(petrel: PetrelProcess): number {
  const started = petrel.logRecords().find((r) => r.msg === "smtp workers started");
  const pids = [petrel.child.pid!, ...((started?.workers as number[] | undefined) ?? [])];
  return pids.reduce((n, pid) => n + socketsHeld(pid), 0);
}

// Issue 12: with smtp.workers > 1 the caps are still counted at accept, in the main process.
for (const workers of [1, 2])
  describe(`admission before TLS (smtp.workers ${workers})`, () => {
    const dataDir = tempDataDir();
    let petrel: PetrelProcess;

    before(async () => {
      petrel = await startPetrel(dataDir, {
        config: {
          smtp: {
            workers,
            limits: { maxConnectionsPerIp: PER_IP, tlsHandshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS },
          },
        },
      });
    });
    after(async () => {
      await petrel?.stop();
      removeDataDir(dataDir);
    });

    it("holds at most the per-IP cap of 10,000 stalled handshakes and serves other IPs meanwhile", async () => {
      const port = petrel.ports.submissions!;
      const ca = readCa(petrel);
      const baseline = serverSocketsHeld(petrel);
      let maxHeld = 0;
      const sampler = setInterval(() => {
        maxHeld = Math.max(maxHeld, serverSocketsHeld(petrel) - baseline);
      }, 25);

      const stalled: import("node:net").Socket[] = [];
      let refusedAtOnce = 0;
      let started = 0;
      const attacker = async (): Promise<void> => {
        while (started < ATTACKS) {
          started++;
          await new Promise<void>((resolve) => {
            const socket = netConnect({ host: "127.0.0.1", port, localAddress: "127.0.0.5" });
            socket.on("error", () => {});
            let settled = false;
            socket.once("connect", () => socket.write(HALF_HELLO));
            socket.once("close", () => {
              if (settled) return;
              settled = true;
              refusedAtOnce++;
              resolve();
            });
            // Held by the server (still open after a moment): keep it stalled, move on.
            setTimeout(() => {
              if (settled) return;
              settled = true;
              stalled.push(socket);
              resolve();
            }, 200);
          });
        }
      };
      const floodStarted = Date.now();
      const flood = Promise.all(Array.from({ length: IN_FLIGHT }, attacker));
      // Clients from another IP while the flood runs.
      const probes: number[] = [];
      while (started < ATTACKS) probes.push(await greetingTime(port, ca, "127.0.0.6"));
      await flood;
      const floodMs = Date.now() - floodStarted;
      probes.push(await greetingTime(port, ca, "127.0.0.6"));
      clearInterval(sampler);

      const stillOpen = stalled.filter((s) => !s.destroyed && s.readyState === "open").length;
      console.log(
        `# ${ATTACKS} stalled handshakes from one IP: ${refusedAtOnce} closed at once, ${stillOpen} held` +
          ` (cap ${PER_IP}); server sockets held beyond baseline: max ${maxHeld} (goal ≤ ${PER_IP} + probes);` +
          ` other IP greeted ${probes.length} times, worst ${Math.max(...probes).toFixed(0)} ms (goal < 1000 ms)`,
      );
      assert.ok(stillOpen <= PER_IP, `${stillOpen} stalled handshakes held, cap ${PER_IP}`);
      // The probe holds one connection at a time (plus one closing): nothing else may be held.
      // With workers, a socket being handed to a child is open in both processes until the
      // primary closes its copy after the send: one more per child may be counted in passing
      // (seen once in CI: 23 with 2 workers while the cap of 20 held).
      const inHandoff = workers > 1 ? workers : 0;
      assert.ok(maxHeld <= PER_IP + 2 + inHandoff, `server held ${maxHeld} sockets beyond its baseline`);
      assert.ok(probes.length >= 2);

      // The held ones are dropped at the handshake timeout (deadline: timeout + 5 s).
      const deadline = Date.now() + HANDSHAKE_TIMEOUT_MS + 5000;
      while (stalled.some((s) => !s.destroyed && s.readyState !== "closed") && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(stalled.filter((s) => !s.destroyed && s.readyState !== "closed").length, 0);
      // The server writes its log lines asynchronously: a client may see its socket closed before
      // the line saying why has arrived (once under load: "1 handshake timeouts").
      const countTimeouts = (): number =>
        petrel.logRecords().filter((r) => r.reason === "tls-handshake-timeout").length;
      await waitFor(() => countTimeouts() >= stillOpen, {
        what: `${stillOpen} tls-handshake-timeout log lines`,
        timeoutMs: 10_000,
        describe: () => `${countTimeouts()} lines`,
      }).catch(() => {}); // the assertion below says what is wrong
      const records = petrel.logRecords();
      const timeouts = records.filter((r) => r.reason === "tls-handshake-timeout").length;
      // Each timeout frees a slot the flood may fill again: at most PER_IP per timeout period the
      // flood lasted (a busy host stretches the flood past one period), plus the last PER_IP held.
      const periods = Math.ceil(floodMs / HANDSHAKE_TIMEOUT_MS) + 1;
      assert.ok(
        timeouts >= stillOpen && timeouts <= PER_IP * periods,
        `${timeouts} handshake timeouts over a ${floodMs} ms flood`,
      );
      const refusalLines = records.filter((r) => r.msg?.toString().startsWith("smtp connection refused"));
      assert.ok(
        refusalLines.length >= 1 && refusalLines.length <= 10,
        `${refusalLines.length} refusal lines`,
      );
      for (const s of stalled) s.destroy();
    });
  });

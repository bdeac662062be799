/**
 * Logging never blocks or kills (issue 13 item 4): `petrel serve` with its stdout on a real
 * /dev/full, and on a file in a full 16 KB tmpfs (mounted in a private mount namespace
 * with unshare, so nothing is left mounted). Each time: the failure is reported once on stderr,
 * mail is accepted and stored, and SIGTERM ends the process with exit code 0.
 *
 * The ports cannot be read from the (lost) log, so they are read from /proc: the listening TCP
 * sockets whose inodes the process holds.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { stringify } from "yaml";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { PETREL_BIN, petrelOk, removeDataDir, tempDataDir, testConfig } from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";

/** Listening loopback TCP ports held by process `pid`. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // gone meanwhile
    }
  }
  const ports: number[] = [];
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== "0A" || !inodes.has(f[9]!)) continue;
    ports.push(Number.parseInt(f[1]!.split(":")[1]!, 16));
  }
  return ports;
}

async function waitFor<T>(what: string, probe: () => T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Run {
  readonly child: ChildProcess;
  readonly stderr: string[];
  readonly exited: Promise<number | string>;
}

function serve(command: string, args: string[], stdout: number | "pipe"): Run {
  const child = spawn(command, args, { stdio: ["ignore", stdout, "pipe"] });
  const reap = () => child.kill("SIGKILL");
  process.once("exit", reap);
  const stderr: string[] = [];
  child.stderr!.setEncoding("utf8").on("data", (c: string) => stderr.push(c));
  const exited = new Promise<number | string>((res) =>
    child.on("exit", (code, signal) => {
      process.off("exit", reap);
      res(code ?? signal ?? -1);
    }),
  );
  return { child, stderr, exited };
}

async function prepare(dataDir: string): Promise<string> {
  await petrelOk(dataDir, ["senders", "add", "app@logs.example"]);
  const config = testConfig(dataDir, {
    log: { level: "debug", format: "json" },
    auth: { trustedNetworks: [{ network: "127.0.0.1/32", account: "default" }] },
    smtp: { submissions: { enabled: false } },
    bounces: { listener: { enabled: false } },
  });
  const file = join(dataDir, "petrel-test.yaml");
  writeFileSync(file, stringify(config));
  return file;
}

/** Mail flows, then SIGTERM ends it; returns what stderr said. */
async function exercise(run: Run, dataDir: string): Promise<string> {
  try {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`serve wedged; stderr: ${run.stderr.join("")}`)), 45_000);
    });
    try {
      return await Promise.race([flowAndStop(run, dataDir), deadline]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
  }
}

async function flowAndStop(run: Run, dataDir: string): Promise<string> {
  const [port] = await waitFor("the listener", () => {
    if (run.child.exitCode !== null) throw new Error(`serve exited: ${run.stderr.join("")}`);
    const ports = listeningPorts(run.child.pid!);
    return ports.length === 1 ? ports : undefined;
  });
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const session = await RawSmtpSession.open({ port: port! });
    for (let j = 0; j < 20; j++) {
      const reply = await session.send({
        from: "app@logs.example",
        to: ["user@example.com"],
        content: Buffer.from(
          `From: app@logs.example\r\nSubject: ${i}.${j}\r\n\r\n${`${"x".repeat(70)}\r\n`.repeat(30)}`,
        ),
      });
      assert.equal(reply.code, 250, `${reply.code} ${reply.text}`);
      ids.push(/queued as (\S+)/.exec(reply.text)![1]!);
    }
    await session.quit();
  }
  run.child.kill("SIGTERM");
  const code = await Promise.race([
    run.exited,
    new Promise((r) => setTimeout(() => r("still running 15 s after SIGTERM"), 15_000)),
  ]);
  assert.equal(code, 0);
  const store = openSqliteStore({ file: join(dataDir, "petrel.db") });
  try {
    for (const id of ids) assert.ok(await store.getMessageContent(id), `message ${id} stored`);
  } finally {
    await store.close();
  }
  return run.stderr.join("");
}

describe("a full log destination", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) removeDataDir(d);
  });

  it("stdout on /dev/full: reported once on stderr, mail flows, SIGTERM works", async () => {
    const dataDir = tempDataDir();
    dirs.push(dataDir);
    const config = await prepare(dataDir);
    const full = openSync("/dev/full", "w");
    const run = serve(process.execPath, [PETREL_BIN, "serve", "--config", config], full);
    closeSync(full);
    const stderr = await exercise(run, dataDir);
    assert.equal(stderr.match(/cannot write log output \(ENOSPC\)/g)?.length, 1, stderr);
  });

  it("stdout on a tmpfs that fills up: the same", { skip: process.getuid?.() !== 0 }, async () => {
    const dataDir = tempDataDir();
    dirs.push(dataDir);
    const config = await prepare(dataDir);
    const mountPoint = join(dataDir, "logfs");
    // Mounted, filled to the last byte, then serve starts with its stdout there.
    const script =
      'mkdir -p "$0" && mount -t tmpfs -o size=16k tmpfs "$0" && { cat /dev/zero > "$0/fill" 2>/dev/null; exec "$@" > "$0/petrel.log"; }';
    const run = serve(
      "unshare",
      ["-m", "sh", "-c", script, mountPoint, process.execPath, PETREL_BIN, "serve", "--config", config],
      "pipe",
    );
    const stderr = await exercise(run, dataDir);
    assert.equal(stderr.match(/cannot write log output \(ENOSPC\)/g)?.length, 1, stderr);
  });
});

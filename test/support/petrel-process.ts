/**
 * Runs the real `petrel` binary (the compiled CLI) for end-to-end tests: `serve` as a child
 * process on ephemeral loopback ports (read back from its JSON "listening" log lines), and the
 * admin commands against the same data directory, exactly as an operator would.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { SmtpTestClient } from "./dialogue.js";
import { dropTestDatabase, storeConfigFor, storeEnvFor } from "./test-store.js";

const here = dirname(fileURLToPath(import.meta.url));
/** dist/test/support → dist/src/cli/main.js */
export const PETREL_BIN = resolve(here, "../../src/cli/main.js");

export function tempDataDir(prefix = "petrel-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function petrelCli(
  dataDir: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CliResult> {
  return new Promise((resolvePromise) => {
    execFile(
      process.execPath,
      [PETREL_BIN, ...args, "--data-dir", dataDir],
      { env: { ...process.env, ...storeEnvFor(dataDir), ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolvePromise({ code, stdout, stderr });
      },
    );
  });
}

/** Runs a CLI command that must succeed; returns its stdout. */
export async function petrelOk(dataDir: string, args: readonly string[]): Promise<string> {
  const result = await petrelCli(dataDir, args);
  if (result.code !== 0)
    throw new Error(`petrel ${args.join(" ")} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

export interface ServeOptions {
  /** Extra configuration merged over the test defaults (loopback, ephemeral ports, JSON logs). */
  readonly config?: Record<string, unknown>;
  readonly env?: NodeJS.ProcessEnv;
  /** Extra arguments for node itself, e.g. ["--cpu-prof"]. */
  readonly nodeArgs?: readonly string[];
}

export interface PetrelProcess {
  readonly dataDir: string;
  readonly child: ChildProcess;
  readonly ports: Readonly<Record<string, number>>;
  /** Path of the self-signed certificate clients must trust. */
  readonly caFile: string;
  readonly logs: string[];
  /** Log lines parsed as JSON (non-JSON lines skipped). */
  logRecords(): Array<Record<string, unknown>>;
  /** Sends a signal and waits for the exit code (or signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  /** The exit code (or signal name), once the process has ended on its own or by a signal sent. */
  readonly exited: Promise<number | string>;
}

export function testConfig(dataDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    dataDir,
    hostname: "petrel.test",
    log: { level: "info", format: "json" },
    smtp: {
      host: "127.0.0.1",
      submission: { port: 0 },
      submissions: { port: 0 },
      shutdownGraceMs: 2000,
    },
    // No delivery unless a test asks for it (with its own loopback DNS and MX): mail stays queued,
    // and nothing ever reaches for the system's resolvers outside 127.0.0.0/8.
    delivery: { enabled: false },
    // Most end-to-end tests add a sender domain without publishing DNS records for it; the tests
    // of domain verification (test/e2e-dkim*.test.ts) turn the production default back on.
    sending: { requireVerifiedDomains: false },
    // The bounce listener (issue 5) on an ephemeral loopback port, never port 25.
    bounces: { listener: { port: 0 } },
    // The HTTP API (issue 9) on an ephemeral loopback port ("listening" line, listener http).
    http: { host: "127.0.0.1", port: 0 },
    // SQLite by default; TEST_STORE=postgres gives the directory a database (test-store.ts).
    ...storeConfigFor(dataDir),
  };
  return deepMerge(base, extra);
}

export async function startPetrel(dataDir: string, options: ServeOptions = {}): Promise<PetrelProcess> {
  const configFile = join(dataDir, "petrel-test.yaml");
  writeFileSync(configFile, stringify(testConfig(dataDir, options.config)));
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), PETREL_BIN, "serve", "--config", configFile],
    {
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  // Never leave a server behind when the test process ends, whatever happened to the test.
  const reap = () => child.kill("SIGKILL");
  process.once("exit", reap);
  child.once("exit", () => process.off("exit", reap));
  const logs: string[] = [];
  const ports: Record<string, number> = {};
  let buffered = "";
  const exited = new Promise<number | string>((res) =>
    child.on("exit", (code, signal) => res(code ?? signal ?? -1)),
  );
  const ready = new Promise<void>((res, rej) => {
    const onLine = (line: string) => {
      logs.push(line);
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (record.msg === "listening") ports[String(record.listener)] = Number(record.port);
        if (record.msg === "petrel is running") res();
      } catch {
        // not JSON: keep the raw line for diagnostics
      }
    };
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk;
      let nl = buffered.indexOf("\n");
      while (nl >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf("\n");
      }
    });
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => logs.push(chunk));
    void exited.then((code) =>
      rej(new Error(`petrel serve exited (${code}) before it was ready:\n${logs.join("\n")}`)),
    );
  });
  await ready;
  return {
    dataDir,
    child,
    ports,
    caFile: join(dataDir, "tls", "cert.pem"),
    logs,
    exited,
    logRecords: () =>
      logs.flatMap((line) => {
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export function readCa(petrel: PetrelProcess): Buffer {
  return readFileSync(petrel.caFile);
}

/**
 * A submission session from `localAddress`, past STARTTLS and the second EHLO, with AUTH offered:
 * where a test of the AUTH rules starts.
 */
export async function openAuthReadySession(
  petrel: PetrelProcess,
  localAddress: string,
): Promise<SmtpTestClient> {
  const c = await SmtpTestClient.connect(petrel.ports.submission!, { localAddress });
  await c.expect(/^220 /);
  c.send("EHLO client.test");
  await c.expect(/^250 STARTTLS$/m);
  c.send("STARTTLS");
  await c.expect(/^220 /);
  await c.startTls({ ca: readCa(petrel), servername: "localhost" });
  c.send("EHLO client.test");
  await c.expect(/^250 AUTH PLAIN LOGIN$/m);
  return c;
}

export function removeDataDir(dataDir: string): void {
  dropTestDatabase(dataDir);
  rmSync(dataDir, { recursive: true, force: true });
}

function deepMerge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

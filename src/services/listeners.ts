/**
 * Where a running `petrel serve` listens, for the commands that connect to it (`petrel send`,
 * issue 11): serve writes the addresses it actually bound — after any port 0 or flag was applied —
 * to dataDir/listening.json once its listeners are up, and removes the file when it stops. A
 * client reads it and connects there by default, so `serve --submission-port 2587` and then
 * `send` just works; with no (or a stale) file it falls back to the configuration.
 *
 * Invariants: the file is replaced atomically (write to a temporary name, then rename), so a
 * reader never sees half of it; a file whose process is gone is ignored.
 * Security: the file holds only addresses and ports, no secrets.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { PetrelConfig } from "../config/schema.js";

export type ListenerName = "submission" | "submissions" | "alternate" | "bounces";

export interface ListenerAddress {
  readonly name: ListenerName;
  /** The address bound, as configured ("0.0.0.0" = every IPv4 address). */
  readonly host: string;
  readonly port: number;
  /** How a client starts TLS there. */
  readonly tls: "starttls" | "implicit";
}

export interface ListeningFile {
  readonly pid: number;
  readonly startedAt: string;
  readonly listeners: readonly ListenerAddress[];
}

export function listeningPath(config: Pick<PetrelConfig, "dataDir">): string {
  return join(config.dataDir, "listening.json");
}

const TLS_OF: Record<ListenerName, ListenerAddress["tls"]> = {
  submission: "starttls",
  submissions: "implicit",
  alternate: "starttls",
  bounces: "starttls",
};

/** The addresses serve is listening on, from its listeners' bound ports. */
export function listenerAddresses(
  config: PetrelConfig,
  bound: ReadonlyArray<{ readonly name: string; readonly port: number }>,
  bouncePort: number | undefined,
): ListenerAddress[] {
  const out: ListenerAddress[] = [];
  for (const { name, port } of bound) {
    if (name in TLS_OF) {
      out.push({
        name: name as ListenerName,
        host: config.smtp.host,
        port,
        tls: TLS_OF[name as ListenerName],
      });
    }
  }
  if (bouncePort !== undefined) {
    const host = config.bounces.listener.host || config.smtp.host;
    out.push({ name: "bounces", host, port: bouncePort, tls: "starttls" });
  }
  return out;
}

export function writeListening(
  config: Pick<PetrelConfig, "dataDir">,
  listeners: readonly ListenerAddress[],
): void {
  const file = listeningPath(config);
  const content: ListeningFile = { pid: process.pid, startedAt: new Date().toISOString(), listeners };
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(content, null, 2)}\n`);
  renameSync(temporary, file);
}

/** Removes the file if this process wrote it (another serve may have replaced it since). */
export function removeListening(config: Pick<PetrelConfig, "dataDir">): void {
  const current = readFile(listeningPath(config));
  if (current?.pid === process.pid) rmSync(listeningPath(config), { force: true });
}

/** The running server's addresses, or undefined when there is no file or its process is gone. */
export function readListening(config: Pick<PetrelConfig, "dataDir">): ListeningFile | undefined {
  const current = readFile(listeningPath(config));
  if (!current || !isAlive(current.pid)) return undefined;
  return current;
}

function readFile(file: string): ListeningFile | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as ListeningFile;
    return typeof parsed.pid === "number" && Array.isArray(parsed.listeners) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: only checks that the process exists
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by another user
  }
}

export interface SubmissionTarget {
  readonly host: string;
  readonly port: number;
  /** true: TLS from the first byte (465 style); false: STARTTLS. */
  readonly implicitTls: boolean;
  /** Where the address came from, for messages: "petrel serve (listening.json)" or "configuration". */
  readonly source: "serve" | "configuration" | "options";
}

/** A wildcard bind address is reached on loopback. */
function connectHost(host: string): string {
  if (host === "" || host === "0.0.0.0") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "::1";
  return host;
}

/**
 * Where a client submits: the given server/port when set; else the running serve's submission
 * listener (STARTTLS), its alternate one, then its implicit-TLS one; else the configured
 * submission port on loopback.
 */
export function submissionTarget(
  config: PetrelConfig,
  given: { readonly server?: string | undefined; readonly port?: number | undefined } = {},
): SubmissionTarget {
  const running = readListening(config)?.listeners ?? [];
  if (given.port !== undefined) {
    const match = running.find((l) => l.port === given.port && l.name !== "bounces");
    return {
      host: given.server ?? connectHost(match?.host ?? config.smtp.host),
      port: given.port,
      implicitTls: match ? match.tls === "implicit" : given.port === config.smtp.submissions.port,
      source: "options",
    };
  }
  for (const name of ["submission", "alternate", "submissions"] as const) {
    const listener = running.find((l) => l.name === name);
    if (listener) {
      return {
        host: given.server ?? connectHost(listener.host),
        port: listener.port,
        implicitTls: listener.tls === "implicit",
        source: "serve",
      };
    }
  }
  return {
    host: given.server ?? connectHost(config.smtp.host),
    port: config.smtp.submission.port,
    implicitTls: false,
    source: "configuration",
  };
}

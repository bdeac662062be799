/**
 * Loads the effective configuration: defaults < YAML file < PETREL_* environment < flags.
 *
 * Environment names: PETREL_ + the key path in SCREAMING_SNAKE_CASE, path segments joined by a
 * double underscore: smtp.submission.port → PETREL_SMTP__SUBMISSION__PORT, dataDir →
 * PETREL_DATA_DIR. Values are read as YAML scalars/flow collections, so `2525`, `true` and
 * `[{network: 10.0.0.0/8, account: apps}]` all work. PETREL_CONFIG names the file.
 *
 * Security: the file and environment are trusted operator input, but every value is still
 * validated by the schema so a typo fails at start with its path and reason.
 */
import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { UsageError } from "../errors.js";
import { configSchema, type PetrelConfig, SECRET_PATHS } from "./schema.js";

export interface ConfigSources {
  /** YAML file path; undefined = PETREL_CONFIG or none. */
  readonly file?: string | undefined;
  /** Environment to read PETREL_* from. */
  readonly env?: NodeJS.ProcessEnv;
  /** Dotted-path overrides from flags, e.g. { "smtp.submission.port": 2587 }. */
  readonly overrides?: Readonly<Record<string, unknown>>;
}

/** Environment variables that are not config paths. */
const RESERVED_ENV = new Set(["PETREL_CONFIG", "PETREL_API_KEY"]);

type Tree = Record<string, unknown>;

export function loadConfig(sources: ConfigSources = {}): PetrelConfig {
  const env = sources.env ?? process.env;
  const file = sources.file ?? env.PETREL_CONFIG;
  const tree: Tree = file ? readConfigFile(file) : {};
  // Where each value set outside the file came from, so an error names what the operator wrote.
  const origins: Origin[] = [];
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith("PETREL_") || RESERVED_ENV.has(name) || raw === undefined) continue;
    const path = envNameToPath(name);
    setPath(tree, path, parseScalar(raw), `environment variable ${name}`);
    origins.push({ path, name });
  }
  for (const [path, value] of Object.entries(sources.overrides ?? {})) {
    if (value === undefined) continue;
    setPath(tree, path.split("."), value, `option for ${path}`);
    origins.push({ path: path.split("."), name: "option" });
  }
  const result = configSchema.safeParse(tree);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => `  ${issueSource(issue, origins)}: ${describe(issue)}`);
    throw new UsageError(`invalid configuration${file ? ` (${file})` : ""}:\n${lines.join("\n")}`);
  }
  const config = result.data;
  config.dataDir = resolve(config.dataDir);
  return config;
}

interface Origin {
  readonly path: readonly string[];
  /** The environment variable, or "option" for a command-line flag. */
  readonly name: string;
}

/**
 * What to call the place of an issue: the environment variable (or flag) that set the value —
 * for an unknown key, the one that wrote that key — else the key path in the file.
 */
function issueSource(issue: z.core.$ZodIssue, origins: readonly Origin[]): string {
  const path = issue.path.map(String);
  const targets = issue.code === "unrecognized_keys" ? issue.keys.map((key) => [...path, key]) : [path];
  const names = new Set<string>();
  for (const target of targets) {
    for (const origin of origins) {
      // The variable set this value, or a whole section around it (PETREL_AUTH__TRUSTED_NETWORKS=[…]).
      const n = Math.min(origin.path.length, target.length);
      if (!origin.path.slice(0, n).every((segment, i) => segment === target[i])) continue;
      // An unknown key is named by the variable alone (its path means nothing); a bad value also
      // by where it went: "PETREL_DKIM__SELECTOR_PREFIX (dkim.selectorPrefix)".
      names.add(issue.code === "unrecognized_keys" ? origin.name : `${origin.name} (${path.join(".")})`);
    }
  }
  if (names.size > 0) return [...names].join(", ");
  return path.join(".") || "(root)";
}

function describe(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys")
    return `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`;
  return issue.message;
}

function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(
      `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    throw new UsageError(`config file ${file} is not valid YAML: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new UsageError(`config file ${file} must contain a mapping of settings`);
  }
  return parsed as Tree;
}

export function envNameToPath(name: string): string[] {
  return name
    .slice("PETREL_".length)
    .split("__")
    .map((segment) => segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()));
}

export function pathToEnvName(path: readonly string[]): string {
  return `PETREL_${path.map((s) => s.replace(/([A-Z])/g, "_$1").toUpperCase()).join("__")}`;
}

function parseScalar(raw: string): unknown {
  try {
    return parseYaml(raw);
  } catch {
    return raw;
  }
}

function setPath(tree: Tree, path: readonly string[], value: unknown, source: string): void {
  let node: Tree = tree;
  for (const [i, key] of path.entries()) {
    if (i === path.length - 1) {
      node[key] = value;
      return;
    }
    const next = node[key];
    if (next === undefined) {
      const created: Tree = {};
      node[key] = created;
      node = created;
    } else if (typeof next === "object" && next !== null && !Array.isArray(next)) {
      node = next as Tree;
    } else {
      throw new UsageError(`${source}: ${path.slice(0, i + 1).join(".")} is not a section`);
    }
  }
}

/** The configuration with secrets replaced, for `petrel config`. */
export function maskSecrets(config: PetrelConfig): unknown {
  const copy = structuredClone(config) as unknown as Tree;
  for (const path of SECRET_PATHS) maskPath(copy, path.split("."));
  return copy;
}

function maskPath(node: unknown, keys: readonly string[]): void {
  if (node === null || typeof node !== "object") return;
  const [key, ...rest] = keys;
  if (key === undefined) return;
  const children = key === "*" ? Object.keys(node) : [key];
  for (const child of children) {
    const tree = node as Tree;
    if (rest.length > 0) maskPath(tree[child], rest);
    else if (tree[child] !== undefined && tree[child] !== "") tree[child] = "********";
  }
}

/** Resolves a path from the config relative to the data directory. */
export function inDataDir(config: PetrelConfig, path: string): string {
  return isAbsolute(path) ? path : resolve(config.dataDir, path);
}

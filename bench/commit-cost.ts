/**
 * bench:commit — what the spool's commit costs per accepted message, and what each part of the
 * schema and each group size adds to it: a price list for issue 12's largest remaining lever
 * (the commit thread is a quarter to a third of the server's CPU under bench:accept).
 *
 * It runs the commit thread's own code (`prepareEnqueue`, SQLite WAL, synchronous=FULL, the
 * migrations as they ship) on one thread with nothing else, so the CPU it reports is that code
 * alone: no SMTP, no structured clone from the main thread. Each cell is a fresh database file:
 * 2 KB messages with one recipient, committed in groups of G (the live group sizes measured
 * under bench:accept were 5.7 for load a and 9.0 for load b). The variants take one index out,
 * or the fsync, on the scratch database only, to price it: they are not configurations
 * Petrel offers (each index backs an API query or the delivery claim, named beside it).
 *
 * Rounds alternate the cells, and each figure is the median of the rounds: this machine's speed
 * drifts by 10-20% within minutes, so compare figures of one run only.
 *
 * Usage: npm run bench:commit -- [--messages 20000] [--groups 1,5,9,20,50] [--rounds 3]
 *        [--variants as-shipped,recipients_due,...] [--json]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { newQueueId } from "../src/queue/spool.js";
import { configureConnection, migrate } from "../src/store/sqlite/connection.js";
import { prepareEnqueue } from "../src/store/sqlite/messages.js";
import type { NewMessage } from "../src/store/types.js";
import { removeDataDir, tempDataDir } from "../test/support/petrel-process.js";
import { BODY, FROM } from "./accept-load.js";
import { median } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "20000" },
    groups: { type: "string", default: "1,5,9,20,50" },
    rounds: { type: "string", default: "3" },
    variants: { type: "string" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});

/** What a variant changes on the scratch database, and what the part it removes is there for. */
const VARIANTS: Record<string, { sql?: string; pragma?: string; backs: string }> = {
  "as-shipped": { backs: "the schema and settings as Petrel runs them" },
  recipients_due: {
    sql: "DROP INDEX recipients_due",
    backs: "the account's queue view, bulk actions by state, counts by state",
  },
  recipients_address: {
    sql: "DROP INDEX recipients_address",
    backs: "message search by recipient",
  },
  recipients_message: {
    sql: "DROP INDEX recipients_message",
    backs: "a message's recipients (every message page, the delivery claim's join)",
  },
  messages_account_from: {
    sql: "DROP INDEX messages_account_from",
    backs: "message search by sender",
  },
  messages_account: {
    sql: "DROP INDEX messages_account",
    backs: "an account's messages, newest first",
  },
  events_account_at: {
    sql: "DROP INDEX events_account_at",
    backs: "GET /v1/stats over a time range",
  },
  events_message: {
    sql: "DROP INDEX events_message",
    backs: "a message's events",
  },
  fsync: {
    pragma: "synchronous = NORMAL",
    backs: "durability of every 250 (not optional: priced only)",
  },
};

// Every index variant at once: what all of them cost together.
const INDEX_VARIANTS = Object.values(VARIANTS).filter((v) => v.sql?.startsWith("DROP INDEX"));
VARIANTS["all-of-the-above"] = {
  sql: INDEX_VARIANTS.map((v) => `${v.sql};`).join(" "),
  backs: "every index variant above at once: what all the indexes cost together",
};

if (args.help) {
  console.log(
    "Usage: npm run bench:commit -- [--messages N] [--groups 1,5,9,20,50] [--rounds 3] [--variants a,b] [--json]\n" +
      `Variants (each takes one part out of a scratch database, to price it):\n${Object.entries(VARIANTS)
        .map(([name, v]) => `  ${name.padEnd(22)} ${v.backs}`)
        .join("\n")}`,
  );
  process.exit(0);
}

const MESSAGES = Number(args.messages);
const GROUPS = args.groups.split(",").map(Number);
const ROUNDS = Number(args.rounds);
const NAMES = args.variants ? args.variants.split(",") : Object.keys(VARIANTS);
for (const name of NAMES) if (!VARIANTS[name]) throw new Error(`unknown variant ${name}`);
const WARMUP = 1000;
const log = (line: string) => {
  if (!args.json) console.log(line);
};

const content = Buffer.from(`From: <${FROM}>\r\nTo: <sink@example.com>\r\nSubject: bench\r\n\r\n${BODY}`);

function message(now: number): NewMessage {
  return {
    id: newQueueId(),
    accountId: 1,
    apiKeyId: null,
    mailFrom: FROM,
    recipients: ["sink@example.com"],
    // A copy each, as the commit thread receives each message's own bytes.
    content: Buffer.from(content),
    clientIp: "127.0.0.1",
    receivedAt: now,
    expiresAt: now + 5 * 86_400_000,
  };
}

interface Cell {
  /** CPU (user + system) per message, µs. */
  cpuUs: number;
  /** Wall time per message, µs (includes waiting for the fsync). */
  wallUs: number;
}

function runCell(variant: string, group: number): Cell {
  const dir = tempDataDir("petrel-bench-commit-");
  const file = join(dir, "petrel.db");
  const db = new Database(file);
  try {
    configureConnection(db, 5000);
    migrate(db);
    const v = VARIANTS[variant]!;
    if (v.sql) db.exec(v.sql);
    if (v.pragma) db.pragma(v.pragma);
    const insert = prepareEnqueue(db);
    const commitAll = (count: number) => {
      for (let done = 0; done < count; done += group) {
        const now = Date.now();
        const batch: NewMessage[] = [];
        for (let i = 0; i < Math.min(group, count - done); i++) batch.push(message(now));
        insert(batch);
      }
    };
    commitAll(WARMUP);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    commitAll(MESSAGES);
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    return {
      cpuUs: (cpu.user + cpu.system) / MESSAGES,
      wallUs: (wall * 1000) / MESSAGES,
    };
  } finally {
    db.close();
    removeDataDir(dir);
  }
}

log(
  `bench:commit — the spool commit alone (prepareEnqueue, SQLite WAL, synchronous=FULL), ${MESSAGES} × 2 KB ` +
    `messages with 1 recipient per cell, groups ${GROUPS.join("/")}, median of ${ROUNDS} alternated rounds`,
);
const results = new Map<string, Cell[]>();
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? NAMES : [...NAMES].reverse();
  for (const variant of order) {
    for (const group of GROUPS) {
      const key = `${variant}/${group}`;
      const list = results.get(key) ?? [];
      list.push(runCell(variant, group));
      results.set(key, list);
    }
  }
}

const summary: Record<string, Record<string, Cell>> = {};
for (const variant of NAMES) {
  summary[variant] = {};
  for (const group of GROUPS) {
    const cells = results.get(`${variant}/${group}`)!;
    summary[variant][group] = {
      cpuUs: median(cells.map((c) => c.cpuUs)),
      wallUs: median(cells.map((c) => c.wallUs)),
    };
  }
}

const base = summary["as-shipped"];
log(`\nCPU µs per message by messages per commit (Δ: against as-shipped at the same group size)`);
log(`${"variant".padEnd(24)}${GROUPS.map((g) => `G=${g}`.padStart(16)).join("")}   what it backs`);
for (const variant of NAMES) {
  const row = GROUPS.map((g) => {
    const c = summary[variant]![g]!;
    const b = base?.[g];
    const delta =
      b && variant !== "as-shipped" ? ` (${(((c.cpuUs - b.cpuUs) / b.cpuUs) * 100).toFixed(0)}%)` : "";
    return `${c.cpuUs.toFixed(0)}${delta}`.padStart(16);
  }).join("");
  log(
    `${(variant === "as-shipped" ? variant : `without ${variant}`).padEnd(24)}${row}   ${VARIANTS[variant]!.backs}`,
  );
}
if (base) {
  log(`\nas shipped, by group size: CPU and wall µs per message (wall includes waiting for the fsync)`);
  for (const g of GROUPS) {
    const c = base[g]!;
    log(
      `  G=${String(g).padEnd(4)} cpu ${c.cpuUs.toFixed(0).padStart(5)} µs  wall ${c.wallUs.toFixed(0).padStart(5)} µs`,
    );
  }
}
if (args.json) console.log(JSON.stringify({ messages: MESSAGES, groups: GROUPS, rounds: ROUNDS, summary }));

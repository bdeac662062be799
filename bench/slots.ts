/**
 * bench:slots — what a cluster-wide connection cap costs (issue 8 item 4): the time to acquire
 * and give back one destination slot on PostgreSQL (one per SMTP connection opened), alone and
 * with three "nodes" (stores with pools of their own) competing for the slots of the same
 * destinations, and the renew statement a node runs every quarter lease. SQLite figures in the
 * same run for comparison (serve on SQLite does not use them: one node counts in memory).
 *
 * A fresh database on 127.0.0.1:5432 (TEST_POSTGRES_URL overrides), dropped at the end.
 * Usage: npm run bench:slots -- [--ops 3000] [--json]
 */
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { openPostgresStore } from "../src/store/postgres/postgres-store.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import type { HeldSlot, Store } from "../src/store/types.js";
import { removeDataDir, tempDataDir } from "../test/support/petrel-process.js";
import { freshPostgresDatabase } from "../test/support/postgres.js";

const { values: args } = parseArgs({
  options: { ops: { type: "string", default: "3000" }, json: { type: "boolean", default: false } },
});
const OPS = Number(args.ops);
const LEASE = 15_000;

interface Figures {
  /** One acquire + one release, one after the other on one store (µs, median and p99). */
  cycleMedianUs: number;
  cycleP99Us: number;
  /** Three stores (one on SQLite) × 8 concurrent loops over 20 destinations with cap 4: cycles per second. */
  contendedPerSecond: number;
  contendedMedianUs: number;
  /** Most slots of one destination held at once, over all owners (must be ≤ 4). */
  maxHeld: number;
  /** One renew statement for 200 held slots (µs, median). */
  renew200Us: number;
  /** One ask refused (every slot held): what a full destination costs per slotRetryMs (µs, median). */
  refusedUs: number;
}

function pct(sorted: number[], p: number): number {
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]! * 1000);
}

async function measure(stores: Store[]): Promise<Figures> {
  const one = stores[0]!;
  // Warm up (rows created, statements planned).
  for (let i = 0; i < 50; i++) {
    const s = await one.acquireSlot({
      destination: "mx:warm",
      cap: 4,
      owner: "w",
      now: Date.now(),
      leaseMs: LEASE,
    });
    if (s !== null) await one.releaseSlots("w", [{ destination: "mx:warm", slot: s }]);
  }
  const cycles: number[] = [];
  for (let i = 0; i < OPS; i++) {
    const t0 = performance.now();
    const slot = await one.acquireSlot({
      destination: "mx:solo",
      cap: 4,
      owner: "solo",
      now: Date.now(),
      leaseMs: LEASE,
    });
    await one.releaseSlots("solo", [{ destination: "mx:solo", slot: slot! }]);
    cycles.push(performance.now() - t0);
  }
  cycles.sort((a, b) => a - b);

  // Contended: every loop takes a slot of a random destination, holds it briefly, gives it back.
  const held = new Map<string, number>();
  let maxHeld = 0;
  const contended: number[] = [];
  const perLoop = Math.ceil(OPS / (stores.length * 8));
  const t0 = performance.now();
  await Promise.all(
    stores.flatMap((store, n) =>
      Array.from({ length: 8 }, async (_, lane) => {
        const owner = `node${n}:${lane}`;
        for (let i = 0; i < perLoop; i++) {
          const destination = `mx:d${(i * 7 + lane + n) % 20}`;
          const c0 = performance.now();
          const slot = await store.acquireSlot({
            destination,
            cap: 4,
            owner,
            now: Date.now(),
            leaseMs: LEASE,
          });
          if (slot === null) continue;
          const h = (held.get(destination) ?? 0) + 1;
          held.set(destination, h);
          maxHeld = Math.max(maxHeld, h);
          await new Promise((resolve) => setImmediate(resolve));
          held.set(destination, held.get(destination)! - 1);
          await store.releaseSlots(owner, [{ destination, slot }]);
          contended.push(performance.now() - c0);
        }
      }),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  contended.sort((a, b) => a - b);

  const mine: HeldSlot[] = [];
  for (let d = 0; d < 50; d++) {
    for (let k = 0; k < 4; k++) {
      const destination = `mx:renew${d}`;
      const slot = await one.acquireSlot({
        destination,
        cap: 4,
        owner: "renewer",
        now: Date.now(),
        leaseMs: LEASE,
      });
      if (slot !== null) mine.push({ destination, slot });
    }
  }
  const refusals: number[] = [];
  for (let i = 0; i < 200; i++) {
    const f0 = performance.now();
    const s = await one.acquireSlot({
      destination: "mx:renew0",
      cap: 4,
      owner: "other",
      now: Date.now(),
      leaseMs: LEASE,
    });
    refusals.push(performance.now() - f0);
    if (s !== null) throw new Error("a full destination gave a slot");
  }
  refusals.sort((a, b) => a - b);
  const renews: number[] = [];
  for (let i = 0; i < 50; i++) {
    const r0 = performance.now();
    await one.renewSlots("renewer", mine, Date.now() + LEASE);
    renews.push(performance.now() - r0);
  }
  renews.sort((a, b) => a - b);
  return {
    cycleMedianUs: pct(cycles, 0.5),
    cycleP99Us: pct(cycles, 0.99),
    contendedPerSecond: Math.round(contended.length / seconds),
    contendedMedianUs: pct(contended, 0.5),
    maxHeld,
    renew200Us: pct(renews, 0.5),
    refusedUs: pct(refusals, 0.5),
  };
}

function print(name: string, nodes: number, f: Figures): void {
  if (args.json) return;
  console.log(`${name}:`);
  console.log(
    `  acquire + release, one connection's cost: median ${f.cycleMedianUs} µs, p99 ${f.cycleP99Us} µs (goal: well under a connection open, ~5-50 ms to a real MX)`,
  );
  console.log(
    `  ${nodes} node${nodes === 1 ? "" : "s"} × 8 loops, 20 destinations, cap 4: ${f.contendedPerSecond} cycles/s, median ${f.contendedMedianUs} µs; most held at once ${f.maxHeld} (must be ≤ 4)`,
  );
  console.log(
    `  refused ask (every slot held elsewhere; repeated every slotRetryMs): median ${f.refusedUs} µs`,
  );
  console.log(
    `  renew 200 held slots (one statement per node every slotLeaseMs/4): median ${f.renew200Us} µs`,
  );
}

const dir = tempDataDir("petrel-bench-slots-");
const db = await freshPostgresDatabase("petrel_bench_slots");
try {
  const sqlite = openSqliteStore({ file: join(dir, "petrel.db") });
  const sqliteFigures = await measure([sqlite]);
  await sqlite.close();
  const nodes = await Promise.all([0, 1, 2].map(() => openPostgresStore({ url: db.url, poolSize: 8 })));
  const pgFigures = await measure(nodes);
  await Promise.all(nodes.map((s) => s.close()));
  print("PostgreSQL", 3, pgFigures);
  print("SQLite (for comparison; serve on SQLite counts in memory)", 1, sqliteFigures);
  if (args.json) console.log(JSON.stringify({ postgres: pgFigures, sqlite: sqliteFigures }));
} finally {
  await db.drop();
  removeDataDir(dir);
}

/**
 * Cluster-wide limits in SQLite (Store part LeaseStore; postgres/leases.ts is its twin; issue 8
 * item 4). SQLite has one writer and one serve per file, so each operation is a short IMMEDIATE
 * transaction (or one upsert) and "two owners at once" cannot happen; the tables and behaviour are
 * PostgreSQL's, so the conformance suite holds both to the same rules. `serve` on SQLite counts
 * connections and AUTH failures in memory (one node) and uses these rows for webhook endpoints and
 * periodic jobs only.
 *
 * Durability: every write here commits with synchronous=NORMAL (no fsync of its own, as the
 * queue's delivery writes: sqlite/queue.ts): a power loss can undo the last ones, which frees a
 * lease or forgets a failure early, never loses mail.
 */
import type Database from "better-sqlite3";
import type { AuthFailureRule, AuthLockout, HeldSlot, LeaseStore, SlotLease, SlotRequest } from "../types.js";
import { relaxedWrites } from "./connection.js";

type Row = Record<string, unknown>;

/** As in postgres/leases.ts: every SET reads the row as it was. */
const FAILURE = `
  INSERT INTO auth_failures AS a (ip, window_start, failures, locked_until, strike_until)
  VALUES (@ip, @now, 1,
    CASE WHEN @max <= 1 THEN @now + @lockout ELSE 0 END,
    CASE WHEN @max <= 1 THEN @now + @lockout + @window ELSE 0 END)
  ON CONFLICT (ip) DO UPDATE SET
    window_start = CASE WHEN @now < a.strike_until THEN a.window_start
      WHEN @now - a.window_start >= @window THEN @now ELSE a.window_start END,
    failures = CASE WHEN @now < a.strike_until THEN a.failures
      WHEN @now - a.window_start >= @window THEN 1 ELSE a.failures + 1 END,
    locked_until = CASE WHEN @now < a.strike_until THEN MAX(a.locked_until, @now + @lockout)
      WHEN (CASE WHEN @now - a.window_start >= @window THEN 1 ELSE a.failures + 1 END) >= @max
        THEN @now + @lockout
      ELSE a.locked_until END,
    strike_until = CASE WHEN @now < a.strike_until THEN MAX(a.locked_until, @now + @lockout) + @window
      WHEN (CASE WHEN @now - a.window_start >= @window THEN 1 ELSE a.failures + 1 END) >= @max
        THEN @now + @lockout + @window
      ELSE a.strike_until END
  RETURNING ip, failures, locked_until, strike_until`;

export function createLeaseStore(db: Database.Database): LeaseStore {
  const s = {
    held: db
      .prepare("SELECT slot FROM destination_slots WHERE destination = ? AND slot < ? AND expires_at > ?")
      .pluck(),
    take: db.prepare(
      `INSERT INTO destination_slots (destination, slot, owner, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (destination, slot) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at`,
    ),
    renew: db.prepare(
      "UPDATE destination_slots SET expires_at = ? WHERE destination = ? AND slot = ? AND owner = ?",
    ),
    release: db.prepare(
      "UPDATE destination_slots SET owner = NULL, expires_at = 0 WHERE destination = ? AND slot = ? AND owner = ?",
    ),
    releaseAll: db.prepare("UPDATE destination_slots SET owner = NULL, expires_at = 0 WHERE owner = ?"),
    list: db.prepare(
      `SELECT destination, slot, owner, expires_at FROM destination_slots
       WHERE owner IS NOT NULL AND expires_at > ? ORDER BY destination, slot`,
    ),
    pruneSlots: db.prepare("DELETE FROM destination_slots WHERE expires_at < ?"),
    takeLease: db.prepare(
      `INSERT INTO leases (name, owner, expires_at) VALUES (@name, @owner, @until)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
       WHERE leases.owner = excluded.owner OR leases.expires_at <= @now
       RETURNING name`,
    ),
    releaseLease: db.prepare("UPDATE leases SET expires_at = 0 WHERE name = ? AND owner = ?"),
    claimJob: db.prepare(
      `INSERT INTO leases (name, owner, expires_at, ran_at) VALUES (@name, @owner, @until, @now)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
         ran_at = excluded.ran_at
       WHERE leases.expires_at <= @now AND leases.ran_at <= @ranBefore
       RETURNING name`,
    ),
    failure: db.prepare(FAILURE),
    lockouts: db.prepare(
      "SELECT ip, failures, locked_until, strike_until FROM auth_failures WHERE locked_until > ?",
    ),
    pruneFailures: db.prepare(
      "DELETE FROM auth_failures WHERE strike_until < @before AND window_start < @before AND locked_until < @before",
    ),
  };

  /** Writes without their own fsync (see Durability). */
  const relaxed = relaxedWrites(db);

  const acquire = relaxed(
    db.transaction((r: SlotRequest): number | null => {
      const held = new Set(s.held.all(r.destination, r.cap, r.now) as number[]);
      for (let slot = 0; slot < r.cap; slot++) {
        if (held.has(slot)) continue;
        s.take.run(r.destination, slot, r.owner, r.now + r.leaseMs);
        return slot;
      }
      return null;
    }).immediate,
  );
  const renew = relaxed(
    db.transaction((owner: string, slots: readonly HeldSlot[], until: number) =>
      slots.filter((h) => s.renew.run(until, h.destination, h.slot, owner).changes > 0),
    ).immediate,
  );
  const release = relaxed(
    db.transaction((owner: string, slots: readonly HeldSlot[]) => {
      let n = 0;
      for (const h of slots) n += s.release.run(h.destination, h.slot, owner).changes;
      return n;
    }).immediate,
  );
  const run = relaxed(
    (statement: Database.Statement, ...params: unknown[]) => statement.run(...params).changes,
  );
  const get = relaxed((statement: Database.Statement, params: Record<string, unknown>) =>
    statement.get(params),
  );

  return {
    async acquireSlot(r: SlotRequest): Promise<number | null> {
      if (r.cap <= 0) return null;
      return acquire(r);
    },
    async renewSlots(owner: string, slots: readonly HeldSlot[], until: number): Promise<HeldSlot[]> {
      return renew(owner, slots, until).map((h) => ({ destination: h.destination, slot: h.slot }));
    },
    async releaseSlots(owner: string, slots?: readonly HeldSlot[]): Promise<number> {
      if (slots === undefined) return run(s.releaseAll, owner);
      return release(owner, slots);
    },
    async listSlots(now: number): Promise<SlotLease[]> {
      return (s.list.all(now) as Row[]).map((row) => ({
        destination: String(row.destination),
        slot: Number(row.slot),
        owner: String(row.owner),
        expiresAt: Number(row.expires_at),
      }));
    },
    async pruneSlots(before: number): Promise<number> {
      return run(s.pruneSlots, before);
    },
    async takeLease(name: string, owner: string, now: number, leaseMs: number): Promise<boolean> {
      return get(s.takeLease, { name, owner, until: now + leaseMs, now }) !== undefined;
    },
    async releaseLease(name: string, owner: string): Promise<boolean> {
      return run(s.releaseLease, name, owner) > 0;
    },
    async claimJob(
      name: string,
      owner: string,
      now: number,
      leaseMs: number,
      everyMs: number,
    ): Promise<boolean> {
      return (
        get(s.claimJob, { name, owner, until: now + leaseMs, now, ranBefore: now - everyMs }) !== undefined
      );
    },
    async recordAuthFailure(ip: string, now: number, rule: AuthFailureRule): Promise<AuthLockout> {
      const params = { ip, now, max: rule.maxFailures, window: rule.windowMs, lockout: rule.lockoutMs };
      return toLockout(get(s.failure, params) as Row);
    },
    async authLockouts(now: number): Promise<AuthLockout[]> {
      return (s.lockouts.all(now) as Row[]).map(toLockout);
    },
    async pruneAuthFailures(before: number): Promise<number> {
      return run(s.pruneFailures, { before });
    },
  };
}

function toLockout(row: Row): AuthLockout {
  return {
    ip: String(row.ip),
    failures: Number(row.failures),
    lockedUntil: Number(row.locked_until),
    strikeUntil: Number(row.strike_until),
  };
}

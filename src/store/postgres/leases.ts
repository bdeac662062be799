/**
 * Cluster-wide limits in PostgreSQL (Store part LeaseStore; sqlite/leases.ts is its twin; issue 8
 * item 4): destination connection slots, named leases (webhook endpoints, periodic jobs) and AUTH
 * failures per address, all as rows with an expiry on the relaxed pool (synchronous_commit off:
 * a database crash can undo the last few, which frees slots or forgets failures early, never
 * loses mail). docs/architecture.md §4b says why rows and not advisory locks.
 *
 * Slots: a destination's rows 0..cap-1 are created once and then only updated. Acquiring is one
 * UPDATE of the lowest free row chosen with FOR UPDATE SKIP LOCKED, so two nodes asking at once
 * take different rows without waiting for each other; only when rows below the cap are missing
 * are they inserted (ON CONFLICT DO NOTHING) and the UPDATE tried once more. One statement takes a
 * slot, and one refuses, in the steady state.
 */
import type { AuthFailureRule, AuthLockout, HeldSlot, LeaseStore, SlotLease, SlotRequest } from "../types.js";
import type { Pool, Row } from "./connection.js";

/*
 * Takes the lowest free row, and counts the rows below the cap in the same round trip: a refusal
 * (every row held) is then this one statement, which matters because a node whose destination is
 * full asks again every slotRetryMs.
 */
const ACQUIRE = `
  WITH pick AS (
    SELECT slot FROM destination_slots
    WHERE destination = $1 AND slot < $2 AND expires_at <= $5
    ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED
  ), taken AS (
    UPDATE destination_slots SET owner = $3, expires_at = $4
    WHERE destination = $1 AND slot = (SELECT slot FROM pick)
    RETURNING slot
  )
  SELECT (SELECT slot FROM taken) AS slot,
    (SELECT count(*) FROM destination_slots WHERE destination = $1 AND slot < $2) AS existing`;

const ENSURE = `
  INSERT INTO destination_slots (destination, slot, owner, expires_at)
  SELECT $1, s, NULL, 0 FROM generate_series(0, $2::int - 1) AS s
  ON CONFLICT (destination, slot) DO NOTHING`;

/*
 * One failure, as AuthThrottle counts it (src/policy/auth-throttle.ts): during a lockout or one
 * window after it, a failure locks again at once; otherwise failures count in a window that
 * starts at the first one, and the maxFailures-th locks. Every SET reads the row as it was.
 * $1 ip, $2 now, $3 maxFailures, $4 windowMs, $5 lockoutMs.
 */
const FAILURE = `
  INSERT INTO auth_failures AS a (ip, window_start, failures, locked_until, strike_until)
  VALUES ($1, $2::bigint, 1,
    CASE WHEN $3::int <= 1 THEN $2::bigint + $5::bigint ELSE 0 END,
    CASE WHEN $3::int <= 1 THEN $2::bigint + $5::bigint + $4::bigint ELSE 0 END)
  ON CONFLICT (ip) DO UPDATE SET
    window_start = CASE WHEN $2 < a.strike_until THEN a.window_start
      WHEN $2 - a.window_start >= $4 THEN $2 ELSE a.window_start END,
    failures = CASE WHEN $2 < a.strike_until THEN a.failures
      WHEN $2 - a.window_start >= $4 THEN 1 ELSE a.failures + 1 END,
    locked_until = CASE WHEN $2 < a.strike_until THEN GREATEST(a.locked_until, $2 + $5)
      WHEN (CASE WHEN $2 - a.window_start >= $4 THEN 1 ELSE a.failures + 1 END) >= $3 THEN $2 + $5
      ELSE a.locked_until END,
    strike_until = CASE WHEN $2 < a.strike_until THEN GREATEST(a.locked_until, $2 + $5) + $4
      WHEN (CASE WHEN $2 - a.window_start >= $4 THEN 1 ELSE a.failures + 1 END) >= $3 THEN $2 + $5 + $4
      ELSE a.strike_until END
  RETURNING ip, failures, locked_until, strike_until`;

export function createLeaseStore(relaxedPool: Pool): LeaseStore {
  const pool = relaxedPool;
  return {
    async acquireSlot(r: SlotRequest): Promise<number | null> {
      if (r.cap <= 0) return null;
      const values = [r.destination, r.cap, r.owner, r.now + r.leaseMs, r.now];
      const first = (await pool.query(ACQUIRE, values)).rows[0]!;
      if (first.slot !== null) return Number(first.slot);
      // Every row below the cap exists and is held (or being taken): refused.
      if (Number(first.existing) >= r.cap) return null;
      // Some rows do not exist yet (a new destination, a cap raised, rows pruned). Asked again
      // even when this insert added none: a concurrent asker may have just created them (its
      // insert committed before ours returned, on the primary key's lock).
      await pool.query(ENSURE, [r.destination, r.cap]);
      const second = (await pool.query(ACQUIRE, values)).rows[0]!;
      return second.slot !== null ? Number(second.slot) : null;
    },

    async renewSlots(owner: string, slots: readonly HeldSlot[], until: number): Promise<HeldSlot[]> {
      if (slots.length === 0) return [];
      const { rows } = await pool.query(
        `UPDATE destination_slots d SET expires_at = $4
         FROM unnest($1::text[], $2::int[]) AS u(destination, slot)
         WHERE d.destination = u.destination AND d.slot = u.slot AND d.owner = $3
         RETURNING d.destination, d.slot`,
        [slots.map((s) => s.destination), slots.map((s) => s.slot), owner, until],
      );
      return rows.map((row) => ({ destination: String(row.destination), slot: Number(row.slot) }));
    },

    async releaseSlots(owner: string, slots?: readonly HeldSlot[]): Promise<number> {
      const result =
        slots === undefined
          ? await pool.query("UPDATE destination_slots SET owner = NULL, expires_at = 0 WHERE owner = $1", [
              owner,
            ])
          : await pool.query(
              `UPDATE destination_slots d SET owner = NULL, expires_at = 0
               FROM unnest($1::text[], $2::int[]) AS u(destination, slot)
               WHERE d.destination = u.destination AND d.slot = u.slot AND d.owner = $3`,
              [slots.map((s) => s.destination), slots.map((s) => s.slot), owner],
            );
      return result.rowCount ?? 0;
    },

    async listSlots(now: number): Promise<SlotLease[]> {
      const { rows } = await pool.query(
        `SELECT destination, slot, owner, expires_at FROM destination_slots
         WHERE owner IS NOT NULL AND expires_at > $1 ORDER BY destination, slot`,
        [now],
      );
      return rows.map(toSlot);
    },

    async pruneSlots(before: number): Promise<number> {
      const result = await pool.query("DELETE FROM destination_slots WHERE expires_at < $1", [before]);
      return result.rowCount ?? 0;
    },

    async takeLease(name: string, owner: string, now: number, leaseMs: number): Promise<boolean> {
      const { rows } = await pool.query(
        `INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
         WHERE leases.owner = excluded.owner OR leases.expires_at <= $4
         RETURNING name`,
        [name, owner, now + leaseMs, now],
      );
      return rows.length > 0;
    },

    async releaseLease(name: string, owner: string): Promise<boolean> {
      const result = await pool.query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND owner = $2", [
        name,
        owner,
      ]);
      return (result.rowCount ?? 0) > 0;
    },

    async claimJob(
      name: string,
      owner: string,
      now: number,
      leaseMs: number,
      everyMs: number,
    ): Promise<boolean> {
      const { rows } = await pool.query(
        `INSERT INTO leases (name, owner, expires_at, ran_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
           ran_at = excluded.ran_at
         WHERE leases.expires_at <= $4 AND leases.ran_at <= $5
         RETURNING name`,
        [name, owner, now + leaseMs, now, now - everyMs],
      );
      return rows.length > 0;
    },

    async recordAuthFailure(ip: string, now: number, rule: AuthFailureRule): Promise<AuthLockout> {
      const { rows } = await pool.query(FAILURE, [ip, now, rule.maxFailures, rule.windowMs, rule.lockoutMs]);
      return toLockout(rows[0]);
    },

    async authLockouts(now: number): Promise<AuthLockout[]> {
      const { rows } = await pool.query(
        "SELECT ip, failures, locked_until, strike_until FROM auth_failures WHERE locked_until > $1",
        [now],
      );
      return rows.map(toLockout);
    },

    async pruneAuthFailures(before: number): Promise<number> {
      const result = await pool.query(
        "DELETE FROM auth_failures WHERE strike_until < $1 AND window_start < $1 AND locked_until < $1",
        [before],
      );
      return result.rowCount ?? 0;
    },
  };
}

function toSlot(row: Row): SlotLease {
  return {
    destination: String(row.destination),
    slot: Number(row.slot),
    owner: String(row.owner),
    expiresAt: Number(row.expires_at),
  };
}

export function toLockout(row: Row): AuthLockout {
  return {
    ip: String(row.ip),
    failures: Number(row.failures),
    lockedUntil: Number(row.locked_until),
    strikeUntil: Number(row.strike_until),
  };
}

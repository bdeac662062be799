/**
 * The sender-domain half of the SQLite store (issue 4): DKIM keys per domain, the result of the
 * last DNS check, status changes and their events. SqliteStore delegates here.
 *
 * Invariants:
 * - A domain's dkim_generation only grows, so a selector name is never reused for a new key.
 * - recordDomainCheck() is one IMMEDIATE transaction: the status transition is computed from the
 *   status read inside it, so a CLI `verify` and serve's periodic check cannot interleave badly.
 * - A key switch (pending → active) retires the other active keys of the same kind in the same
 *   transaction: a domain never signs with two RSA keys, and never with none it had before.
 * Security: private keys are read only by signingKeys() and privateKey(); no listing selects them,
 * and no error message here includes them.
 */
import type Database from "better-sqlite3";
import type {
  DkimKeyInfo,
  DkimKeyKindName,
  DkimKeyState,
  DkimSigningKey,
  DomainCheck,
  DomainCheckChange,
  DomainEvent,
  DomainStatus,
  NewDkimKey,
  RecordCheck,
  SigningKeys,
} from "../types.js";
import { StoreConflictError } from "../types.js";

type Row = Record<string, unknown>;

export type DomainOps = ReturnType<typeof createDomainOps>;

const KEY_INFO = `k.id, d.domain, k.selector, k.kind, k.public_key, k.state, k.generation, k.created_at,
  k.activated_at, k.retired_at FROM dkim_keys k JOIN sender_domains d ON d.id = k.domain_id`;

export function createDomainOps(db: Database.Database) {
  const s = {
    domainId: db.prepare("SELECT id, status, dkim_generation FROM sender_domains WHERE domain = ?"),
    detail: db.prepare(
      "SELECT dkim_generation, verified_at, last_check FROM sender_domains WHERE domain = ?",
    ),
    insertKey: db.prepare(
      `INSERT INTO dkim_keys (domain_id, selector, kind, generation, private_key, public_key, state,
         created_at, activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    setGeneration: db.prepare("UPDATE sender_domains SET dkim_generation = ? WHERE id = ?"),
    listKeys: db.prepare(`SELECT ${KEY_INFO} WHERE d.domain = ? ORDER BY k.generation, k.id`),
    // The accept path runs this per message: indexed lookups, keys in a stable order (RSA first).
    signing: db.prepare(
      `SELECT d.status, k.id, k.selector, k.kind, k.private_key FROM sender_domains d
       LEFT JOIN dkim_keys k ON k.domain_id = d.id AND k.state = 'active'
       WHERE d.domain = ? ORDER BY k.kind DESC, k.id`,
    ),
    privateKey: db.prepare(
      `SELECT k.private_key FROM dkim_keys k JOIN sender_domains d ON d.id = k.domain_id
       WHERE d.domain = ? AND k.selector = ?`,
    ),
    deleteKey: db.prepare(
      "DELETE FROM dkim_keys WHERE selector = ? AND domain_id = (SELECT id FROM sender_domains WHERE domain = ?)",
    ),
    statuses: db.prepare("SELECT domain, status FROM sender_domains WHERE account_id = ?"),
    keyStates: db.prepare("SELECT id, selector, kind, state FROM dkim_keys WHERE domain_id = ?"),
    activate: db.prepare("UPDATE dkim_keys SET state = 'active', activated_at = ? WHERE id = ?"),
    retire: db.prepare("UPDATE dkim_keys SET state = 'retired', retired_at = ? WHERE id = ?"),
    saveCheck: db.prepare(
      `UPDATE sender_domains SET status = ?, last_checked_at = ?, last_check = ?,
         verified_at = CASE WHEN ? = 'verified' AND status != 'verified' THEN ? ELSE verified_at END
       WHERE id = ?`,
    ),
    insertEvent: db.prepare(
      "INSERT INTO domain_events (domain_id, at, from_status, to_status, detail) VALUES (?, ?, ?, ?, ?)",
    ),
    recheck: db.prepare(
      `SELECT d.domain FROM sender_domains d
       WHERE (d.status IN ('verified', 'failing')
              OR EXISTS (SELECT 1 FROM dkim_keys k WHERE k.domain_id = d.id AND k.state = 'pending'))
         AND (d.last_checked_at IS NULL OR d.last_checked_at < ?)
       ORDER BY d.last_checked_at, d.domain`,
    ),
    events: db.prepare(
      `SELECT d.domain, e.at, e.from_status, e.to_status, e.detail FROM domain_events e
       JOIN sender_domains d ON d.id = e.domain_id WHERE d.domain = ? ORDER BY e.id DESC LIMIT ?`,
    ),
  };

  function insertKeys(domainId: number, generation: number, keys: readonly NewDkimKey[], at: number): void {
    for (const k of keys) {
      try {
        s.insertKey.run(
          domainId,
          k.selector,
          k.kind,
          generation,
          k.privateKeyPem,
          k.publicKey,
          k.state,
          at,
          k.state === "active" ? at : null,
        );
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === "SQLITE_CONSTRAINT_UNIQUE")
          throw new StoreConflictError(`selector ${k.selector} exists`);
        throw err;
      }
    }
  }

  function domainRow(domain: string): { id: number; status: DomainStatus; generation: number } | undefined {
    const row = s.domainId.get(domain.toLowerCase()) as Row | undefined;
    if (!row) return undefined;
    return {
      id: Number(row.id),
      status: row.status as DomainStatus,
      generation: Number(row.dkim_generation),
    };
  }

  return {
    detail(domain: string) {
      const row = s.detail.get(domain.toLowerCase()) as Row | undefined;
      if (!row) return undefined;
      return {
        dkimGeneration: Number(row.dkim_generation),
        verifiedAt: (row.verified_at as number | null) ?? null,
        lastCheck: parseChecks(row.last_check),
      };
    },

    /** Called inside addDomain's transaction, right after the domain row was inserted. */
    addFirstKeys(domainId: number, keys: readonly NewDkimKey[]): void {
      const at = Date.now();
      insertKeys(domainId, 1, keys, at);
      s.setGeneration.run(1, domainId);
    },

    addKeys(domain: string, generation: number, keys: readonly NewDkimKey[]): void {
      db.transaction(() => {
        const row = domainRow(domain);
        if (!row) throw new StoreConflictError(`no domain ${domain}`);
        if (row.generation >= generation) {
          throw new StoreConflictError(`${domain} already has key generation ${row.generation}`);
        }
        insertKeys(row.id, generation, keys, Date.now());
        s.setGeneration.run(generation, row.id);
      }).immediate();
    },

    listKeys(domain: string): DkimKeyInfo[] {
      return (s.listKeys.all(domain.toLowerCase()) as Row[]).map((r) => ({
        id: Number(r.id),
        domain: String(r.domain),
        selector: String(r.selector),
        kind: r.kind as DkimKeyKindName,
        publicKey: String(r.public_key),
        state: r.state as DkimKeyState,
        generation: Number(r.generation),
        createdAt: Number(r.created_at),
        activatedAt: (r.activated_at as number | null) ?? null,
        retiredAt: (r.retired_at as number | null) ?? null,
      }));
    },

    signingKeys(domain: string): SigningKeys | undefined {
      const rows = s.signing.all(domain.toLowerCase()) as Row[];
      if (rows.length === 0) return undefined;
      const keys: DkimSigningKey[] = rows
        .filter((r) => r.id !== null)
        .map((r) => ({
          id: Number(r.id),
          selector: String(r.selector),
          kind: r.kind as DkimKeyKindName,
          privateKeyPem: String(r.private_key),
        }));
      return { status: rows[0]!.status as DomainStatus, keys };
    },

    privateKey(domain: string, selector: string): string | undefined {
      const row = s.privateKey.get(domain.toLowerCase(), selector) as Row | undefined;
      return row ? String(row.private_key) : undefined;
    },

    deleteKey(domain: string, selector: string): boolean {
      return s.deleteKey.run(selector, domain.toLowerCase()).changes > 0;
    },

    statuses(accountId: number): ReadonlyMap<string, DomainStatus> {
      const rows = s.statuses.all(accountId) as Row[];
      return new Map(rows.map((r) => [String(r.domain), r.status as DomainStatus]));
    },

    recordCheck(check: DomainCheck): DomainCheckChange {
      return db
        .transaction((): DomainCheckChange => {
          const row = domainRow(check.domain);
          if (!row) throw new StoreConflictError(`no domain ${check.domain}`);
          const previous = row.status;
          const status = nextStatus(previous, check.outcome);
          const activated: string[] = [];
          const retired: string[] = [];
          const keys = s.keyStates.all(row.id) as Row[];
          for (const selector of check.promote) {
            const key = keys.find((k) => k.selector === selector && k.state === "pending");
            if (!key) continue;
            s.activate.run(check.at, key.id);
            key.state = "active";
            activated.push(selector);
            for (const other of keys) {
              if (other.kind === key.kind && other.state === "active" && other.id !== key.id) {
                s.retire.run(check.at, other.id);
                other.state = "retired";
                retired.push(String(other.selector));
              }
            }
          }
          s.saveCheck.run(status, check.at, JSON.stringify(check.records), status, check.at, row.id);
          const details: string[] = [];
          if (status !== previous) details.push(describeTransition(previous, status, check.records));
          if (activated.length > 0) {
            details.push(
              `signing with ${activated.join(", ")}` +
                (retired.length > 0 ? ` (retired ${retired.join(", ")})` : ""),
            );
          }
          if (details.length > 0) s.insertEvent.run(row.id, check.at, previous, status, details.join("; "));
          return { previous, status, activated, retired };
        })
        .immediate();
    },

    toRecheck(before: number): string[] {
      return s.recheck.pluck().all(before) as string[];
    },

    events(domain: string, limit: number): DomainEvent[] {
      return (s.events.all(domain.toLowerCase(), limit) as Row[]).map((r) => ({
        domain: String(r.domain),
        at: Number(r.at),
        fromStatus: r.from_status as DomainStatus,
        toStatus: r.to_status as DomainStatus,
        detail: String(r.detail),
      }));
    },
  };
}

/** A domain that was never verified stays unverified on failure; a verified one becomes failing. */
function nextStatus(previous: DomainStatus, outcome: DomainCheck["outcome"]): DomainStatus {
  if (outcome === "pass") return "verified";
  if (outcome === "unknown") return previous;
  return previous === "unverified" ? "unverified" : "failing";
}

function describeTransition(
  previous: DomainStatus,
  status: DomainStatus,
  records: readonly RecordCheck[],
): string {
  const bad = records.filter((r) => r.required && r.result !== "match");
  const which = bad.map((r) => `${r.purpose} ${r.name} ${r.result}`).join(", ");
  return `${previous} → ${status}${which ? `: ${which}` : ""}`;
}

function parseChecks(value: unknown): RecordCheck[] {
  if (typeof value !== "string" || value === "") return [];
  try {
    const parsed = JSON.parse(value) as unknown;
    return Array.isArray(parsed) ? (parsed as RecordCheck[]) : [];
  } catch {
    return [];
  }
}

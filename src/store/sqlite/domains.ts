/**
 * Sender identities in SQLite (Store part DomainStore; postgres/domains.ts is its twin): sender
 * domains and single senders with their account, DKIM keys per domain (issue 4), the result of
 * the last DNS check, status changes and their events.
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
import { domainOf, normalizeAddress } from "../../address.js";
import {
  toDkimKeyInfo,
  toDomain,
  toDomainDetail,
  toDomainEvent,
  toSender,
  toSigningKeys,
} from "../domain-rows.js";
import { describeTransition, nextStatus } from "../domain-status.js";
import type {
  DkimKeyInfo,
  DomainCheck,
  DomainCheckChange,
  DomainEvent,
  DomainStatus,
  DomainStore,
  NewDkimKey,
  SenderDomain,
  SenderDomainDetail,
  SenderIdentities,
  SigningKeys,
  SingleSender,
} from "../types.js";
import { StoreConflictError } from "../types.js";
import { conflictOr } from "./accounts.js";

type Row = Record<string, unknown>;

const KEY_INFO = `k.id, d.domain, k.selector, k.kind, k.public_key, k.state, k.generation, k.created_at,
  k.activated_at, k.retired_at FROM dkim_keys k JOIN sender_domains d ON d.id = k.domain_id`;

const DOMAIN_SELECT = `SELECT d.id, d.account_id, a.name AS account_name, d.domain, d.status, d.created_at,
  d.last_checked_at FROM sender_domains d JOIN accounts a ON a.id = d.account_id`;
const SENDER_SELECT = `SELECT s.id, s.account_id, a.name AS account_name, s.address, s.created_at
  FROM single_senders s JOIN accounts a ON a.id = s.account_id`;

export function createDomainStore(db: Database.Database): DomainStore {
  const s = {
    accountDomains: db.prepare("SELECT domain FROM sender_domains WHERE account_id = ?").pluck(),
    accountSenders: db.prepare("SELECT address FROM single_senders WHERE account_id = ?").pluck(),
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

  /** addDomain's transaction, with the domain's first DKIM keys when given (issue 4). */
  function insertDomain(accountId: number, domain: string, keys: readonly NewDkimKey[]): SenderDomain {
    const name = domain.toLowerCase();
    return db
      .transaction(() => {
        const owner = db
          .prepare(
            "SELECT account_id FROM single_senders WHERE address LIKE ? ESCAPE '\\' AND account_id != ? LIMIT 1",
          )
          .get(`%@${escapeLike(name)}`, accountId);
        if (owner) throw new StoreConflictError(`${name} has single senders that belong to another account`);
        try {
          const { id } = db
            .prepare(
              "INSERT INTO sender_domains (account_id, domain, created_at) VALUES (?, ?, ?) RETURNING id",
            )
            .get(accountId, name, Date.now()) as { id: number };
          if (keys.length > 0) {
            insertKeys(id, 1, keys, Date.now());
            s.setGeneration.run(1, id);
          }
          return toDomain(db.prepare(`${DOMAIN_SELECT} WHERE d.id = ?`).get(id) as Row);
        } catch (err) {
          throw conflictOr(err, `domain ${name} is already registered`);
        }
      })
      .immediate();
  }

  return {
    async addDomain(accountId: number, domain: string): Promise<SenderDomain> {
      return insertDomain(accountId, domain, []);
    },

    async addDomainWithKeys(
      accountId: number,
      domain: string,
      keys: readonly NewDkimKey[],
    ): Promise<SenderDomain> {
      return insertDomain(accountId, domain, keys);
    },

    async removeDomain(domain: string): Promise<boolean> {
      return db.prepare("DELETE FROM sender_domains WHERE domain = ?").run(domain.toLowerCase()).changes > 0;
    },

    async listDomains(accountId?: number): Promise<SenderDomain[]> {
      const rows =
        accountId === undefined
          ? db.prepare(`${DOMAIN_SELECT} ORDER BY d.domain`).all()
          : db.prepare(`${DOMAIN_SELECT} WHERE d.account_id = ? ORDER BY d.domain`).all(accountId);
      return (rows as Row[]).map(toDomain);
    },

    async addSender(accountId: number, address: string): Promise<SingleSender> {
      const normalized = normalizeAddress(address);
      return db
        .transaction(() => {
          const owner = db
            .prepare("SELECT account_id FROM sender_domains WHERE domain = ?")
            .get(domainOf(normalized)) as { account_id: number } | undefined;
          if (owner && owner.account_id !== accountId) {
            throw new StoreConflictError(`the domain of ${normalized} belongs to another account`);
          }
          try {
            const { id } = db
              .prepare(
                "INSERT INTO single_senders (account_id, address, created_at) VALUES (?, ?, ?) RETURNING id",
              )
              .get(accountId, normalized, Date.now()) as { id: number };
            return toSender(db.prepare(`${SENDER_SELECT} WHERE s.id = ?`).get(id) as Row);
          } catch (err) {
            throw conflictOr(err, `sender ${normalized} is already registered`);
          }
        })
        .immediate();
    },

    async removeSender(address: string): Promise<boolean> {
      return (
        db.prepare("DELETE FROM single_senders WHERE address = ?").run(normalizeAddress(address)).changes > 0
      );
    },

    async listSenders(accountId?: number): Promise<SingleSender[]> {
      const rows =
        accountId === undefined
          ? db.prepare(`${SENDER_SELECT} ORDER BY s.address`).all()
          : db.prepare(`${SENDER_SELECT} WHERE s.account_id = ? ORDER BY s.address`).all(accountId);
      return (rows as Row[]).map(toSender);
    },

    async getSenderIdentities(accountId: number): Promise<SenderIdentities> {
      const domains = s.accountDomains.all(accountId) as string[];
      const addresses = s.accountSenders.all(accountId) as string[];
      return { domains: new Set(domains), addresses: new Set(addresses) };
    },

    async getDomain(domain: string): Promise<SenderDomainDetail | undefined> {
      const row = db.prepare(`${DOMAIN_SELECT} WHERE d.domain = ?`).get(domain.toLowerCase()) as
        | Row
        | undefined;
      const detail = s.detail.get(domain.toLowerCase()) as Row | undefined;
      if (!row || !detail) return undefined;
      return toDomainDetail(row, detail);
    },

    async addDkimKeys(domain: string, generation: number, keys: readonly NewDkimKey[]): Promise<void> {
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

    async listDkimKeys(domain: string): Promise<DkimKeyInfo[]> {
      return (s.listKeys.all(domain.toLowerCase()) as Row[]).map(toDkimKeyInfo);
    },

    async getSigningKeys(domain: string): Promise<SigningKeys | undefined> {
      const rows = s.signing.all(domain.toLowerCase()) as Row[];
      return toSigningKeys(rows);
    },

    async getDkimPrivateKey(domain: string, selector: string): Promise<string | undefined> {
      const row = s.privateKey.get(domain.toLowerCase(), selector) as Row | undefined;
      return row ? String(row.private_key) : undefined;
    },

    async deleteDkimKey(domain: string, selector: string): Promise<boolean> {
      return s.deleteKey.run(selector, domain.toLowerCase()).changes > 0;
    },

    async getDomainStatuses(accountId: number): Promise<ReadonlyMap<string, DomainStatus>> {
      const rows = s.statuses.all(accountId) as Row[];
      return new Map(rows.map((r) => [String(r.domain), r.status as DomainStatus]));
    },

    async recordDomainCheck(check: DomainCheck): Promise<DomainCheckChange> {
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

    async listDomainsToRecheck(before: number): Promise<string[]> {
      return s.recheck.pluck().all(before) as string[];
    },

    async listDomainEvents(domain: string, limit = 50): Promise<DomainEvent[]> {
      return (s.events.all(domain.toLowerCase(), limit) as Row[]).map(toDomainEvent);
    },
  };
}

function escapeLike(value: string): string {
  return value.replace(/[%_\\]/g, "\\$&");
}

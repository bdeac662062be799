/**
 * Sender identities in PostgreSQL (Store part DomainStore; sqlite/domains.ts is its twin): sender
 * domains and single senders with their account, DKIM keys, the last DNS check, status events.
 *
 * Invariants as in SQLite: a domain's dkim_generation only grows; recordDomainCheck() computes the
 * transition from the status read under a row lock (SELECT … FOR UPDATE), so a CLI `verify` and
 * a periodic check on another node cannot interleave badly; a key switch retires the other active
 * keys of its kind in the same transaction. Adding a domain or a sender takes an advisory lock on
 * the domain name, so the "belongs to another account" checks hold across nodes.
 * Security: private keys are read only by getSigningKeys() and getDkimPrivateKey().
 */
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
import { type Client, conflictOr, type Pool, type Row, transaction } from "./connection.js";

const DOMAIN_SELECT = `SELECT d.id, d.account_id, a.name AS account_name, d.domain, d.status, d.created_at,
  d.last_checked_at FROM sender_domains d JOIN accounts a ON a.id = d.account_id`;
const SENDER_SELECT = `SELECT s.id, s.account_id, a.name AS account_name, s.address, s.created_at
  FROM single_senders s JOIN accounts a ON a.id = s.account_id`;
const KEY_INFO = `k.id, d.domain, k.selector, k.kind, k.public_key, k.state, k.generation, k.created_at,
  k.activated_at, k.retired_at FROM dkim_keys k JOIN sender_domains d ON d.id = k.domain_id`;

export function createDomainStore(pool: Pool): DomainStore {
  async function insertKeys(
    client: Client,
    domainId: number,
    generation: number,
    keys: readonly NewDkimKey[],
    at: number,
  ): Promise<void> {
    for (const k of keys) {
      try {
        await client.query(
          `INSERT INTO dkim_keys (domain_id, selector, kind, generation, private_key, public_key, state,
             created_at, activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
          [
            domainId,
            k.selector,
            k.kind,
            generation,
            k.privateKeyPem,
            k.publicKey,
            k.state,
            at,
            k.state === "active" ? at : null,
          ],
        );
      } catch (err) {
        throw conflictOr(err, `selector ${k.selector} exists`);
      }
    }
  }

  /** The domain row, locked until the end of the transaction. */
  async function lockDomain(
    client: Client,
    domain: string,
  ): Promise<{ id: number; status: DomainStatus; generation: number } | undefined> {
    const { rows } = await client.query(
      "SELECT id, status, dkim_generation FROM sender_domains WHERE domain = $1 FOR UPDATE",
      [domain.toLowerCase()],
    );
    const row = rows[0];
    if (!row) return undefined;
    return {
      id: Number(row.id),
      status: row.status as DomainStatus,
      generation: Number(row.dkim_generation),
    };
  }

  function insertDomain(
    accountId: number,
    domain: string,
    keys: readonly NewDkimKey[],
  ): Promise<SenderDomain> {
    const name = domain.toLowerCase();
    return transaction(pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [name]);
      const owner = await client.query(
        "SELECT 1 FROM single_senders WHERE split_part(address, '@', 2) = $1 AND account_id <> $2 LIMIT 1",
        [name, accountId],
      );
      if (owner.rows.length > 0) {
        throw new StoreConflictError(`${name} has single senders that belong to another account`);
      }
      try {
        const { rows } = await client.query(
          "INSERT INTO sender_domains (account_id, domain, created_at) VALUES ($1, $2, $3) RETURNING id",
          [accountId, name, Date.now()],
        );
        const id = Number(rows[0].id);
        if (keys.length > 0) {
          await insertKeys(client, id, 1, keys, Date.now());
          await client.query("UPDATE sender_domains SET dkim_generation = 1 WHERE id = $1", [id]);
        }
        return toDomain((await client.query(`${DOMAIN_SELECT} WHERE d.id = $1`, [id])).rows[0]);
      } catch (err) {
        throw conflictOr(err, `domain ${name} is already registered`);
      }
    });
  }

  return {
    addDomain: (accountId, domain) => insertDomain(accountId, domain, []),
    addDomainWithKeys: (accountId, domain, keys) => insertDomain(accountId, domain, keys),

    async removeDomain(domain: string): Promise<boolean> {
      const result = await pool.query("DELETE FROM sender_domains WHERE domain = $1", [domain.toLowerCase()]);
      return (result.rowCount ?? 0) > 0;
    },

    async listDomains(accountId?: number): Promise<SenderDomain[]> {
      const { rows } =
        accountId === undefined
          ? await pool.query(`${DOMAIN_SELECT} ORDER BY d.domain COLLATE "C"`)
          : await pool.query(`${DOMAIN_SELECT} WHERE d.account_id = $1 ORDER BY d.domain COLLATE "C"`, [
              accountId,
            ]);
      return rows.map(toDomain);
    },

    async addSender(accountId: number, address: string): Promise<SingleSender> {
      const normalized = normalizeAddress(address);
      const domain = domainOf(normalized);
      return transaction(pool, async (client) => {
        await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [domain]);
        const { rows: owners } = await client.query(
          "SELECT account_id FROM sender_domains WHERE domain = $1",
          [domain],
        );
        if (owners[0] && Number(owners[0].account_id) !== accountId) {
          throw new StoreConflictError(`the domain of ${normalized} belongs to another account`);
        }
        try {
          const { rows } = await client.query(
            "INSERT INTO single_senders (account_id, address, created_at) VALUES ($1, $2, $3) RETURNING id",
            [accountId, normalized, Date.now()],
          );
          return toSender((await client.query(`${SENDER_SELECT} WHERE s.id = $1`, [rows[0].id])).rows[0]);
        } catch (err) {
          throw conflictOr(err, `sender ${normalized} is already registered`);
        }
      });
    },

    async removeSender(address: string): Promise<boolean> {
      const result = await pool.query("DELETE FROM single_senders WHERE address = $1", [
        normalizeAddress(address),
      ]);
      return (result.rowCount ?? 0) > 0;
    },

    async listSenders(accountId?: number): Promise<SingleSender[]> {
      const { rows } =
        accountId === undefined
          ? await pool.query(`${SENDER_SELECT} ORDER BY s.address COLLATE "C"`)
          : await pool.query(`${SENDER_SELECT} WHERE s.account_id = $1 ORDER BY s.address COLLATE "C"`, [
              accountId,
            ]);
      return rows.map(toSender);
    },

    async getSenderIdentities(accountId: number): Promise<SenderIdentities> {
      const { rows } = await pool.query({
        name: "petrel-identities",
        text: `SELECT 'd' AS kind, domain AS value FROM sender_domains WHERE account_id = $1
               UNION ALL SELECT 's', address FROM single_senders WHERE account_id = $1`,
        values: [accountId],
      });
      const domains = new Set<string>();
      const addresses = new Set<string>();
      for (const r of rows) (r.kind === "d" ? domains : addresses).add(String(r.value));
      return { domains, addresses };
    },

    async getDomain(domain: string): Promise<SenderDomainDetail | undefined> {
      const { rows } = await pool.query(
        `SELECT d.id, d.account_id, a.name AS account_name, d.domain, d.status, d.created_at, d.last_checked_at,
           d.dkim_generation, d.verified_at, d.last_check
         FROM sender_domains d JOIN accounts a ON a.id = d.account_id WHERE d.domain = $1`,
        [domain.toLowerCase()],
      );
      const row = rows[0];
      if (!row) return undefined;
      return toDomainDetail(row);
    },

    async addDkimKeys(domain: string, generation: number, keys: readonly NewDkimKey[]): Promise<void> {
      await transaction(pool, async (client) => {
        const row = await lockDomain(client, domain);
        if (!row) throw new StoreConflictError(`no domain ${domain}`);
        if (row.generation >= generation) {
          throw new StoreConflictError(`${domain} already has key generation ${row.generation}`);
        }
        await insertKeys(client, row.id, generation, keys, Date.now());
        await client.query("UPDATE sender_domains SET dkim_generation = $1 WHERE id = $2", [
          generation,
          row.id,
        ]);
      });
    },

    async listDkimKeys(domain: string): Promise<DkimKeyInfo[]> {
      const { rows } = await pool.query(
        `SELECT ${KEY_INFO} WHERE d.domain = $1 ORDER BY k.generation, k.id`,
        [domain.toLowerCase()],
      );
      return rows.map(toDkimKeyInfo);
    },

    async getSigningKeys(domain: string): Promise<SigningKeys | undefined> {
      // The accept path runs this per message: one indexed query, keys in a stable order (RSA first).
      const { rows } = await pool.query({
        name: "petrel-signing-keys",
        text: `SELECT d.status, k.id, k.selector, k.kind, k.private_key FROM sender_domains d
               LEFT JOIN dkim_keys k ON k.domain_id = d.id AND k.state = 'active'
               WHERE d.domain = $1 ORDER BY k.kind COLLATE "C" DESC, k.id`,
        values: [domain.toLowerCase()],
      });
      return toSigningKeys(rows);
    },

    async getDkimPrivateKey(domain: string, selector: string): Promise<string | undefined> {
      const { rows } = await pool.query(
        `SELECT k.private_key FROM dkim_keys k JOIN sender_domains d ON d.id = k.domain_id
         WHERE d.domain = $1 AND k.selector = $2`,
        [domain.toLowerCase(), selector],
      );
      return rows[0] ? String(rows[0].private_key) : undefined;
    },

    async deleteDkimKey(domain: string, selector: string): Promise<boolean> {
      const result = await pool.query(
        "DELETE FROM dkim_keys WHERE selector = $1 AND domain_id = (SELECT id FROM sender_domains WHERE domain = $2)",
        [selector, domain.toLowerCase()],
      );
      return (result.rowCount ?? 0) > 0;
    },

    async getDomainStatuses(accountId: number): Promise<ReadonlyMap<string, DomainStatus>> {
      const { rows } = await pool.query({
        name: "petrel-domain-statuses",
        text: "SELECT domain, status FROM sender_domains WHERE account_id = $1",
        values: [accountId],
      });
      return new Map(rows.map((r) => [String(r.domain), r.status as DomainStatus]));
    },

    recordDomainCheck(check: DomainCheck): Promise<DomainCheckChange> {
      return transaction(pool, async (client) => {
        const row = await lockDomain(client, check.domain);
        if (!row) throw new StoreConflictError(`no domain ${check.domain}`);
        const previous = row.status;
        const status = nextStatus(previous, check.outcome);
        const activated: string[] = [];
        const retired: string[] = [];
        const keys = (
          await client.query(
            "SELECT id, selector, kind, state FROM dkim_keys WHERE domain_id = $1 ORDER BY id",
            [row.id],
          )
        ).rows as Row[];
        for (const selector of check.promote) {
          const key = keys.find((k) => k.selector === selector && k.state === "pending");
          if (!key) continue;
          await client.query("UPDATE dkim_keys SET state = 'active', activated_at = $1 WHERE id = $2", [
            check.at,
            key.id,
          ]);
          key.state = "active";
          activated.push(selector);
          for (const other of keys) {
            if (other.kind === key.kind && other.state === "active" && other.id !== key.id) {
              await client.query("UPDATE dkim_keys SET state = 'retired', retired_at = $1 WHERE id = $2", [
                check.at,
                other.id,
              ]);
              other.state = "retired";
              retired.push(String(other.selector));
            }
          }
        }
        await client.query(
          `UPDATE sender_domains SET status = $1, last_checked_at = $2, last_check = $3::jsonb,
             verified_at = CASE WHEN $1 = 'verified' AND status <> 'verified' THEN $2 ELSE verified_at END
           WHERE id = $4`,
          [status, check.at, JSON.stringify(check.records), row.id],
        );
        const details: string[] = [];
        if (status !== previous) details.push(describeTransition(previous, status, check.records));
        if (activated.length > 0) {
          details.push(
            `signing with ${activated.join(", ")}` +
              (retired.length > 0 ? ` (retired ${retired.join(", ")})` : ""),
          );
        }
        if (details.length > 0) {
          await client.query(
            "INSERT INTO domain_events (domain_id, at, from_status, to_status, detail) VALUES ($1, $2, $3, $4, $5)",
            [row.id, check.at, previous, status, details.join("; ")],
          );
        }
        return { previous, status, activated, retired };
      });
    },

    async listDomainsToRecheck(before: number): Promise<string[]> {
      const { rows } = await pool.query(
        `SELECT d.domain FROM sender_domains d
         WHERE (d.status IN ('verified', 'failing')
                OR EXISTS (SELECT 1 FROM dkim_keys k WHERE k.domain_id = d.id AND k.state = 'pending'))
           AND (d.last_checked_at IS NULL OR d.last_checked_at < $1)
         ORDER BY d.last_checked_at NULLS FIRST, d.domain COLLATE "C"`,
        [before],
      );
      return rows.map((r) => String(r.domain));
    },

    async listDomainEvents(domain: string, limit = 50): Promise<DomainEvent[]> {
      const { rows } = await pool.query(
        `SELECT d.domain, e.at, e.from_status, e.to_status, e.detail FROM domain_events e
         JOIN sender_domains d ON d.id = e.domain_id WHERE d.domain = $1 ORDER BY e.id DESC LIMIT $2`,
        [domain.toLowerCase(), limit],
      );
      return rows.map(toDomainEvent);
    },
  };
}

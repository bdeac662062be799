/**
 * Accounts and API keys in PostgreSQL (Store part AccountStore; sqlite/accounts.ts is its twin).
 * Keys are stored as hashes only; a name identifies one active key (revoked keys keep theirs).
 */
import { toAccount, toApiKey } from "../account-rows.js";
import type { Account, AccountStore, ApiKey, NewApiKey } from "../types.js";
import { conflictOr, type Pool } from "./connection.js";

const API_KEY_SELECT = `SELECT k.id, k.account_id, a.name AS account_name, k.name, k.prefix, k.created_at,
  k.last_used_at, k.revoked_at, k.scopes FROM api_keys k JOIN accounts a ON a.id = k.account_id`;

export function createAccountStore(pool: Pool): AccountStore {
  return {
    async createAccount(name: string): Promise<Account> {
      try {
        const { rows } = await pool.query(
          "INSERT INTO accounts (name, created_at) VALUES ($1, $2) RETURNING id, name, created_at",
          [name, Date.now()],
        );
        return toAccount(rows[0]);
      } catch (err) {
        throw conflictOr(err, `account ${name} already exists`);
      }
    },

    async getAccount(name: string): Promise<Account | undefined> {
      const { rows } = await pool.query("SELECT id, name, created_at FROM accounts WHERE name = $1", [name]);
      return rows[0] && toAccount(rows[0]);
    },

    async listAccounts(): Promise<Account[]> {
      const { rows } = await pool.query(
        'SELECT id, name, created_at FROM accounts ORDER BY name COLLATE "C"',
      );
      return rows.map(toAccount);
    },

    async insertApiKey(key: NewApiKey): Promise<ApiKey> {
      try {
        const { rows } = await pool.query(
          `WITH k AS (INSERT INTO api_keys (account_id, name, hash, prefix, created_at, scopes)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *)
           SELECT k.id, k.account_id, a.name AS account_name, k.name, k.prefix, k.created_at, k.last_used_at,
             k.revoked_at, k.scopes FROM k JOIN accounts a ON a.id = k.account_id`,
          [
            key.accountId,
            key.name,
            key.hash,
            key.prefix,
            Date.now(),
            (key.scopes ?? ["mail.send"]).join(","),
          ],
        );
        return toApiKey(rows[0]);
      } catch (err) {
        throw conflictOr(err, `an active key named ${key.name} already exists`);
      }
    },

    async findActiveApiKey(hash: string): Promise<ApiKey | undefined> {
      const { rows } = await pool.query({
        name: "petrel-find-key",
        text: `${API_KEY_SELECT} WHERE k.hash = $1 AND k.revoked_at IS NULL`,
        values: [hash],
      });
      return rows[0] && toApiKey(rows[0]);
    },

    async listApiKeys(): Promise<ApiKey[]> {
      const { rows } = await pool.query(
        `${API_KEY_SELECT} ORDER BY k.revoked_at IS NOT NULL, k.name COLLATE "C"`,
      );
      return rows.map(toApiKey);
    },

    async revokeApiKey(name: string): Promise<boolean> {
      const result = await pool.query(
        "UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        [Date.now(), name],
      );
      return (result.rowCount ?? 0) > 0;
    },

    async recordApiKeyUse(uses: ReadonlyArray<{ readonly id: number; readonly at: number }>): Promise<void> {
      if (uses.length === 0) return;
      // Monotonic: a late flush from one node never moves "last used" backwards.
      await pool.query(
        `UPDATE api_keys k SET last_used_at = u.at
         FROM (SELECT id, max(at) AS at FROM unnest($1::bigint[], $2::bigint[]) AS x(id, at) GROUP BY id) u
         WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`,
        [uses.map((u) => u.id), uses.map((u) => u.at)],
      );
    },
  };
}

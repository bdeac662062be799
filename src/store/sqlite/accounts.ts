/**
 * Accounts and API keys in SQLite (Store part AccountStore; postgres/accounts.ts is its twin).
 * Keys are stored as hashes only; a name identifies one active key (revoked keys keep theirs for
 * the record). better-sqlite3 is synchronous: the methods are async only for the interface.
 */
import type Database from "better-sqlite3";
import { toAccount, toApiKey } from "../account-rows.js";
import type { Account, AccountStore, ApiKey, NewApiKey } from "../types.js";
import { StoreConflictError } from "../types.js";

type Row = Record<string, unknown>;

const API_KEY_SELECT = `SELECT k.id, k.account_id, a.name AS account_name, k.name, k.prefix, k.created_at,
  k.last_used_at, k.revoked_at, k.scopes FROM api_keys k JOIN accounts a ON a.id = k.account_id`;

export function createAccountStore(db: Database.Database): AccountStore {
  const findKey = db.prepare(`${API_KEY_SELECT} WHERE k.hash = ? AND k.revoked_at IS NULL`);
  // Monotonic: a late flush from one process never moves "last used" backwards.
  const touchKey = db.prepare(
    "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
  );
  const touchKeys = db.transaction((uses: ReadonlyArray<{ readonly id: number; readonly at: number }>) => {
    for (const use of uses) touchKey.run(use.at, use.id, use.at);
  });

  return {
    async createAccount(name: string): Promise<Account> {
      try {
        const row = db
          .prepare("INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id, name, created_at")
          .get(name, Date.now()) as Row;
        return toAccount(row);
      } catch (err) {
        throw conflictOr(err, `account ${name} already exists`);
      }
    },

    async getAccount(name: string): Promise<Account | undefined> {
      const row = db.prepare("SELECT id, name, created_at FROM accounts WHERE name = ?").get(name) as
        | Row
        | undefined;
      return row && toAccount(row);
    },

    async listAccounts(): Promise<Account[]> {
      return (db.prepare("SELECT id, name, created_at FROM accounts ORDER BY name").all() as Row[]).map(
        toAccount,
      );
    },

    async insertApiKey(key: NewApiKey): Promise<ApiKey> {
      try {
        const { id } = db
          .prepare(
            "INSERT INTO api_keys (account_id, name, hash, prefix, created_at, scopes) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
          )
          .get(
            key.accountId,
            key.name,
            key.hash,
            key.prefix,
            Date.now(),
            (key.scopes ?? ["mail.send"]).join(","),
          ) as {
          id: number;
        };
        return toApiKey(db.prepare(`${API_KEY_SELECT} WHERE k.id = ?`).get(id) as Row);
      } catch (err) {
        throw conflictOr(err, `an active key named ${key.name} already exists`);
      }
    },

    async findActiveApiKey(hash: string): Promise<ApiKey | undefined> {
      const row = findKey.get(hash) as Row | undefined;
      return row && toApiKey(row);
    },

    async listApiKeys(): Promise<ApiKey[]> {
      const rows = db.prepare(`${API_KEY_SELECT} ORDER BY k.revoked_at IS NOT NULL, k.name`).all() as Row[];
      return rows.map(toApiKey);
    },

    async revokeApiKey(name: string): Promise<boolean> {
      return (
        db
          .prepare("UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL")
          .run(Date.now(), name).changes > 0
      );
    },

    async recordApiKeyUse(uses: ReadonlyArray<{ readonly id: number; readonly at: number }>): Promise<void> {
      touchKeys(uses);
    },
  };
}

/** Turns a uniqueness violation into a StoreConflictError with a message an operator understands. */
export function conflictOr(err: unknown, message: string): unknown {
  if (err instanceof StoreConflictError) return err;
  const code = (err as { code?: string }).code;
  if (code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY") {
    return new StoreConflictError(message);
  }
  return err;
}

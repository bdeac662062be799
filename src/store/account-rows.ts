/**
 * Rows of the accounts and api_keys tables mapped to Store types, one function each that both
 * backends call (beside domain-rows.ts).
 */
import type { Account, ApiKey } from "./types.js";

type Row = Record<string, unknown>;

const orNull = (value: unknown): number | null =>
  value === null || value === undefined ? null : Number(value);

export function toAccount(row: Row): Account {
  return { id: Number(row.id), name: String(row.name), createdAt: Number(row.created_at) };
}

export function toApiKey(row: Row): ApiKey {
  return {
    id: Number(row.id),
    accountId: Number(row.account_id),
    accountName: String(row.account_name),
    name: String(row.name),
    prefix: String(row.prefix),
    createdAt: Number(row.created_at),
    lastUsedAt: orNull(row.last_used_at),
    revokedAt: orNull(row.revoked_at),
    scopes: String(row.scopes ?? "mail.send")
      .split(",")
      .filter((s) => s !== ""),
  };
}

/**
 * Rows of the sender-domain tables mapped to Store types, by one function each that both
 * backends call (the columns and their meaning are the same in SQLite and PostgreSQL; the
 * drivers return numbers for both, see postgres/connection.ts's type parsers), so the two
 * implementations cannot drift apart. Beside event-rows.ts and throttle-rows.ts.
 */
import { parseChecks } from "./domain-status.js";
import type {
  DkimKeyInfo,
  DkimKeyKindName,
  DkimKeyState,
  DkimSigningKey,
  DomainEvent,
  DomainStatus,
  SenderDomain,
  SenderDomainDetail,
  SigningKeys,
  SingleSender,
} from "./types.js";

type Row = Record<string, unknown>;

const orNull = (value: unknown): number | null =>
  value === null || value === undefined ? null : Number(value);

export function toDomain(row: Row): SenderDomain {
  return {
    id: Number(row.id),
    accountId: Number(row.account_id),
    accountName: String(row.account_name),
    domain: String(row.domain),
    status: row.status as SenderDomain["status"],
    createdAt: Number(row.created_at),
    lastCheckedAt: orNull(row.last_checked_at),
  };
}

/** A domain row with dkim_generation, verified_at and last_check (the detail columns). */
export function toDomainDetail(row: Row, detail: Row = row): SenderDomainDetail {
  return {
    ...toDomain(row),
    dkimGeneration: Number(detail.dkim_generation),
    verifiedAt: orNull(detail.verified_at),
    lastCheck: parseChecks(detail.last_check),
  };
}

export function toSender(row: Row): SingleSender {
  return {
    id: Number(row.id),
    accountId: Number(row.account_id),
    accountName: String(row.account_name),
    address: String(row.address),
    createdAt: Number(row.created_at),
  };
}

export function toDkimKeyInfo(r: Row): DkimKeyInfo {
  return {
    id: Number(r.id),
    domain: String(r.domain),
    selector: String(r.selector),
    kind: r.kind as DkimKeyKindName,
    publicKey: String(r.public_key),
    state: r.state as DkimKeyState,
    generation: Number(r.generation),
    createdAt: Number(r.created_at),
    activatedAt: orNull(r.activated_at),
    retiredAt: orNull(r.retired_at),
  };
}

/** Rows of (status, id, selector, kind, private_key): the domain's status, its active keys or a null id. */
export function toSigningKeys(rows: readonly Row[]): SigningKeys | undefined {
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
}

export function toDomainEvent(r: Row): DomainEvent {
  return {
    domain: String(r.domain),
    at: Number(r.at),
    fromStatus: r.from_status as DomainStatus,
    toStatus: r.to_status as DomainStatus,
    detail: String(r.detail),
  };
}

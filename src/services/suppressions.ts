/**
 * An account's suppression list (issue 5): hard bounces and complaints add addresses by
 * themselves; operators and apps list, add, remove, export and import (CSV, all or nothing).
 */
import { PetrelError } from "../errors.js";
import type { Suppression } from "../store/types.js";
import { requireAccount, type ServiceContext } from "./context.js";
import { fromCsv, toCsv } from "./suppressions-csv.js";
import { validAddress } from "./validate.js";

export interface SuppressionQuery {
  readonly account: string;
  readonly reason?: string;
  /** Only addresses containing this text (lower-cased). */
  readonly search?: string;
  readonly limit?: number;
}

export async function listSuppressions(ctx: ServiceContext, query: SuppressionQuery): Promise<Suppression[]> {
  const account = await requireAccount(ctx.store, query.account);
  const search = query.search?.trim().toLowerCase();
  const list = await ctx.store.listSuppressions({
    accountId: account.id,
    ...(query.reason ? { reason: query.reason } : {}),
    ...(query.limit !== undefined && !search ? { limit: query.limit } : {}),
  });
  if (!search) return list;
  const found = list.filter((s) => s.address.includes(search));
  return query.limit === undefined ? found : found.slice(0, query.limit);
}

export async function findSuppression(
  ctx: ServiceContext,
  account: string,
  address: string,
): Promise<Suppression> {
  const acct = await requireAccount(ctx.store, account);
  const found = await ctx.store.findSuppression(acct.id, address.trim());
  if (!found) throw new PetrelError("not-found", `${address} is not suppressed for account ${acct.name}`);
  return found;
}

export interface AddResult {
  readonly account: string;
  /** Addresses newly suppressed. */
  readonly added: number;
  /** Addresses given (already suppressed ones keep their row). */
  readonly total: number;
}

export async function addSuppressions(
  ctx: ServiceContext,
  input: { readonly account: string; readonly addresses: readonly string[]; readonly note?: string | null },
): Promise<AddResult> {
  const addresses = input.addresses.map(validAddress);
  const acct = await requireAccount(ctx.store, input.account);
  const added = await ctx.store.addSuppressions(
    addresses.map((address) => ({
      accountId: acct.id,
      address,
      reason: "manual",
      detail: input.note ?? null,
    })),
  );
  return { account: acct.name, added, total: addresses.length };
}

/** Removes one address; returns it as stored (lower-cased). */
export async function removeSuppression(
  ctx: ServiceContext,
  account: string,
  value: string,
): Promise<string> {
  const acct = await requireAccount(ctx.store, account);
  if (!(await ctx.store.removeSuppression(acct.id, value))) {
    throw new PetrelError("not-found", `${value} is not suppressed for account ${acct.name}`);
  }
  return value.trim().toLowerCase();
}

export async function exportSuppressions(ctx: ServiceContext, account: string): Promise<string> {
  const acct = await requireAccount(ctx.store, account);
  return toCsv(await ctx.store.listSuppressions({ accountId: acct.id }));
}

/** Adds every address of a CSV text, all or nothing (one bad line and nothing is added). */
export async function importSuppressions(
  ctx: ServiceContext,
  account: string,
  csv: string,
): Promise<AddResult> {
  const acct = await requireAccount(ctx.store, account);
  const entries = fromCsv(csv, acct.id);
  const added = await ctx.store.addSuppressions(entries);
  return { account: acct.name, added, total: entries.length };
}

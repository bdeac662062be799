/**
 * What every service needs: the store, the configuration and a clock. Services are plain
 * functions over plain data (design: "the operations both the CLI and the HTTP API call");
 * they know nothing of terminals or HTTP and report every refusal as one PetrelError.
 *
 * Scope: an operation on an account's things takes the account by name. The CLI passes the
 * operator's --account; the HTTP API passes the API key's own account, so a key never reaches
 * another account's message, domain or webhook (it is "not found", never "forbidden").
 */
import type { PetrelConfig } from "../config/schema.js";
import type { DnsResolver } from "../dns/types.js";
import { PetrelError } from "../errors.js";
import { type Account, type Store, StoreConflictError } from "../store/types.js";

export interface ServiceContext {
  readonly store: Store;
  readonly config: PetrelConfig;
  /** For domain verification only; created on demand by the caller. */
  readonly resolver?: DnsResolver;
  readonly now?: () => number;
}

export const nowOf = (ctx: ServiceContext): number => (ctx.now ?? Date.now)();

export async function requireAccount(store: Store, name: string): Promise<Account> {
  const account = await store.getAccount(name);
  if (!account)
    throw new PetrelError(
      "not-found",
      `no account named ${name} (create it with: petrel accounts create ${name})`,
    );
  return account;
}

/** Runs a store call, turning its uniqueness violations into the `conflict` problem. */
export async function conflicts<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof StoreConflictError) throw new PetrelError("conflict", err.message, { cause: err });
    throw err;
  }
}

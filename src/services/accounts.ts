/**
 * Accounts: an account owns keys, sender domains, single senders, webhooks and suppressions.
 */
import type { Account } from "../store/types.js";
import { conflicts, type ServiceContext } from "./context.js";

export function createAccount(ctx: ServiceContext, name: string): Promise<Account> {
  return conflicts(ctx.store.createAccount(name));
}

export function listAccounts(ctx: ServiceContext): Promise<Account[]> {
  return ctx.store.listAccounts();
}

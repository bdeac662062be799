/**
 * Single senders: one address an account may send as, for a first test without DNS changes
 * (its mail is not DKIM-aligned). Sender domains are in domains.ts.
 */
import { normalizeAddress } from "../address.js";
import { PetrelError } from "../errors.js";
import type { SingleSender } from "../store/types.js";
import { conflicts, requireAccount, type ServiceContext } from "./context.js";
import { validAddress } from "./validate.js";

export async function addSender(
  ctx: ServiceContext,
  input: { readonly address: string; readonly account: string },
): Promise<SingleSender> {
  const address = validAddress(input.address);
  const account = await requireAccount(ctx.store, input.account);
  return conflicts(ctx.store.addSender(account.id, address));
}

export async function listSenders(ctx: ServiceContext, account?: string): Promise<SingleSender[]> {
  const accountId = account === undefined ? undefined : (await requireAccount(ctx.store, account)).id;
  return ctx.store.listSenders(accountId);
}

/** Removes a single sender (only one of `account`, when given). */
export async function removeSender(ctx: ServiceContext, value: string, account?: string): Promise<void> {
  // Canonical like the stored address (A-label domain, NFC local part): U-labels find it too.
  const address = normalizeAddress(value.trim());
  if (account !== undefined) {
    const owned = (await listSenders(ctx, account)).some(
      (s) => normalizeAddress(s.address).toLowerCase() === address.toLowerCase(),
    );
    if (!owned) throw new PetrelError("not-found", `no sender ${value}`);
  }
  if (!(await ctx.store.removeSender(address))) throw new PetrelError("not-found", `no sender ${value}`);
}

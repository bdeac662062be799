/**
 * API keys: created with a random secret shown once (only its hash is stored), listed without
 * it, revoked by name.
 * Security: the plaintext key exists only in the return value of createKey().
 */
import { generateApiKey } from "../auth/api-keys.js";
import { hasScope, parseScopes } from "../auth/scopes.js";
import { PetrelError } from "../errors.js";
import type { ApiKey } from "../store/types.js";
import { conflicts, requireAccount, type ServiceContext } from "./context.js";

export interface CreatedKey {
  readonly key: ApiKey;
  /** The plaintext key: shown once, never stored. */
  readonly secret: string;
}

export async function createKey(
  ctx: ServiceContext,
  input: {
    readonly name: string;
    readonly account: string;
    readonly scopes?: string | readonly string[];
    /** The scopes of the key asking (API, dashboard): a key can grant only scopes it has. */
    readonly grantor?: readonly string[];
  },
): Promise<CreatedKey> {
  const scopes = parseScopes(input.scopes);
  if (input.grantor) {
    const beyond = scopes.filter((s) => !hasScope(input.grantor!, s));
    if (beyond.length > 0)
      throw new PetrelError(
        "missing-scope",
        `a key can grant only scopes it has; missing ${beyond.join(", ")}`,
        {
          extra: { scope: beyond[0] },
        },
      );
  }
  if (input.name.trim() === "" || input.name.length > 200)
    throw new PetrelError("invalid-input", "a key name is 1 to 200 characters");
  const account = await requireAccount(ctx.store, input.account);
  const generated = generateApiKey();
  const key = await conflicts(
    ctx.store.insertApiKey({
      accountId: account.id,
      name: input.name,
      hash: generated.hash,
      prefix: generated.prefix,
      scopes,
    }),
  );
  return { key, secret: generated.key };
}

/** Every key (of one account when `account` is given), active first. */
export async function listKeys(ctx: ServiceContext, account?: string): Promise<ApiKey[]> {
  const list = await ctx.store.listApiKeys();
  return account === undefined ? list : list.filter((k) => k.accountName === account);
}

/** Revokes the active key of that name (in `account` only, when given). */
export async function revokeKey(ctx: ServiceContext, name: string, account?: string): Promise<void> {
  if (account !== undefined) {
    const owned = (await ctx.store.listApiKeys()).some(
      (k) => k.name === name && k.revokedAt === null && k.accountName === account,
    );
    if (!owned) throw new PetrelError("not-found", `no active key named ${name}`);
  }
  if (!(await ctx.store.revokeApiKey(name)))
    throw new PetrelError("not-found", `no active key named ${name}`);
}

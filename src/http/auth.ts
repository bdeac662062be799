/**
 * API authentication: `Authorization: Bearer <api key>`, the same keys as SMTP AUTH, with scopes.
 * A missing, unknown or revoked key is 401; a key without the scope is 403 naming the scope.
 * Failed attempts count per client IP in the same AuthThrottle as SMTP AUTH: an address locked
 * out there is locked out here (429), and failures here count there.
 * Security: the key is hashed before lookup and never logged; logs carry the key's name.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { hashApiKey } from "../auth/api-keys.js";
import { hasScope, type Scope } from "../auth/scopes.js";
import { PetrelError } from "../errors.js";
import type { AuthGuard } from "../policy/auth-throttle.js";
import type { ApiKey, Store } from "../store/types.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The authenticated key (set by the scope check of the route). */
    apiKey?: ApiKey;
  }
}

export interface AuthDeps {
  readonly store: Store;
  readonly throttle: AuthGuard;
  readonly onKeyUsed: (keyId: number, at: number) => void;
}

const BEARER = /^Bearer +([\x21-\x7e]{1,200})$/i;

export async function authenticate(deps: AuthDeps, request: FastifyRequest): Promise<ApiKey> {
  const header = request.headers.authorization;
  const token = header === undefined ? undefined : BEARER.exec(header)?.[1];
  return verifyApiKey(deps, request, token);
}

/**
 * Checks a presented key (the Bearer token, or the dashboard's sign-in form) against the shared
 * per-IP throttle: a locked-out address is refused before the lookup, a bad key counts a failure.
 */
export async function verifyApiKey(
  deps: AuthDeps,
  request: FastifyRequest,
  token: string | undefined,
): Promise<ApiKey> {
  const ip = request.ip;
  if (deps.throttle.isLocked(ip))
    throw new PetrelError(
      "rate-limited",
      "too many failed authentication attempts from this address; try later",
    );
  if (token === undefined) {
    throw new PetrelError("unauthorized", "send an API key: Authorization: Bearer <key>");
  }
  const key = await deps.store.findActiveApiKey(hashApiKey(token));
  if (!key) {
    const locked = await deps.throttle.recordFailure(ip);
    request.log.warn({ ip, locked }, "api auth failed");
    throw new PetrelError("unauthorized", "the API key is not valid (unknown or revoked)");
  }
  deps.onKeyUsed(key.id, Date.now());
  return key;
}

/** A preHandler: authenticates the request and requires `scope`. */
export function needs(deps: AuthDeps, scope: Scope) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const key = await authenticate(deps, request);
    if (!hasScope(key.scopes, scope))
      throw new PetrelError("missing-scope", `this operation needs the ${scope} scope`, { extra: { scope } });
    request.apiKey = key;
  };
}

/** The authenticated key of a route guarded by needs(). */
export function keyOf(request: FastifyRequest): ApiKey {
  if (!request.apiKey) throw new Error("route without a scope check");
  return request.apiKey;
}

/**
 * Dashboard sessions, held server-side: the cookie carries only a random 256-bit id; the server
 * keeps the key's hash, account, scopes and the CSRF token. Why server-side rather than signed
 * cookies: signing out really ends a session, and every request re-checks the key (revoking a
 * key ends its sessions at once) without a signing secret to manage. The price is that a
 * restart signs everyone out, which a dashboard can afford.
 *
 * Security: the cookie is HttpOnly, SameSite=Strict, Path=/, and Secure when served over TLS.
 * Every change (POST) must carry the session's CSRF token in the form (`_csrf`), compared in
 * constant time, and, when the browser sends one, an Origin of this host. Sessions expire after
 * 12 h, or 2 h unused; at most MAX_SESSIONS are kept (the oldest go first).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { hasScope, type Scope } from "../../auth/scopes.js";
import { PetrelError } from "../../errors.js";
import type { Store } from "../../store/types.js";

export const COOKIE = "petrel_session";
const MAX_AGE_MS = 12 * 3600_000;
const IDLE_MS = 2 * 3600_000;
const MAX_SESSIONS = 10_000;

export interface Flash {
  readonly kind: "ok" | "error";
  readonly text: string;
  /** A secret shown once (a new API key). */
  readonly secret?: string;
}

export interface Session {
  readonly id: string;
  readonly csrf: string;
  /** SHA-256 of the API key, to re-check on every request that the key is still active. */
  readonly keyHash: string;
  readonly keyName: string;
  readonly account: string;
  readonly scopes: readonly string[];
  readonly createdAt: number;
  lastSeenAt: number;
  flash?: Flash | undefined;
}

declare module "fastify" {
  interface FastifyRequest {
    dashboardSession?: Session;
  }
}

export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  create(input: Omit<Session, "id" | "csrf" | "createdAt" | "lastSeenAt">, now: number): Session {
    if (this.sessions.size >= MAX_SESSIONS) {
      const oldest = this.sessions.keys().next().value;
      if (oldest !== undefined) this.sessions.delete(oldest);
    }
    const session: Session = {
      ...input,
      id: randomBytes(32).toString("base64url"),
      csrf: randomBytes(32).toString("base64url"),
      createdAt: now,
      lastSeenAt: now,
    };
    this.sessions.set(hashId(session.id), session);
    return session;
  }

  get(id: string, now: number): Session | undefined {
    const key = hashId(id);
    const session = this.sessions.get(key);
    if (!session) return undefined;
    if (now - session.createdAt > MAX_AGE_MS || now - session.lastSeenAt > IDLE_MS) {
      this.sessions.delete(key);
      return undefined;
    }
    session.lastSeenAt = now;
    return session;
  }

  delete(id: string): void {
    this.sessions.delete(hashId(id));
  }
}

/** Map keys are hashes of the ids, so a timing side channel in Map lookups reveals nothing usable. */
function hashId(id: string): string {
  return createHash("sha256").update(id).digest("base64url");
}

/** The value of one cookie from the Cookie header (RFC 6265 §5.4: "name=value; name=value"). */
export function readCookie(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(value: string, secure: boolean, maxAgeS?: number): string {
  return [
    `${COOKIE}=${value}`,
    "Path=/",
    "HttpOnly",
    "SameSite=Strict",
    ...(secure ? ["Secure"] : []),
    ...(maxAgeS === undefined ? [] : [`Max-Age=${maxAgeS}`]),
  ].join("; ");
}

/** The session of a request whose key is still active, or undefined. */
export async function loadSession(
  sessions: SessionStore,
  store: Store,
  request: FastifyRequest,
): Promise<Session | undefined> {
  const id = readCookie(request, COOKIE);
  if (!id || id.length > 100) return undefined;
  const session = sessions.get(id, Date.now());
  if (!session) return undefined;
  const key = await store.findActiveApiKey(session.keyHash);
  if (!key) {
    sessions.delete(id);
    return undefined;
  }
  return session;
}

/** The request's session (set by the dashboard's preHandler). */
export function sessionOf(request: FastifyRequest): Session {
  if (!request.dashboardSession) throw new Error("dashboard route without a session check");
  return request.dashboardSession;
}

/** Throws missing-scope (a 403 page) unless the session's key has `scope`. */
export function need(session: Session, scope: Scope): void {
  if (!hasScope(session.scopes, scope))
    throw new PetrelError("missing-scope", `this page needs an API key with the ${scope} scope`, {
      extra: { scope },
    });
}

export function can(session: Session, scope: Scope): boolean {
  return hasScope(session.scopes, scope);
}

/** Read scopes that let a key sign in (or admin). */
export const SIGN_IN_SCOPES: readonly Scope[] = [
  "admin",
  "messages.read",
  "events.read",
  "suppressions.read",
  "domains.read",
];

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Refuses a cross-site change: an Origin header of another host (browsers send Origin on every
 * POST), or for a session, a missing or wrong CSRF token.
 */
export function checkChange(request: FastifyRequest, session: Session | undefined): void {
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== "null") {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host !== request.headers.host)
      throw new PetrelError("missing-scope", "refused: the form was sent from another site", {
        extra: { scope: "csrf" },
      });
  } else if (origin === "null") {
    throw new PetrelError("missing-scope", "refused: the form was sent from an opaque origin", {
      extra: { scope: "csrf" },
    });
  }
  if (!session) return;
  const body = request.body as Record<string, unknown> | undefined;
  const token = typeof body?._csrf === "string" ? body._csrf : "";
  if (!sameText(token, session.csrf))
    throw new PetrelError(
      "missing-scope",
      "refused: the form's CSRF token is missing or stale; reload the page",
      {
        extra: { scope: "csrf" },
      },
    );
}

export function setFlash(session: Session, flash: Flash): void {
  session.flash = flash;
}

/** Redirect after a change (POST/redirect/GET), with a message for the next page. */
export function back(reply: FastifyReply, session: Session, to: string, flash: Flash): FastifyReply {
  setFlash(session, flash);
  return reply.redirect(to, 303);
}

/**
 * Sign in with an API key that has `admin` or a read scope, and sign out. The key goes through
 * the API's own check (verifyApiKey), so a failure counts in the per-IP throttle SMTP AUTH and
 * the API share, and a locked-out address is refused here too.
 * Security: the key is never echoed or logged; `next` only ever redirects to a local path.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { hashApiKey } from "../../auth/api-keys.js";
import { hasScope } from "../../auth/scopes.js";
import { PetrelError } from "../../errors.js";
import { verifyApiKey } from "../auth.js";
import { html } from "./html.js";
import type { DashboardDeps } from "./index.js";
import { barePage } from "./layout.js";
import { COOKIE, checkChange, readCookie, SIGN_IN_SCOPES, sessionCookie } from "./session.js";

/** A local path to return to after sign-in ("/messages?x"), never another site ("//evil", "/\\evil"). */
function localPath(value: unknown): string {
  if (typeof value !== "string" || !/^\/(?![/\\])[\x21-\x7e]*$/.test(value) || value.startsWith("/login"))
    return "/";
  return value;
}

export function registerLogin(app: FastifyInstance, deps: DashboardDeps): void {
  const { assets } = deps;
  const tls = deps.api.tls;
  const form = (next: string, error?: string) =>
    barePage(
      "Sign in",
      html`${error ? html`<p class="flash error" role="alert">${error}</p>` : ""}
<form method="post" action="/login" class="stack">
<input type="hidden" name="next" value="${next}">
<label for="key">API key <span class="hint">(one with the admin scope or a read scope)</span></label>
<input id="key" name="key" type="password" autocomplete="off" required autofocus spellcheck="false">
<button type="submit">Sign in</button>
</form>`,
      assets,
    );

  app.get("/login", { schema: { hide: true } }, async (request: FastifyRequest, reply: FastifyReply) => {
    const next = localPath((request.query as Record<string, unknown>).next);
    return reply.type("text/html; charset=utf-8").send(form(next));
  });

  app.post("/login", { schema: { hide: true } }, async (request: FastifyRequest, reply: FastifyReply) => {
    checkChange(request, undefined);
    const body = (request.body ?? {}) as Record<string, unknown>;
    const next = localPath(body.next);
    const token = typeof body.key === "string" ? body.key.trim() : "";
    let key: Awaited<ReturnType<typeof verifyApiKey>>;
    try {
      key = await verifyApiKey(deps.api, request, token === "" ? undefined : token);
    } catch (err) {
      if (!(err instanceof PetrelError)) throw err;
      const status = err.type === "rate-limited" ? 429 : 401;
      const text =
        err.type === "rate-limited" ? err.message : "That API key is not valid (unknown or revoked).";
      return reply.code(status).type("text/html; charset=utf-8").send(form(next, text));
    }
    if (!SIGN_IN_SCOPES.some((s) => hasScope(key.scopes, s)))
      return reply
        .code(403)
        .type("text/html; charset=utf-8")
        .send(
          form(
            next,
            `This key cannot sign in: it needs admin or one of ${SIGN_IN_SCOPES.slice(1).join(", ")}.`,
          ),
        );
    const session = deps.sessions.create(
      { keyHash: hashApiKey(token), keyName: key.name, account: key.accountName, scopes: key.scopes },
      Date.now(),
    );
    request.log.info({ key: key.name, account: key.accountName }, "dashboard sign-in");
    return reply.header("set-cookie", sessionCookie(session.id, tls)).redirect(next, 303);
  });

  app.post("/logout", deps.signedIn, async (request, reply) => {
    const id = readCookie(request, COOKIE);
    if (id) deps.sessions.delete(id);
    return reply.header("set-cookie", sessionCookie("", tls, 0)).redirect("/login", 303);
  });
}

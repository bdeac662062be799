/**
 * The web dashboard (issue 9, item 8) at `/`, in the same Fastify server as the API: pages
 * rendered on the server (html.ts escapes every value), one stylesheet and one script from
 * static/, charts as server-drawn SVG. Every change goes through src/services, exactly as the
 * API's routes do; a session sees only its key's account, like the key would through the API.
 *
 * Registered as an encapsulated plugin, so its form parser, error pages and security headers
 * apply to dashboard routes only. Its routes are hidden from the OpenAPI document.
 *
 * Security: a strict Content-Security-Policy on every page (default-src 'self', no inline script
 * or style, frame-ancestors 'none'); sessions server-side (session.ts); CSRF token and Origin
 * check on every POST; sign-in through the API's key check and its per-IP failure throttle.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { PetrelError } from "../../errors.js";
import type { RouteDeps } from "../common.js";
import { type Assets, loadAssets, registerAssets } from "./assets.js";
import { type Html, html } from "./html.js";
import { barePage, page } from "./layout.js";
import { registerLive } from "./live.js";
import { registerLogin } from "./login.js";
import { registerDomainPages } from "./pages/domains.js";
import { registerKeyPages } from "./pages/keys.js";
import { registerMessagePage } from "./pages/message.js";
import { registerMessagesPage } from "./pages/messages.js";
import { registerOverview } from "./pages/overview.js";
import { registerSuppressionPages } from "./pages/suppressions.js";
import { registerWebhookPages } from "./pages/webhooks.js";
import { back, checkChange, loadSession, type Session, SessionStore, sessionOf } from "./session.js";

export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-src 'self'",
  "frame-ancestors 'none'",
  "form-action 'self'",
  "base-uri 'none'",
  "object-src 'none'",
].join("; ");

/** A form body: each field's value, or the list of values of a repeated field (checkboxes). */
export function formFields(body: string): Record<string, string | string[]> {
  // No prototype: a field named __proto__ is just a field.
  const out: Record<string, string | string[]> = Object.create(null);
  for (const [name, value] of new URLSearchParams(body)) {
    const prior = out[name];
    out[name] = prior === undefined ? value : [prior, value].flat();
  }
  return out;
}

/** The path of the same-origin page a form was sent from (its Referer), if any. */
function returnPath(request: FastifyRequest): string | undefined {
  const referer = request.headers.referer;
  if (!referer) return undefined;
  try {
    const url = new URL(referer);
    return url.host === request.headers.host ? url.pathname + url.search : undefined;
  } catch {
    return undefined;
  }
}

export interface DashboardDeps {
  readonly api: RouteDeps;
  readonly sessions: SessionStore;
  readonly assets: Assets;
  /** A whole page for the signed-in session. */
  render(
    request: FastifyRequest,
    reply: FastifyReply,
    title: string,
    active: string,
    body: Html,
  ): FastifyReply;
  /** Route options: a session is required (GET without one redirects to /login); POSTs pass the CSRF check. */
  readonly signedIn: {
    readonly schema: { readonly hide: true };
    readonly preHandler: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  };
}

const STATUS_TITLE: Record<number, string> = {
  400: "Invalid input",
  401: "Signed out",
  403: "Not allowed",
  404: "Not found",
  409: "Conflict",
  429: "Too many attempts",
};

export async function registerDashboard(app: FastifyInstance, api: RouteDeps): Promise<void> {
  const assets = loadAssets();
  const sessions = new SessionStore();
  await app.register(async (scope) => {
    // HTML forms post application/x-www-form-urlencoded (the API itself takes JSON only).
    scope.addContentTypeParser(
      "application/x-www-form-urlencoded",
      { parseAs: "string", bodyLimit: 1024 * 1024 },
      (_request, body, done) => done(null, formFields(body as string)),
    );
    scope.addHook("onSend", async (_request, reply, payload) => {
      if (!reply.hasHeader("content-security-policy")) reply.header("content-security-policy", DASHBOARD_CSP);
      reply.header("x-content-type-options", "nosniff");
      // same-origin: a refused form can send the user back to the page it came from (Referer).
      reply.header("referrer-policy", "same-origin");
      if (!reply.hasHeader("x-frame-options")) reply.header("x-frame-options", "DENY");
      if (!reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
      return payload;
    });
    scope.setErrorHandler(async (error: Error & { statusCode?: number }, request, reply) => {
      let status = 500;
      let detail = `internal error (request ${request.id})`;
      if (error instanceof PetrelError) {
        status = error.status;
        detail = error.message;
        // A refused change made from a page: back to that page with the reason (POST/redirect/GET).
        const session = request.dashboardSession;
        const from = returnPath(request);
        if (session && request.method === "POST" && error.extra?.scope !== "csrf" && from)
          return back(reply, session, from, { kind: "error", text: error.message });
      } else if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
        status = error.statusCode;
        detail = error.message;
      } else request.log.error({ err: error, reqId: request.id }, "dashboard request failed");
      const title = STATUS_TITLE[status] ?? "Something went wrong";
      const body = html`<p class="flash error" role="alert">${detail}</p><p><a href="/">Back to the overview</a></p>`;
      reply.code(status).type("text/html; charset=utf-8");
      if (request.dashboardSession)
        return reply.send(page({ title, active: "", session: request.dashboardSession, body, assets }));
      return reply.send(barePage(title, body, assets));
    });

    const signedIn = {
      schema: { hide: true } as const,
      preHandler: async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
        const session = await loadSession(sessions, api.store, request);
        if (!session) {
          if (request.method === "GET" && !request.url.startsWith("/live")) {
            await reply.redirect(`/login?next=${encodeURIComponent(request.url)}`, 303);
            return;
          }
          throw new PetrelError("unauthorized", "sign in first");
        }
        if (request.method === "POST") checkChange(request, session);
        request.dashboardSession = session;
      },
    };
    const deps: DashboardDeps = {
      api,
      sessions,
      assets,
      signedIn,
      render(request, reply, title, active, body) {
        const session: Session = sessionOf(request);
        return reply.type("text/html; charset=utf-8").send(page({ title, active, session, body, assets }));
      },
    };
    registerAssets(scope, assets);
    registerLogin(scope, deps);
    registerOverview(scope, deps);
    registerMessagesPage(scope, deps);
    registerMessagePage(scope, deps);
    registerLive(scope, deps);
    registerDomainPages(scope, deps);
    registerKeyPages(scope, deps);
    registerSuppressionPages(scope, deps);
    registerWebhookPages(scope, deps);
  });
}

/**
 * API keys of the session's account: the list (never the keys themselves), create (the key is
 * shown once, in the next page's message) and revoke. Needs keys.write, as in the API; a key
 * can grant only the scopes it has (the keys service checks).
 */
import type { FastifyInstance } from "fastify";
import { hasScope, SCOPES } from "../../../auth/scopes.js";
import { createKey, listKeys, revokeKey } from "../../../services/keys.js";
import { html, time } from "../html.js";
import type { DashboardDeps } from "../index.js";
import { csrfField, postButton } from "../layout.js";
import { back, need, sessionOf } from "../session.js";

export function registerKeyPages(app: FastifyInstance, deps: DashboardDeps): void {
  const { ctx } = deps.api;

  app.get("/keys", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "keys.write");
    const keys = await listKeys(ctx, session.account);
    const grantable = SCOPES.filter((s) => hasScope(session.scopes, s));
    const body = html`<form method="post" action="/keys" class="stack card">${csrfField(session)}
<h2>Create a key</h2>
<label for="key-name">Name</label><input id="key-name" name="name" required maxlength="200">
<fieldset><legend>Scopes</legend><div class="checks">${grantable.map(
      (s) =>
        html`<label><input type="checkbox" name="scope" value="${s}"${s === "mail.send" ? html` checked` : ""}> ${s}</label>`,
    )}</div></fieldset>
<button type="submit">Create key</button></form>
<div class="scroll"><table class="keys"><caption class="sr">API keys of account ${session.account}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Starts with</th><th scope="col">Scopes</th><th scope="col">Created (UTC)</th><th scope="col">Last used</th><th scope="col">State</th><th scope="col"><span class="sr">Actions</span></th></tr></thead>
<tbody>${keys.map(
      (k) =>
        html`<tr><td>${k.name}</td><td class="mono">${k.prefix}…</td><td>${k.scopes.join(", ")}</td><td>${time(k.createdAt)}</td><td>${time(k.lastUsedAt)}</td><td>${k.revokedAt ? html`<span class="state s-revoked">revoked ${time(k.revokedAt)}</span>` : html`<span class="state s-active">active</span>`}</td><td>${
          k.revokedAt
            ? ""
            : postButton(
                session,
                "/keys/revoke",
                `Revoke ${k.name}`,
                { name: k.name },
                {
                  confirm: `Revoke the key ${k.name}? Clients using it stop working.`,
                  danger: true,
                },
              )
        }</td></tr>`,
    )}</tbody></table></div>`;
    return deps.render(request, reply, "API keys", "/keys", body);
  });

  app.post("/keys", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "keys.write");
    const form = request.body as Record<string, unknown>;
    const scopes = [form.scope ?? []].flat().map(String);
    const { key, secret } = await createKey(ctx, {
      name: String(form.name ?? ""),
      account: session.account,
      scopes,
      grantor: session.scopes,
    });
    return back(reply, session, "/keys", {
      kind: "ok",
      text: `Created the key ${key.name} (${key.scopes.join(", ")}).`,
      secret,
    });
  });

  app.post("/keys/revoke", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "keys.write");
    const name = String((request.body as Record<string, unknown>).name ?? "");
    await revokeKey(ctx, name, session.account);
    return back(reply, session, "/keys", { kind: "ok", text: `Revoked the key ${name}.` });
  });
}

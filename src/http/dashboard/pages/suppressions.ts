/**
 * The account's suppression list: search, add (one or more addresses with a note), remove, and
 * export as CSV. Reading needs suppressions.read, changes suppressions.write (as the API).
 */
import type { FastifyInstance } from "fastify";
import {
  addSuppressions,
  exportSuppressions,
  listSuppressions,
  removeSuppression,
} from "../../../services/suppressions.js";
import { html, time } from "../html.js";
import type { DashboardDeps } from "../index.js";
import { csrfField, postButton } from "../layout.js";
import { back, can, need, sessionOf } from "../session.js";

const SHOWN = 200;

export function registerSuppressionPages(app: FastifyInstance, deps: DashboardDeps): void {
  const { ctx } = deps.api;

  app.get("/suppressions", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "suppressions.read");
    const write = can(session, "suppressions.write");
    const q = (request.query as Record<string, unknown>).q;
    const search = typeof q === "string" ? q.trim().slice(0, 320) : "";
    const list = await listSuppressions(ctx, {
      account: session.account,
      ...(search ? { search } : {}),
      limit: SHOWN + 1,
    });
    const body = html`<form method="get" action="/suppressions" class="row" role="search"><label for="s-q">Search addresses</label> <input id="s-q" name="q" value="${search}" spellcheck="false"> <button type="submit">Search</button> <a href="/suppressions.csv" download>Export CSV</a></form>
${
  write
    ? html`<form method="post" action="/suppressions" class="stack card">${csrfField(session)}<h2>Suppress addresses</h2>
<label for="s-add">Addresses <span class="hint">(one per line, or separated by commas)</span></label><textarea id="s-add" name="addresses" rows="3" required spellcheck="false"></textarea>
<label for="s-note">Note</label><input id="s-note" name="note" maxlength="500">
<button type="submit">Add</button></form>`
    : ""
}
<div class="scroll"><table class="suppressions"><caption class="sr">Suppressed addresses</caption>
<thead><tr><th scope="col">Address</th><th scope="col">Reason</th><th scope="col">Since (UTC)</th><th scope="col">Detail</th><th scope="col"><span class="sr">Actions</span></th></tr></thead>
<tbody>${list
      .slice(0, SHOWN)
      .map(
        (s) =>
          html`<tr><td class="addr">${s.address}</td><td>${s.reason}</td><td>${time(s.createdAt)}</td><td class="reply">${s.detail ?? ""}${s.messageId ? html` <a href="/messages/${s.messageId}">message</a>` : ""}</td><td>${write ? postButton(session, "/suppressions/remove", `Remove ${s.address}`, { address: s.address }) : ""}</td></tr>`,
      )}</tbody></table></div>
${list.length === 0 ? html`<p>No suppressed addresses${search ? " match" : ""}.</p>` : ""}
${list.length > SHOWN ? html`<p class="hint">The first ${SHOWN} are shown; search to narrow, or export the whole list.</p>` : ""}`;
    return deps.render(request, reply, "Suppressions", "/suppressions", body);
  });

  app.get("/suppressions.csv", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "suppressions.read");
    const csv = await exportSuppressions(ctx, session.account);
    return reply
      .header("content-disposition", 'attachment; filename="suppressions.csv"')
      .type("text/csv; charset=utf-8")
      .send(csv);
  });

  app.post("/suppressions", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "suppressions.write");
    const form = request.body as Record<string, unknown>;
    const addresses = String(form.addresses ?? "")
      .split(/[\s,;]+/)
      .filter(Boolean);
    const note = typeof form.note === "string" && form.note.trim() ? form.note.trim() : null;
    const result = await addSuppressions(ctx, { account: session.account, addresses, note });
    return back(reply, session, "/suppressions", {
      kind: "ok",
      text: `Suppressed ${result.added} new address${result.added === 1 ? "" : "es"} (${result.total} given).`,
    });
  });

  app.post("/suppressions/remove", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "suppressions.write");
    const address = String((request.body as Record<string, unknown>).address ?? "");
    const removed = await removeSuppression(ctx, session.account, address);
    return back(reply, session, "/suppressions", { kind: "ok", text: `Removed ${removed} from the list.` });
  });
}

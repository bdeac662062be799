/**
 * The message list: search by sender, recipient, queue ID, state, category and time (the API's
 * searchMessages, served by indexes), newest first, 50 a page with an "older" cursor link. The
 * first unfiltered page follows the event log live (live.ts, via static/dashboard.js).
 */
import type { FastifyInstance } from "fastify";
import { PetrelError } from "../../../errors.js";
import { searchMessages } from "../../../services/messages.js";
import { RECIPIENT_STATES, requireMessage, SHOWN_STATES } from "../../../services/queue.js";
import { BULK_ACTIONS, bulkQueueAction, parseBulkAction } from "../../../services/queue-bulk.js";
import type { MessageSearchRow } from "../../../store/types.js";
import { type Html, html, time } from "../html.js";
import type { DashboardDeps } from "../index.js";
import { csrfField } from "../layout.js";
import { newestAccountEvent } from "../live.js";
import { back, can, need, type Session, sessionOf } from "../session.js";

const PAGE = 50;

/** A datetime-local value ("2026-12-02T14:05", taken as UTC) or RFC 3339 → ms. */
export function parseTime(value: string | undefined, field: string): number | undefined {
  if (!value) return undefined;
  const ms = Date.parse(/[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value}Z`);
  if (Number.isNaN(ms)) throw new PetrelError("invalid-input", `${field}: not a time`);
  return ms;
}

function str(q: Record<string, unknown>, name: string): string | undefined {
  const v = q[name];
  return typeof v === "string" && v.trim() !== "" ? v.trim().slice(0, 320) : undefined;
}

export function stateBadges(recipients: MessageSearchRow["recipients"]): Html {
  return html`<ul class="rcpts">${recipients
    .slice(0, 3)
    .map(
      (r) =>
        html`<li><span class="addr">${r.address}</span> <span class="state s-${r.state}" data-rcpt="${r.address}">${r.state}</span></li>`,
    )}${recipients.length > 3 ? html`<li class="more">+${recipients.length - 3} more</li>` : ""}</ul>`;
}

export function messageRow(m: MessageSearchRow): Html {
  return html`<tr data-id="${m.id}"><td><time datetime="${new Date(m.receivedAt).toISOString()}">${time(m.receivedAt)}</time></td><td><a href="/messages/${m.id}">${m.id}</a></td><td class="addr">${m.mailFrom}</td><td>${stateBadges(m.recipients)}</td><td>${m.categories.join(", ")}</td></tr>`;
}

/** Admin only (as POST /v1/queue/{action}): one action on every message matching a filter. */
function bulkForm(session: Session): Html {
  if (!can(session, "admin")) return html``;
  return html`<details class="card"><summary>Queue action on every matching message</summary>
<form method="post" action="/queue" class="row" data-confirm="Apply this action to every matching message?">${csrfField(session)}
<label for="b-action">Action</label><select id="b-action" name="action">${BULK_ACTIONS.map((a) => html`<option>${a}</option>`)}</select>
<label for="b-domain">Recipient domain</label><input id="b-domain" name="domain" placeholder="example.com" spellcheck="false">
<label for="b-state">State</label><select id="b-state" name="state"><option value="">any</option>${RECIPIENT_STATES.filter((s) => s !== "scheduled").map((s) => html`<option>${s}</option>`)}</select>
<button type="submit">Apply</button></form>
<p class="hint">For example: release, domain example.com, state held. A domain, a state, or both.</p></details>`;
}

export function registerMessagesPage(app: FastifyInstance, deps: DashboardDeps): void {
  const { ctx } = deps.api;
  app.get("/messages", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "messages.read");
    const q = request.query as Record<string, unknown>;
    const id = str(q, "id");
    if (id) {
      const found = await requireMessage(ctx, id, session.account).catch((err: unknown) => {
        if (err instanceof PetrelError && (err.type === "not-found" || err.type === "invalid-input"))
          return undefined;
        throw err;
      });
      if (found) return reply.redirect(`/messages/${found.id}`, 303);
    }
    const filter = {
      from: str(q, "from"),
      to: str(q, "to"),
      state: str(q, "state"),
      category: str(q, "category"),
      since: parseTime(str(q, "since"), "since"),
      until: parseTime(str(q, "until"), "until"),
    };
    const cursor = str(q, "cursor");
    const result = id
      ? { messages: [], nextCursor: null }
      : await searchMessages(ctx, { account: session.account, ...filter, limit: PAGE, cursor });
    const filtered =
      id !== undefined || cursor !== undefined || Object.values(filter).some((v) => v !== undefined);
    const live = filtered ? "" : await newestAccountEvent(ctx, session.account);
    const params = new URLSearchParams();
    for (const name of ["from", "to", "state", "category", "since", "until"]) {
      const v = str(q, name);
      if (v) params.set(name, v);
    }
    if (result.nextCursor) params.set("cursor", result.nextCursor);
    const body = html`
${bulkForm(session)}
<form method="get" action="/messages" class="search" role="search" aria-label="Search messages">
<div><label for="f-id">Queue ID</label><input id="f-id" name="id" value="${id ?? ""}" spellcheck="false"></div>
<div><label for="f-to">Recipient</label><input id="f-to" name="to" type="text" inputmode="email" value="${filter.to ?? ""}"></div>
<div><label for="f-from">Sender</label><input id="f-from" name="from" type="text" inputmode="email" value="${filter.from ?? ""}"></div>
<div><label for="f-state">State</label><select id="f-state" name="state"><option value="">any</option>${SHOWN_STATES.map(
      (s) => html`<option${s === filter.state ? html` selected` : ""}>${s}</option>`,
    )}</select></div>
<div><label for="f-cat">Category</label><input id="f-cat" name="category" value="${filter.category ?? ""}"></div>
<div><label for="f-since">Since (UTC)</label><input id="f-since" name="since" type="datetime-local" value="${str(q, "since") ?? ""}"></div>
<div><label for="f-until">Until (UTC)</label><input id="f-until" name="until" type="datetime-local" value="${str(q, "until") ?? ""}"></div>
<div class="go"><button type="submit">Search</button> <a href="/messages">Clear</a></div>
</form>
${id ? html`<p class="flash error" role="alert">No message ${id} in this account.</p>` : ""}
${live ? html`<p class="hint" id="live-status" aria-live="polite">New messages appear here as they are accepted.</p>` : ""}
<div class="scroll"><table class="messages">
<caption class="sr">Messages, newest first</caption>
<thead><tr><th scope="col">Received (UTC)</th><th scope="col">Queue ID</th><th scope="col">Sender</th><th scope="col">Recipients</th><th scope="col">Categories</th></tr></thead>
<tbody id="message-rows"${live ? html` data-live="${live}"` : ""}>${result.messages.map(messageRow)}</tbody>
</table></div>
${result.messages.length === 0 && !id ? html`<p id="no-messages">No messages match.</p>` : ""}
${result.nextCursor ? html`<p><a href="/messages?${params.toString()}" rel="next">Older messages</a></p>` : ""}`;
    return deps.render(request, reply, "Messages", "/messages", body);
  });

  app.post("/queue", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "admin");
    const form = request.body as Record<string, unknown>;
    const text = (name: string) => (typeof form[name] === "string" ? (form[name] as string) : undefined);
    const result = await bulkQueueAction(
      ctx,
      parseBulkAction(text("action") ?? ""),
      { domain: text("domain"), state: text("state") },
      session.account,
    );
    return back(reply, session, "/messages", {
      kind: "ok",
      text: `${result.action}: ${result.messages} message${result.messages === 1 ? "" : "s"} matched, ${result.recipients} recipient${result.recipients === 1 ? "" : "s"} changed.`,
    });
  });
}

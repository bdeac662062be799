/**
 * Webhook endpoints of the session's account: state, failures, the recent deliveries with their
 * status codes, and replay (the events since a time sent again, in order, with their ids).
 * Needs webhooks.write, as in the API.
 */
import type { FastifyInstance } from "fastify";
import { PetrelError } from "../../../errors.js";
import { listDeliveries, listWebhooks, replayWebhook } from "../../../services/webhooks.js";
import { html, time } from "../html.js";
import type { DashboardDeps } from "../index.js";
import { csrfField } from "../layout.js";
import { back, need, sessionOf } from "../session.js";
import { parseTime } from "./messages.js";

const RECENT = 10;

export function registerWebhookPages(app: FastifyInstance, deps: DashboardDeps): void {
  const { ctx } = deps.api;

  app.get("/webhooks", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "webhooks.write");
    const hooks = await listWebhooks(ctx, session.account);
    const hourAgo = new Date(Date.now() - 3600_000).toISOString().slice(0, 16);
    const sections = await Promise.all(
      hooks.map(async (w) => {
        const deliveries = await listDeliveries(ctx, { account: session.account, id: w.id }, RECENT);
        return html`<section class="webhook" aria-labelledby="w-${w.id}">
<h2 id="w-${w.id}"><span class="mono">${w.url}</span> <span class="state s-${w.state}">${w.state}</span>${w.failures > 0 ? html` <span class="state s-failing">${w.failures} failures</span>` : ""}</h2>
<p class="hint">Events: ${w.eventTypes ? w.eventTypes.join(", ") : "all"} · secret ${w.secret} · last success ${time(w.lastSuccessAt)}${w.failingSince ? ` · failing since ${time(w.failingSince)}` : ""}${w.disabledReason ? ` · disabled: ${w.disabledReason}` : ""}</p>
<form method="post" action="/webhooks/${w.id}/replay" class="row">${csrfField(session)}<label for="r-${w.id}">Replay events since (UTC)</label> <input id="r-${w.id}" name="since" type="datetime-local" value="${hourAgo}" required> <button type="submit">Replay</button></form>
<div class="scroll"><table class="deliveries"><caption>Recent deliveries</caption>
<thead><tr><th scope="col">Time (UTC)</th><th scope="col">Kind</th><th scope="col">Status</th><th scope="col">Events</th><th scope="col">Took</th><th scope="col">Error</th></tr></thead>
<tbody>${deliveries.map(
          (d) =>
            html`<tr><td>${time(d.at)}</td><td>${d.kind}</td><td><span class="state ${d.ok ? "s-delivered" : "s-bounced"}">${d.statusCode ?? "no answer"}</span></td><td>${d.events}</td><td>${d.durationMs} ms</td><td class="reply">${d.error ?? ""}</td></tr>`,
        )}</tbody></table></div>
${deliveries.length === 0 ? html`<p class="hint">No deliveries yet.</p>` : ""}
</section>`;
      }),
    );
    const body = html`${hooks.length === 0 ? html`<p>No webhook endpoints (add one with <code>petrel webhooks add</code> or POST /v1/webhooks).</p>` : sections}`;
    return deps.render(request, reply, "Webhooks", "/webhooks", body);
  });

  app.post("/webhooks/:id/replay", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "webhooks.write");
    const id = Number((request.params as { id: string }).id);
    if (!Number.isSafeInteger(id) || id <= 0) throw new PetrelError("not-found", "no such webhook");
    const since = parseTime(String((request.body as Record<string, unknown>).since ?? ""), "since");
    if (since === undefined) throw new PetrelError("invalid-input", "since: give a time");
    const result = await replayWebhook(ctx, { account: session.account, id }, { at: since });
    return back(reply, session, "/webhooks", {
      kind: "ok",
      text: `Replaying to ${result.url} the events since ${time(since)} UTC${result.rewound ? "" : " (nothing to rewind)"}.`,
    });
  });
}

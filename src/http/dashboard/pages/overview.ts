/**
 * The overview: what happened in the last hour and day (charts), the queue, and what needs
 * attention (failing webhook endpoints).
 */
import type { FastifyInstance } from "fastify";
import { listWebhooks } from "../../../services/webhooks.js";
import { html, time } from "../html.js";
import type { DashboardDeps } from "../index.js";
import { can, sessionOf } from "../session.js";

export function registerOverview(app: FastifyInstance, deps: DashboardDeps): void {
  const { ctx } = deps.api;
  app.get("/", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    const hooks = can(session, "webhooks.write") ? await listWebhooks(ctx, session.account) : [];
    const failing = hooks.filter((w) => w.failures > 0 || w.state === "disabled");
    const body = html`<section aria-labelledby="h-attn"><h2 id="h-attn">Webhook endpoints failing</h2>
${
  failing.length === 0
    ? html`<p>None.</p>`
    : html`<ul>${failing.map((w) => html`<li><a href="/webhooks#w-${w.id}" class="mono">${w.url}</a> <span class="state s-${w.state === "disabled" ? "disabled" : "failing"}">${w.state === "disabled" ? "disabled" : `${w.failures} failures`}</span> since ${time(w.failingSince)}</li>`)}</ul>`
}</section>`;
    return deps.render(request, reply, "Overview", "/", body);
  });
}

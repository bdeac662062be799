/**
 * The overview: what happened to the account's mail in the last hour and the last day (charts
 * from the stats service: accepted, delivered, deferred, bounced, dropped), its queue (pending
 * recipients by state, the oldest waiting message), the destinations backed off, and the
 * webhook endpoints failing. Every number is the session's account only.
 */
import type { FastifyInstance } from "fastify";
import {
  failingWebhooks,
  QUEUE_COUNT_LIMIT,
  type QueueOverview,
  queueOverview,
} from "../../../services/overview.js";
import { RECIPIENT_STATES } from "../../../services/queue.js";
import { getStats, type Stats, type StatsCounts } from "../../../services/stats.js";
import type { WebhookView } from "../../../services/webhooks.js";
import { barChart, legend, lineChart, type Point, SERIES, type SeriesName } from "../charts.js";
import { type Html, html, time } from "../html.js";
import type { DashboardDeps } from "../index.js";
import { can, sessionOf } from "../session.js";

function counts(c: StatsCounts): Record<SeriesName, number> {
  return {
    processed: c.processed,
    delivered: c.delivered,
    deferred: c.deferred,
    bounced: c.bounced.total,
    dropped: c.dropped.total,
  };
}

function points(stats: Stats): Point[] {
  return stats.buckets.map((b) => ({ start: Date.parse(b.start), ...counts(b) }));
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

export function registerOverview(app: FastifyInstance, deps: DashboardDeps): void {
  const { ctx } = deps.api;
  app.get("/", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    const now = Date.now();
    // Each part needs the scope of its API route: stats events.read, the queue messages.read.
    const stats = can(session, "events.read");
    const [day, queue, failing] = await Promise.all([
      // The last 24 hours per UTC hour; the last hour is read from its newest two buckets.
      stats
        ? getStats(ctx, {
            account: session.account,
            interval: "hour",
            since: now - 86_400_000 + 3600_000,
            until: now,
          })
        : null,
      can(session, "messages.read") ? queueOverview(ctx, session.account) : null,
      can(session, "webhooks.write") ? failingWebhooks(ctx, session.account) : Promise.resolve(null),
    ]);
    const body = html`${day ? activity(day) : ""}${queue ? queueSection(queue, now) : ""}${failing ? hooksSection(failing) : ""}`;
    return deps.render(request, reply, "Overview", "/", body);
  });
}

function activity(day: Stats): Html {
  const recent = day.buckets.slice(-2);
  const hour = SERIES.reduce(
    (sum, s) => Object.assign(sum, { [s]: recent.reduce((a, b) => a + counts(b)[s], 0) }),
    {} as Record<SeriesName, number>,
  );
  const hourLabel = `since ${recent[0]?.start.slice(11, 16) ?? "–"} UTC`;
  const totals = counts(day.totals);
  return html`<section aria-labelledby="h-activity"><h2 id="h-activity">Activity</h2>
${legend()}
<div class="charts">
<figure><figcaption>Last hour <span class="hint">(${hourLabel})</span></figcaption>${barChart(hour, `Last hour, ${hourLabel}`)}</figure>
<figure><figcaption>Last 24 hours <span class="hint">(per hour, UTC)</span></figcaption>${lineChart(points(day), "Last 24 hours per hour")}</figure>
</div>
<p class="hint">Last 24 hours: ${totals.processed} accepted, ${totals.delivered} delivered, ${totals.deferred} deferrals, ${totals.bounced} bounced, ${totals.dropped} dropped (counted from the event log, as GET /v1/stats).</p>
</section>`;
}

function queueSection(queue: QueueOverview, now: number): Html {
  const pendingStates = RECIPIENT_STATES.filter((s) => (queue.byState[s] ?? 0) > 0);
  return html`<section aria-labelledby="h-queue"><h2 id="h-queue">Queue</h2>
<ul class="tiles">
<li><span class="n" id="queue-depth">${queue.complete ? queue.pending : `${QUEUE_COUNT_LIMIT.toLocaleString("en")}+`}</span> recipients waiting</li>
${pendingStates.map((s) => html`<li><span class="n">${queue.byState[s] ?? 0}${queue.complete ? "" : "+"}</span> ${s}</li>`)}
<li><span class="n">${queue.oldest ? age(now - queue.oldest.receivedAt) : "–"}</span> oldest waiting${queue.complete ? "" : ` (among the first ${QUEUE_COUNT_LIMIT.toLocaleString("en")} found)`}${
    queue.oldest
      ? html` (<a href="/messages/${queue.oldest.id}">${queue.oldest.id}</a>, ${time(queue.oldest.receivedAt)} UTC)`
      : ""
  }</li>
<li><span class="n">${queue.backedOff.length}</span> destinations backed off</li>
</ul>
${
  queue.backedOff.length > 0
    ? html`<div class="scroll"><table><caption>Destinations backed off</caption><thead><tr><th scope="col">Domain</th><th scope="col">Until (UTC)</th><th scope="col">Failures</th><th scope="col">Waiting</th><th scope="col">Last error</th></tr></thead><tbody>${queue.backedOff.map(
        (b) =>
          html`<tr><td>${b.domain}</td><td>${time(b.until)}</td><td>${b.failures}</td><td>${b.pending}</td><td class="reply">${b.lastError}</td></tr>`,
      )}</tbody></table></div>`
    : ""
}
</section>`;
}

function hooksSection(failing: readonly WebhookView[]): Html {
  return html`<section aria-labelledby="h-hooks"><h2 id="h-hooks">Webhook endpoints failing</h2>
${
  failing.length === 0
    ? html`<p>None.</p>`
    : html`<ul>${failing.map(
        (w) =>
          html`<li><a href="/webhooks#w-${w.id}" class="mono">${w.url}</a> <span class="state s-${w.state === "disabled" ? "disabled" : "failing"}">${w.state === "disabled" ? "disabled" : `${w.failures} failures`}</span>${w.failingSince ? ` since ${time(w.failingSince)} UTC` : ""}</li>`,
      )}</ul>`
}</section>`;
}

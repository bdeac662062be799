/**
 * Sender domains: the records to publish (with copy buttons), each record's status from the last
 * check, a "verify now" button (the records looked up now, recorded as the API's verify does),
 * and adding a domain. Reading needs domains.read; adding and verifying domains.write.
 */
import type { FastifyInstance } from "fastify";
import { createResolver } from "../../../dns/resolver.js";
import {
  addDomain,
  domainRecords,
  listDomains,
  showDomain,
  verifyDomain,
} from "../../../services/domains.js";
import type { RecordCheck } from "../../../store/types.js";
import { html, time } from "../html.js";
import type { DashboardDeps } from "../index.js";
import { csrfField, postButton } from "../layout.js";
import { back, can, need, sessionOf } from "../session.js";

export function registerDomainPages(app: FastifyInstance, deps: DashboardDeps): void {
  const { ctx, config } = deps.api;
  // Verification must see what is published now: no cache (as the API's verify route).
  const resolver = createResolver({
    servers: config.dns.servers,
    timeoutMs: config.dns.timeoutMs,
    tries: config.dns.tries,
    cache: false,
  });

  app.get("/domains", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "domains.read");
    const write = can(session, "domains.write");
    const domains = await listDomains(ctx, session.account);
    const sections = await Promise.all(
      domains.map(async (d) => {
        const [detail, records] = await Promise.all([
          showDomain(ctx, d.domain, session.account),
          domainRecords(ctx, d.domain, session.account),
        ]);
        const checkOf = (name: string, type: string, purpose: string): RecordCheck | undefined =>
          detail.lastCheck.find((c) => c.name === name && c.type === type && c.purpose === purpose);
        return html`<section class="domain" aria-labelledby="d-${d.id}">
<h2 id="d-${d.id}">${d.domain} <span class="state s-${d.status}">${d.status}</span></h2>
<p class="hint">Last checked: ${detail.lastCheckedAt ? `${time(detail.lastCheckedAt)} UTC` : "never"}</p>
${write ? postButton(session, "/domains/verify", "Verify now", { domain: d.domain }) : ""}
<div class="scroll"><table class="records"><caption class="sr">Records to publish for ${d.domain}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Value</th><th scope="col">Status</th></tr></thead>
<tbody>${records.map((r, i) => {
          const check = checkOf(r.name, r.type, r.purpose);
          const valueId = `v-${d.id}-${i}`;
          return html`<tr><td class="mono">${r.name} <button type="button" class="copy" data-copy="${r.name}" aria-label="Copy the name ${r.name}">Copy</button></td><td>${r.type}<br><span class="hint">${r.purpose}</span></td><td><code id="${valueId}" class="value">${r.value}</code> <button type="button" class="copy" data-copy="${r.value}" aria-label="Copy the ${r.purpose} value">Copy</button>${r.note ? html`<br><span class="hint">${r.note}</span>` : ""}</td><td>${
            check
              ? html`<span class="state s-${check.result}">${check.result}</span>${check.detail ? html`<br><span class="hint">${check.detail}</span>` : ""}`
              : html`<span class="state">not checked</span>`
          }</td></tr>`;
        })}</tbody></table></div>
</section>`;
      }),
    );
    const body = html`${
      write
        ? html`<form method="post" action="/domains" class="row">${csrfField(session)}<label for="new-domain">Add a sender domain</label> <input id="new-domain" name="domain" required placeholder="example.com" spellcheck="false"> <button type="submit">Add domain</button></form>`
        : ""
    }
${domains.length === 0 ? html`<p>No sender domains yet.</p>` : sections}`;
    return deps.render(request, reply, "Domains", "/domains", body);
  });

  app.post("/domains", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "domains.write");
    const domain = String((request.body as Record<string, unknown>).domain ?? "");
    const added = await addDomain(ctx, { domain, account: session.account });
    return back(reply, session, "/domains", {
      kind: "ok",
      text: `Added ${added.domain.domain}: publish its ${added.records.length} records, then verify.`,
    });
  });

  app.post("/domains/verify", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "domains.write");
    const domain = String((request.body as Record<string, unknown>).domain ?? "");
    const report = await verifyDomain({ ...ctx, resolver }, domain, session.account);
    const failing = report.checks.filter((c) => c.required && c.result !== "match").length;
    return back(reply, session, "/domains", {
      kind: report.outcome === "pass" ? "ok" : "error",
      text: `${report.domain}: ${report.outcome}${failing ? ` (${failing} required record${failing === 1 ? "" : "s"} not right)` : ""}.`,
    });
  });
}

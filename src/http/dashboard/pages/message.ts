/**
 * One message: each recipient's state, the explanation sentence (src/services/explain.ts) and its
 * timeline of attempts with the remote replies; the queue actions (retry, hold, release, cancel, delete:
 * the admin scope, as in the API); every header; the attachments; an HTML preview; the raw source.
 *
 * Security: the preview is the sender's HTML, served from /messages/:id/preview into an iframe
 * with `sandbox` (no allow-scripts, no allow-same-origin) and a CSP of its own that runs no
 * script and loads nothing remote (img-src data: only) unless the viewer asks with "load remote
 * images". Everything else on the page is text, escaped by html.ts.
 */
import type { FastifyInstance } from "fastify";
import PostalMime from "postal-mime";
import { readHeaderSection } from "../../../message/headers.js";
import { getMessageView, type RecipientView } from "../../../services/messages.js";
import {
  cancelMessage,
  deleteMessage,
  holdMessage,
  messageContent,
  releaseMessage,
  retryMessages,
} from "../../../services/queue.js";
import { bytes, type Html, html, time } from "../html.js";
import type { DashboardDeps } from "../index.js";
import { postButton } from "../layout.js";
import { back, can, need, type Session, sessionOf } from "../session.js";

/** Raw source shown inline up to this size (the rest through the download link). */
const RAW_INLINE = 256 * 1024;

export function previewCsp(remote: boolean): string {
  return [
    "default-src 'none'",
    // Mail HTML is styled inline; nothing can run (no script-src, sandboxed), so this is safe here.
    "style-src 'unsafe-inline'",
    `img-src data:${remote ? " https: http:" : ""}`,
    "font-src data:",
    "form-action 'none'",
    "base-uri 'none'",
    "frame-ancestors 'self'",
    "sandbox",
  ].join("; ");
}

async function parsed(content: Buffer) {
  return PostalMime.parse(content, { attachmentEncoding: "arraybuffer", maxNestingDepth: 20 });
}

function timeline(r: RecipientView, receivedAt: number): Html {
  return html`<table class="timeline"><caption class="sr">Timeline of ${r.address}</caption>
<thead><tr><th scope="col">Time (UTC)</th><th scope="col">What</th><th scope="col">Remote host</th><th scope="col">TLS</th><th scope="col">Reply</th><th scope="col">Took</th></tr></thead>
<tbody><tr><td>${time(receivedAt)}</td><td>accepted</td><td></td><td></td><td></td><td></td></tr>${r.attempts.map(
    (a) =>
      html`<tr><td>${time(a.at)}</td><td><span class="state s-${a.status}">${a.status}</span>${a.bounceClass ? html` <span class="hint">${a.bounceClass}</span>` : ""}</td><td>${a.mxHost ?? ""}${a.ip ? html` <span class="hint">[${a.ip}]${a.port ? `:${a.port}` : ""}</span>` : ""}</td><td>${a.tls ?? "–"}</td><td class="reply">${a.reply}</td><td>${a.durationMs} ms</td></tr>`,
  )}</tbody></table>`;
}

function actions(session: Session, id: string): Html {
  if (!can(session, "admin")) return html``;
  const base = `/messages/${id}`;
  return html`<section aria-labelledby="h-actions"><h2 id="h-actions">Queue actions</h2><div class="actions">
${postButton(session, `${base}/retry`, "Retry now")}
${postButton(session, `${base}/hold`, "Hold")}
${postButton(session, `${base}/release`, "Release")}
${postButton(session, `${base}/cancel`, "Cancel", {}, { confirm: "Drop every recipient not yet attempted (a scheduled send)?" })}
${postButton(session, `${base}/delete`, "Delete", {}, { confirm: "Drop every recipient not yet delivered?", danger: true })}
</div></section>`;
}

export function registerMessagePage(app: FastifyInstance, deps: DashboardDeps): void {
  const { ctx } = deps.api;

  app.get("/messages/:id", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "messages.read");
    const { id } = request.params as { id: string };
    const remote = (request.query as Record<string, unknown>).remote === "1";
    const view = await getMessageView(ctx, id, session.account);
    const content = await messageContent(ctx, view.id, session.account);
    const email = await parsed(content);
    const fields = readHeaderSection(content).fields;
    const raw = content.subarray(0, RAW_INLINE).toString("utf8");
    const previewUrl = `/messages/${view.id}/preview${remote ? "?remote=1" : ""}`;
    const body = html`
<p class="subject"><span class="label">Subject:</span> ${email.subject ?? "(no subject)"}</p>
<dl class="facts">
<div><dt>From</dt><dd>${email.from ? `${email.from.name ? `${email.from.name} ` : ""}<${email.from.address ?? ""}>` : "–"}</dd></div>
<div><dt>Envelope sender</dt><dd class="addr">${view.from}</dd></div>
<div><dt>Received</dt><dd>${time(view.receivedAt)} UTC</dd></div>
<div><dt>Expires</dt><dd>${time(view.expiresAt)} UTC</dd></div>
<div><dt>Size</dt><dd>${bytes(view.size)}</dd></div>
<div><dt>Submitted by</dt><dd>${view.apiKey ?? "–"} from ${view.clientIp}</dd></div>
<div><dt>Categories</dt><dd>${view.categories.join(", ") || "–"}</dd></div>
<div><dt>Metadata</dt><dd><code>${view.metadata ? JSON.stringify(view.metadata) : "–"}</code></dd></div>
</dl>
${actions(session, view.id)}
<section aria-labelledby="h-rcpts"><h2 id="h-rcpts">Recipients</h2>
${view.recipients.map(
  (
    r,
  ) => html`<article class="recipient"><h3><span class="addr">${r.address}</span> <span class="state s-${r.state}">${r.state}</span></h3>
<p class="explain">${r.explanation}</p>
<div class="scroll">${timeline(r, view.receivedAt)}</div></article>`,
)}
</section>
<section aria-labelledby="h-preview"><h2 id="h-preview">Preview</h2>
${
  email.html !== undefined
    ? html`<p>${remote ? html`Remote images are shown. <a href="/messages/${view.id}#h-preview">Block them again</a>` : html`Remote images are blocked. <a href="/messages/${view.id}?remote=1#h-preview">Load remote images</a>`}</p>
<iframe id="preview" class="preview" sandbox src="${previewUrl}" title="HTML preview of the message" referrerpolicy="no-referrer"></iframe>`
    : html`<pre class="text">${email.text ?? ""}</pre>`
}
${
  email.attachments.length > 0
    ? html`<h3>Attachments</h3><ul class="attachments">${email.attachments.map(
        (a) =>
          html`<li><span class="file">${a.filename ?? "(unnamed)"}</span> <span class="hint">${a.mimeType}, ${bytes(typeof a.content === "string" ? a.content.length : a.content.byteLength)}</span></li>`,
      )}</ul>`
    : ""
}
</section>
<section aria-labelledby="h-headers"><h2 id="h-headers">Headers</h2>
<div class="scroll"><table class="headers"><caption class="sr">Header fields</caption><tbody>${fields.map(
      (f) =>
        html`<tr><th scope="row">${f.name}</th><td>${Buffer.from(f.value, "latin1").toString("utf8")}</td></tr>`,
    )}</tbody></table></div></section>
<section aria-labelledby="h-raw"><h2 id="h-raw">Raw source</h2>
<p><a href="/messages/${view.id}/raw">Download the raw message</a> (${bytes(content.length)}, as stored and signed)</p>
<details><summary>Show the raw source</summary><pre class="raw">${raw}${content.length > RAW_INLINE ? "\n… (truncated)" : ""}</pre></details>
</section>`;
    return deps.render(request, reply, `Message ${view.id}`, "/messages", body);
  });

  app.get("/messages/:id/preview", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "messages.read");
    const { id } = request.params as { id: string };
    const remote = (request.query as Record<string, unknown>).remote === "1";
    const email = await parsed(await messageContent(ctx, id, session.account));
    return reply
      .header("content-security-policy", previewCsp(remote))
      .header("x-frame-options", "SAMEORIGIN")
      .type("text/html; charset=utf-8")
      .send(email.html ?? "");
  });

  app.get("/messages/:id/raw", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "messages.read");
    const { id } = request.params as { id: string };
    const content = await messageContent(ctx, id, session.account);
    return reply
      .header("content-security-policy", "default-src 'none'; sandbox")
      .header("content-disposition", `attachment; filename="${id.replace(/[^0-9A-Za-z]/g, "")}.eml"`)
      .type("message/rfc822")
      .send(content);
  });

  const ACTIONS = {
    retry: (id: string, account: string) => retryMessages(ctx, { id }, account),
    hold: (id: string, account: string) => holdMessage(ctx, id, account),
    release: (id: string, account: string) => releaseMessage(ctx, id, account),
    cancel: (id: string, account: string) => cancelMessage(ctx, id, account),
    delete: (id: string, account: string) => deleteMessage(ctx, id, account),
  } as const;
  for (const [action, run] of Object.entries(ACTIONS)) {
    app.post(`/messages/:id/${action}`, deps.signedIn, async (request, reply) => {
      const session = sessionOf(request);
      need(session, "admin");
      const { id } = request.params as { id: string };
      const result = await run(id, session.account);
      return back(reply, session, `/messages/${result.id ?? id}`, {
        kind: "ok",
        text: `${action}: ${result.recipients} recipient${result.recipients === 1 ? "" : "s"} changed.`,
      });
    });
  }
}

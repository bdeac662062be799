/**
 * The page shell every dashboard page shares: a skip link, the navigation, the flash message of
 * the last change, the sign-out form (a POST with the CSRF token), one stylesheet and one
 * deferred script from /assets (no inline script or style: the CSP forbids them).
 */
import { type Html, html } from "./html.js";
import type { Session } from "./session.js";

export const NAV = [
  ["/", "Overview"],
  ["/messages", "Messages"],
  ["/domains", "Domains"],
  ["/keys", "Keys"],
  ["/suppressions", "Suppressions"],
  ["/webhooks", "Webhooks"],
] as const;

export interface PageInput {
  readonly title: string;
  /** The NAV entry to mark current. */
  readonly active: string;
  readonly session: Session;
  readonly body: Html;
  readonly assets: { readonly css: string; readonly js: string };
}

export function csrfField(session: Session): Html {
  return html`<input type="hidden" name="_csrf" value="${session.csrf}">`;
}

/** A one-button form posting to `action` (queue actions, revoke, remove…). */
export function postButton(
  session: Session,
  action: string,
  label: string,
  fields: Record<string, string> = {},
  options: { readonly confirm?: string; readonly danger?: boolean } = {},
): Html {
  return html`<form method="post" action="${action}" class="inline"${options.confirm ? html` data-confirm="${options.confirm}"` : ""}>${csrfField(session)}${Object.entries(fields).map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}<button type="submit"${options.danger ? html` class="danger"` : ""}>${label}</button></form>`;
}

function flash(session: Session): Html {
  const f = session.flash;
  session.flash = undefined;
  if (!f) return html``;
  return html`<div class="flash ${f.kind}" role="${f.kind === "error" ? "alert" : "status"}"><p>${f.text}</p>${
    f.secret
      ? html`<p><label for="secret">Copy it now; it is not shown again:</label> <input id="secret" class="secret" readonly value="${f.secret}"> <button type="button" data-copy="${f.secret}">Copy</button></p>`
      : ""
  }</div>`;
}

export function page(input: PageInput): string {
  const { session } = input;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${input.title} · Petrel</title>
<link rel="stylesheet" href="${input.assets.css}">
<script src="${input.assets.js}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<span class="brand">Petrel</span>
<nav aria-label="Main"><ul>${NAV.map(
    ([href, label]) =>
      html`<li><a href="${href}"${href === input.active ? html` aria-current="page"` : ""}>${label}</a></li>`,
  )}</ul></nav>
<form method="post" action="/logout" class="signout">${csrfField(session)}<span class="who">${session.keyName} · ${session.account}</span> <button type="submit">Sign out</button></form>
</header>
<main id="main" tabindex="-1">
${flash(session)}
<h1>${input.title}</h1>
${input.body}
</main>
</body>
</html>`.toString();
}

/** The sign-in page and error pages seen without a session. */
export function barePage(
  title: string,
  body: Html,
  assets: { readonly css: string; readonly js: string },
): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Petrel</title>
<link rel="stylesheet" href="${assets.css}">
</head>
<body class="bare">
<main id="main">
<h1>${title}</h1>
${body}
</main>
</body>
</html>`.toString();
}

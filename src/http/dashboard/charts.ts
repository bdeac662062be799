/**
 * Charts drawn on the server as SVG (no chart library, no script): a line per series over time
 * buckets, and horizontal bars of totals. Colours come from CSS classes (c-<series>), so the
 * page needs no inline style; each chart has a text alternative (role="img" with a label) and
 * the numbers are printed beside it.
 */
import { type Html, html } from "./html.js";

export const SERIES = ["processed", "delivered", "deferred", "bounced", "dropped"] as const;
export type SeriesName = (typeof SERIES)[number];
export const SERIES_LABEL: Record<SeriesName, string> = {
  processed: "accepted",
  delivered: "delivered",
  deferred: "deferred",
  bounced: "bounced",
  dropped: "dropped",
};

export type Point = Record<SeriesName, number> & { readonly start: number };

const W = 600;
const H = 180;
const PAD = { left: 34, right: 8, top: 10, bottom: 22 };

/** A round maximum for the axis: 1, 2, 5 × 10^n at or above `n`. */
function niceMax(n: number): number {
  if (n <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

export function legend(): Html {
  return html`<ul class="legend">${SERIES.map((s) => html`<li><span class="sw c-${s}"></span>${SERIES_LABEL[s]}</li>`)}</ul>`;
}

/** One line per series over the buckets (oldest first), with hour labels every `labelEvery`. */
export function lineChart(points: readonly Point[], label: string, labelEvery = 6): Html {
  const max = niceMax(Math.max(0, ...points.flatMap((p) => SERIES.map((s) => p[s]))));
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const x = (i: number) => PAD.left + (points.length <= 1 ? iw / 2 : (i * iw) / (points.length - 1));
  const y = (v: number) => PAD.top + ih - (v / max) * ih;
  const totals = SERIES.map((s) => `${points.reduce((a, p) => a + p[s], 0)} ${SERIES_LABEL[s]}`).join(", ");
  return html`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${label}: ${totals}">
<line x1="${PAD.left}" y1="${y(0)}" x2="${W - PAD.right}" y2="${y(0)}" class="axis" stroke="#8a96a3"/>
<line x1="${PAD.left}" y1="${y(max)}" x2="${W - PAD.right}" y2="${y(max)}" stroke="#d5dbe1"/>
<text x="${PAD.left - 4}" y="${y(max) + 4}" text-anchor="end">${max}</text>
<text x="${PAD.left - 4}" y="${y(0) + 4}" text-anchor="end">0</text>
${points.map((p, i) =>
  i % labelEvery === 0
    ? html`<text x="${x(i)}" y="${H - 6}" text-anchor="middle">${new Date(p.start).toISOString().slice(11, 16)}</text>`
    : "",
)}
${SERIES.map(
  (s) =>
    html`<polyline class="line l-${s}" fill="none" stroke-width="2" points="${points.map((p, i) => `${x(i).toFixed(1)},${y(p[s]).toFixed(1)}`).join(" ")}"/>`,
)}
</svg>`;
}

/** Horizontal bars of totals, the number printed at the end of each. */
export function barChart(totals: Record<SeriesName, number>, label: string): Html {
  const max = niceMax(Math.max(0, ...SERIES.map((s) => totals[s])));
  const rowH = 26;
  const left = 80;
  const iw = W - left - 60;
  const h = SERIES.length * rowH + 8;
  return html`<svg class="chart" viewBox="0 0 ${W} ${h}" role="img" aria-label="${label}: ${SERIES.map((s) => `${totals[s]} ${SERIES_LABEL[s]}`).join(", ")}">
${SERIES.map((s, i) => {
  const w = Math.max(totals[s] > 0 ? 2 : 0, (totals[s] / max) * iw);
  const top = 4 + i * rowH;
  return html`<text x="${left - 6}" y="${top + 16}" text-anchor="end">${SERIES_LABEL[s]}</text><rect class="c-${s}" x="${left}" y="${top + 3}" width="${w.toFixed(1)}" height="${rowH - 8}" rx="2"/><text x="${left + w + 6}" y="${top + 16}">${totals[s]}</text>`;
})}
</svg>`;
}

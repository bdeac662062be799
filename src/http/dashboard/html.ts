/**
 * HTML for the dashboard, rendered on the server. Every interpolated value goes through one
 * function, escapeHtml(), unless it is itself an Html fragment built by the `html` tag; there is
 * no other way to make an Html value, so sender-written text (subjects, names, addresses,
 * replies, attachment names) can only reach a page escaped.
 * Security: escapes & < > " ' — enough for element content and for quoted attribute values, the
 * only two places templates interpolate (never inside <script>, style or unquoted attributes).
 */

const BRAND: unique symbol = Symbol("html");

/** A fragment of markup that is safe to concatenate (built by the `html` tag only). */
export class Html {
  readonly [BRAND] = true;
  private constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
  /** @internal for the tag below. */
  static of(value: string): Html {
    return new Html(value);
  }
}

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** The one escaping function: text → markup that shows exactly that text. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** Nested fragments and arrays are kept; null, undefined and false are empty; everything else escaped. */
function render(value: unknown): string {
  if (value instanceof Html) return value.value;
  if (value === null || value === undefined || value === false) return "";
  if (Array.isArray(value)) return value.map(render).join("");
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0] ?? "";
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? "");
  return Html.of(out);
}

/** "2026-12-02 14:05:09" (UTC), for tables. */
export function time(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "–";
  return new Date(ms).toISOString().slice(0, 19).replace("T", " ");
}

/** 1536 → "1.5 KB". */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

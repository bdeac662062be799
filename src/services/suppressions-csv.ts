/**
 * Suppression lists as CSV (RFC 4180): a header line `address,reason,created_at,event_id,
 * message_id,detail`, one address per line, fields with a comma, quote or line break quoted.
 * Reading needs only the address column (a file without a header is a list of addresses);
 * missing reasons become `import`.
 * Security: the text is untrusted input; the parser is one linear pass and every address is
 * validated before anything is written.
 */
import { PetrelError } from "../errors.js";
import type { NewSuppression, Suppression } from "../store/types.js";
import { validAddress } from "./validate.js";

const COLUMNS = ["address", "reason", "created_at", "event_id", "message_id", "detail"] as const;

export function toCsv(list: readonly Suppression[]): string {
  const rows = list.map((s) => [
    s.address,
    s.reason,
    new Date(s.createdAt).toISOString(),
    s.eventId ?? "",
    s.messageId ?? "",
    s.detail ?? "",
  ]);
  return [COLUMNS as readonly string[], ...rows].map((r) => `${r.map(csvField).join(",")}\r\n`).join("");
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Parses RFC 4180 CSV into rows of fields (quoted fields may hold commas, quotes and line breaks). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0]!.trim() === ""));
}

/** CSV text → suppressions for `accountId`; throws an invalid-input PetrelError naming the first bad line. */
export function fromCsv(text: string, accountId: number): NewSuppression[] {
  const rows = parseCsv(text.replace(/^\uFEFF/, ""));
  const header = rows[0]?.map((h) => h.trim().toLowerCase()) ?? [];
  const hasHeader = header.includes("address");
  const col = (name: (typeof COLUMNS)[number]) =>
    hasHeader ? header.indexOf(name) : name === "address" ? 0 : -1;
  const entries: NewSuppression[] = [];
  const start = hasHeader ? 1 : 0;
  for (let i = start; i < rows.length; i++) {
    const row = rows[i]!;
    const cell = (name: (typeof COLUMNS)[number]) => {
      const c = col(name);
      return c >= 0 ? (row[c] ?? "").trim() : "";
    };
    let address: string;
    try {
      address = validAddress(cell("address"));
    } catch {
      throw new PetrelError(
        "invalid-input",
        `line ${i + 1}: not a valid address: ${JSON.stringify(cell("address").slice(0, 80))}`,
      );
    }
    const created = cell("created_at") ? Date.parse(cell("created_at")) : Number.NaN;
    entries.push({
      accountId,
      address,
      reason: cell("reason") || "import",
      detail: cell("detail") || null,
      ...(Number.isNaN(created) ? {} : { createdAt: created }),
    });
  }
  return entries;
}

/**
 * Output helpers shared by the commands: aligned tables for people, JSON for scripts.
 * Columns are aligned by display width (string-width: East Asian wide characters take two
 * columns, combining marks none), not by UTF-16 code units, so "用户@例子.测试" lines up.
 * Security: text from senders (Subject, From…) goes through printable() so control characters
 * and terminal escape sequences in it cannot act on the operator's terminal.
 */
import stringWidth from "string-width";

function padEnd(cell: string, width: number): string {
  return cell + " ".repeat(Math.max(0, width - stringWidth(cell)));
}

/**
 * The lines of an aligned table (headers first). Widths are found with loops, never
 * Math.max(...spread): that throws a RangeError past about 100k rows (`queue list` of a big queue).
 */
export function tableLines(
  headers: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | number>>,
): string[] {
  const cells: string[][] = [headers.slice()];
  for (const r of rows) cells.push(r.map((c) => printable(String(c))));
  const widths = headers.map(() => 0);
  for (const row of cells) {
    for (let i = 0; i < widths.length; i++) widths[i] = Math.max(widths[i]!, stringWidth(row[i] ?? ""));
  }
  return cells.map((row) =>
    row.map((cell, i) => (i === row.length - 1 ? cell : padEnd(cell, widths[i]!))).join("  "),
  );
}

export function printTable(
  headers: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | number>>,
): void {
  const lines = tableLines(headers, rows);
  // A thousand lines per write: one write per line costs a syscall each on a pipe.
  for (let i = 0; i < lines.length; i += 1000) {
    process.stdout.write(`${lines.slice(i, i + 1000).join("\n")}\n`);
  }
}

/** "Label:  value" lines with the values aligned; a null value prints as "-". */
export function printFields(fields: ReadonlyArray<readonly [string, string | number | null]>): void {
  let width = 0;
  for (const [label] of fields) width = Math.max(width, stringWidth(label));
  width += 2;
  for (const [label, value] of fields) {
    process.stdout.write(`${padEnd(`${label}:`, width)}${value === null ? "-" : printable(String(value))}\n`);
  }
}

/** C0/C1 control characters (ESC, CR, BEL…) and DEL replaced by U+FFFD; tabs become spaces. */
export function printable(text: string): string {
  return text.replace(/\t/g, " ").replace(/[\u0000-\u001f\u007f-\u009f]/g, "\ufffd");
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function isoTime(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? "-" : new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** "3s", "5m", "2h", "4d": a queue age at a glance. */
export function age(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

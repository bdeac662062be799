/**
 * DKIM "relaxed" canonicalization (RFC 6376 §3.4.2 headers, §3.4.4 body) and the header-field
 * split it works on. Separate from signing so it can be tested on its own bytes.
 *
 * Invariants: bytes are handled as latin1 strings (one char per byte), so 8-bit header and body
 * content (raw UTF-8, RFC 6532) hashes exactly as sent; only ASCII A-Z is lower-cased in field
 * names. The body is hashed in ~1 MiB slices that end on a CRLF, yielding to the event loop
 * between slices, so a large attachment never blocks other connections for long.
 * Security: the message is untrusted input. Malformed lines (no colon, leading continuation)
 * are kept in the message and never selected for signing; no regex here can backtrack
 * super-linearly (each matches runs of one character class, and none is anchored at the end).
 */

import { createHash } from "node:crypto";

const CRLF = "\r\n";
const SLICE_BYTES = 1024 * 1024;

export interface HeaderField {
  /** Field name as written, without surrounding whitespace. */
  readonly name: string;
  /** Lower-cased (ASCII) name, for matching. */
  readonly key: string;
  /** The whole field as latin1 text, folded lines included, without the final CRLF. */
  readonly raw: string;
}

export interface SplitMessage {
  readonly headers: readonly HeaderField[];
  /** Bytes of the body (after the blank line); empty when the message has none. */
  readonly body: Buffer;
  /** False for a message that is header fields only, without the blank line. */
  readonly hasBodySeparator: boolean;
}

function asciiLower(text: string): string {
  return text.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/**
 * Rewrites bare LF line ends to CRLF. SMTP (RFC 5321 §2.3.8) carries only CRLF lines, so this is
 * the form receivers will see and hash; bare CR is left alone (it is data, not a line end).
 */
export function normalizeLineEnds(content: Buffer): Buffer {
  let bare = content.indexOf(0x0a);
  while (bare !== -1 && bare > 0 && content[bare - 1] === 0x0d) bare = content.indexOf(0x0a, bare + 1);
  if (bare === -1) return content;
  return Buffer.from(content.toString("latin1").replace(/(?<!\r)\n/g, CRLF), "latin1");
}

/** Offset of the blank line ending the header section, or -1 if there is none. */
function headerEnd(content: Buffer): number {
  if (content[0] === 0x0d && content[1] === 0x0a) return 0;
  const sep = content.indexOf("\r\n\r\n", 0, "latin1");
  return sep === -1 ? -1 : sep + 2;
}

/** Splits a CRLF message into header fields and body (RFC 5322 §2.1, §2.2.3 folding). */
export function splitMessage(content: Buffer): SplitMessage {
  const end = headerEnd(content);
  const headerText = (end === -1 ? content : content.subarray(0, end)).toString("latin1");
  const body = end === -1 ? Buffer.alloc(0) : content.subarray(end + 2);
  const headers: HeaderField[] = [];
  // A field continues while the next line starts with WSP (folding).
  const lines = headerText.split(CRLF);
  if (lines.at(-1) === "") lines.pop();
  let current: string | undefined;
  const flush = () => {
    if (current === undefined) return;
    const colon = current.indexOf(":");
    const name = colon > 0 ? trimTrailingBlanks(current.slice(0, colon)) : "";
    if (name !== "" && !/[\s:]/.test(name)) headers.push({ name, key: asciiLower(name), raw: current });
    current = undefined;
  };
  for (const line of lines) {
    if ((line.startsWith(" ") || line.startsWith("\t")) && current !== undefined) {
      current += CRLF + line;
    } else {
      flush();
      current = line;
    }
  }
  flush();
  return { headers, body, hasBodySeparator: end !== -1 };
}

// The two trims below are loops, not /[ \t]+$/ and /(?:\r\n)+$/: those retry from every
// position of a run that is not at the end (80,000 empty lines before a text line: 7.6 s).
function trimTrailingBlanks(text: string): string {
  let end = text.length;
  while (end > 0 && (text.charCodeAt(end - 1) === 32 || text.charCodeAt(end - 1) === 9)) end--;
  return text.slice(0, end);
}

function withoutTrailingCrlfs(text: string): string {
  let end = text.length;
  while (end >= 2 && text.charCodeAt(end - 1) === 10 && text.charCodeAt(end - 2) === 13) end -= 2;
  return text.slice(0, end);
}

/** One header field in relaxed form, with its CRLF (RFC 6376 §3.4.2). */
export function relaxedHeader(field: HeaderField): string {
  const raw = field.raw;
  const colon = raw.indexOf(":");
  const value = raw
    .slice(colon + 1)
    .replace(/\r\n/g, "")
    .replace(/[ \t]+/g, " ")
    .replace(/^ /, "")
    .replace(/ $/, "");
  return `${field.key}:${value}${CRLF}`;
}

/**
 * The relaxed form of the DKIM-Signature field being built, which is hashed last and without
 * its CRLF (RFC 6376 §3.7). `unsignedField` ends with "b=" (empty signature).
 */
export function relaxedSignatureField(unsignedField: string): string {
  return relaxedHeader(splitMessage(Buffer.from(`${unsignedField}\r\n`, "latin1")).headers[0]!).slice(0, -2);
}

/** Relaxed canonical form of a run of complete CRLF-terminated lines. */
function relaxedLines(text: string): string {
  return text.replace(/[ \t]+/g, " ").replace(/ \r\n/g, CRLF);
}

/**
 * SHA-256 of the relaxed body, base64 (the bh= tag). Empty lines at the end are dropped, a
 * missing final CRLF is added, and an empty body hashes as the empty string.
 */
export async function relaxedBodyHash(body: Buffer): Promise<string> {
  const hash = createHash("sha256");
  let pendingEmptyLines = 0;
  let wroteContent = false;
  let start = 0;
  while (start < body.length) {
    let end = Math.min(start + SLICE_BYTES, body.length);
    if (end < body.length) {
      const lineEnd = body.indexOf("\r\n", end, "latin1");
      end = lineEnd === -1 ? body.length : lineEnd + 2;
    }
    let text = body.subarray(start, end).toString("latin1");
    if (end === body.length && !text.endsWith(CRLF)) text += CRLF;
    const canonical = relaxedLines(text);
    // Trailing empty lines may end the body, so hold them back until content follows them.
    const trimmed = withoutTrailingCrlfs(canonical);
    const trailing = (canonical.length - trimmed.length) / 2;
    if (trimmed.length > 0) {
      if (pendingEmptyLines > 0) hash.update(CRLF.repeat(pendingEmptyLines), "latin1");
      hash.update(trimmed, "latin1");
      wroteContent = true;
      pendingEmptyLines = trailing;
    } else {
      pendingEmptyLines += trailing;
    }
    start = end;
    if (start < body.length) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  // The last content line keeps its own CRLF; the empty lines after it are dropped.
  if (wroteContent) hash.update(CRLF, "latin1");
  return hash.digest("base64");
}

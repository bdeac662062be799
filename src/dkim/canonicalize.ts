/**
 * DKIM "relaxed" canonicalization (RFC 6376 §3.4.2 headers, §3.4.4 body) and the header-field
 * split it works on. Separate from signing so it can be tested on its own bytes.
 *
 * Invariants: bytes are handled as latin1 strings (one char per byte), so 8-bit header and body
 * content (raw UTF-8, RFC 6532) hashes exactly as sent; only ASCII A-Z is lower-cased in field
 * names. The body is hashed as bytes, in ~1 MiB slices that end on a CRLF, yielding to the event
 * loop between slices, so a large attachment never blocks other connections for long.
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

// The trim below is a loop, not /[ \t]+$/: that retries from every
// position of a run that is not at the end (80,000 empty lines before a text line: 7.6 s).
function trimTrailingBlanks(text: string): string {
  let end = text.length;
  while (end > 0 && (text.charCodeAt(end - 1) === 32 || text.charCodeAt(end - 1) === 9)) end--;
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

const SP = 0x20;
const TAB = 0x09;
const CR_BYTE = 0x0d;
const LF_BYTE = 0x0a;
const CRLF_BYTES = Buffer.from(CRLF);

/**
 * End of the last line with content after relaxed canonicalization: trailing whitespace and
 * CRLFs are dropped together (a line of only blanks is empty once its blanks go, §3.4.4 a, b).
 */
function contentEnd(body: Buffer): number {
  let i = body.length;
  while (i > 0) {
    const b = body[i - 1];
    if (b === SP || b === TAB) i--;
    else if (b === LF_BYTE && i >= 2 && body[i - 2] === CR_BYTE) i -= 2;
    else break;
  }
  return i;
}

/**
 * SHA-256 of the relaxed body, base64 (the bh= tag). Empty lines at the end are dropped, a
 * missing final CRLF is added, and an empty body hashes as the empty string. The body's bytes are
 * hashed where they lie when a slice has nothing relaxed form changes (no tab, two blanks or blank
 * before a CRLF), so a base64 attachment is hashed without a copy (every slice was turned into a
 * 1 MiB latin1 string and back, issue 12's memory goal); only a slice with such blanks is.
 */
export async function relaxedBodyHash(body: Buffer): Promise<string> {
  const hash = createHash("sha256");
  const last = contentEnd(body);
  // Cached search results (-2: not searched yet, -1: none left); each moves only forward.
  let nextTab = -2;
  let nextTwo = -2;
  let nextBeforeCrlf = -2;
  let pos = 0;
  while (pos < last) {
    // A slice ends after a CRLF, so no run of blanks spans two slices.
    let sliceEnd = Math.min(pos + SLICE_BYTES, last);
    if (sliceEnd < last) {
      const lineEnd = body.indexOf(CRLF_BYTES, sliceEnd);
      sliceEnd = lineEnd === -1 || lineEnd + 2 > last ? last : lineEnd + 2;
    }
    if (nextTab !== -1 && nextTab < pos) nextTab = body.indexOf(TAB, pos);
    if (nextTwo !== -1 && nextTwo < pos) nextTwo = body.indexOf("  ", pos, "latin1");
    if (nextBeforeCrlf !== -1 && nextBeforeCrlf < pos) nextBeforeCrlf = body.indexOf(" \r\n", pos, "latin1");
    const changes = [nextTab, nextTwo, nextBeforeCrlf].some((c) => c !== -1 && c < sliceEnd);
    if (!changes) hash.update(body.subarray(pos, sliceEnd));
    else {
      // Text with blanks to change: one string for the slice, rewritten by two linear regexes
      // (cheaper than a hash update per change when they are dense).
      const text = body.subarray(pos, sliceEnd).toString("latin1");
      hash.update(text.replace(/[ \t]+/g, " ").replace(/ \r\n/g, CRLF), "latin1");
    }
    pos = sliceEnd;
    if (pos < last) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  // The last content line keeps its own CRLF; the empty lines after it are dropped.
  if (last > 0) hash.update(CRLF_BYTES);
  return hash.digest("base64");
}

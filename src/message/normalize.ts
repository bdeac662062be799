/**
 * Content normalisation, once, at accept time and before DKIM signing (issue 11): what real
 * applications send is made deliverable instead of refused.
 *  - A MIME part with a line over the limit (RFC 5322 §2.1.1: 998 octets) is re-encoded:
 *    quoted-printable for text (base64 when most of it is not ASCII), base64 otherwise
 *    (RFC 2045 §6). A part already in quoted-printable or base64 is only re-wrapped. The decoded
 *    content is unchanged — unlike Postfix's blind line split, which can break HTML.
 *  - A header line over the limit is folded at whitespace (RFC 5322 §2.2.3); a line with no
 *    whitespace to fold at cannot be fixed and is refused (550 5.6.0).
 *  - With an ASCII envelope, raw UTF-8 in the top-level header fields (RFC 6532) becomes RFC 2047
 *    encoded words, so the message does not need SMTPUTF8 at the next hop.
 *
 * Invariants: a message that needs none of this is returned as the same Buffer, byte for byte
 * (nothing re-serialised; a client's DKIM signature survives). When something changes, every
 * untouched region is copied verbatim; only the changed fields and bodies are rewritten.
 * Multipart boundaries are found per level with Buffer.indexOf and nesting is capped at
 * MAX_DEPTH, so the work is linear in the message size (bounded by smtp.limits.maxMessageSize).
 * Input uses CRLF line endings only (the SMTP DATA reader guarantees it).
 * Security: the content is untrusted; nothing here throws on malformed MIME — a structure it
 * cannot read is left as it is unless it has a long line, which is then refused.
 */
import { isAscii } from "node:buffer";
import * as base64 from "nodemailer/lib/base64";
import { parseHeaderValue } from "nodemailer/lib/mime-funcs";
import * as qp from "nodemailer/lib/qp";
import { encodeFieldValue, foldField } from "./header-fields.js";

export interface NormalizeOptions {
  /** Longest line allowed in octets without CRLF (RFC 5322 §2.1.1: 998); 0 = no limit. */
  readonly maxLineLength: number;
  /** The envelope is all ASCII: raw UTF-8 in header fields becomes RFC 2047 encoded words. */
  readonly encodeHeaders: boolean;
}

export type NormalizeResult =
  | {
      readonly ok: true;
      readonly content: Buffer;
      /** What was changed, for the log ("re-encoded text/html as quoted-printable"…); empty = nothing. */
      readonly changes: readonly string[];
    }
  | { readonly ok: false; readonly reason: string };

/** MIME nesting deeper than this is not descended into (mailparser and Gmail cap it too). */
const MAX_DEPTH = 20;
const CRLF = Buffer.from("\r\n");
const HEADER_END = Buffer.from("\r\n\r\n");

class Unfixable extends Error {}

/** message/* types that must stay 7bit/8bit/binary (RFC 2046 §5.2, RFC 6532 §3.5). */
const UNENCODABLE_MESSAGE = new Set([
  "message/rfc822",
  "message/global",
  "message/partial",
  "message/external-body",
]);

export function normalizeMessage(content: Buffer, options: NormalizeOptions): NormalizeResult {
  const limit = options.maxLineLength;
  const headerEnd = content.indexOf(HEADER_END);
  const topHeader = content.subarray(0, headerEnd < 0 ? content.length : headerEnd);
  const encode = options.encodeHeaders && hasHighByte(topHeader);
  const long = limit > 0 && hasLongLine(content, 0, content.length, limit);
  if (!encode && !long) return { ok: true, content, changes: [] };
  const changes: string[] = [];
  const out: Buffer[] = [];
  try {
    entity({ buf: content, limit, changes, out, encodeHeaders: encode }, 0, content.length, 0, "text/plain");
  } catch (err) {
    if (err instanceof Unfixable) return { ok: false, reason: err.message };
    throw err;
  }
  return { ok: true, content: changes.length === 0 ? content : Buffer.concat(out), changes };
}

interface Context {
  readonly buf: Buffer;
  readonly limit: number;
  readonly changes: string[];
  readonly out: Buffer[];
  /** Encode UTF-8 header fields of the top-level entity. */
  readonly encodeHeaders: boolean;
}

interface Field {
  /** Offsets of the field's lines in the buffer, its final CRLF included. */
  readonly start: number;
  readonly end: number;
  readonly name: string;
  /** Unfolded value, latin1 (one char per octet). */
  readonly value: string;
}

function hasHighByte(buf: Buffer): boolean {
  return !isAscii(buf); // node's SIMD check: this runs on every accepted message's header
}

/**
 * True when some line in [start, end) is longer than `limit` octets (CRLF excluded). Each step
 * jumps to the last LF within limit + 2 bytes, so a message of short lines costs about
 * size / limit lookups rather than one per line (this runs on every accepted message).
 */
function hasLongLine(buf: Buffer, start: number, end: number, limit: number): boolean {
  let pos = start; // the start of a line
  while (end - pos > limit) {
    // The line starting at pos is within the limit if its LF is at pos + limit + 1 at the latest
    // (content, then CR, then LF); LFs before that end shorter lines.
    const lf = buf.lastIndexOf(10, pos + limit + 1);
    if (lf < pos) return true;
    pos = lf + 1;
  }
  return false;
}

/**
 * One MIME entity in [start, end): its header section, then its body. Appends the entity's
 * output to ctx.out. `defaultType` is text/plain, or message/rfc822 inside multipart/digest.
 */
function entity(ctx: Context, start: number, end: number, depth: number, defaultType: string): void {
  const { buf } = ctx;
  const before = ctx.changes.length;
  const outStart = ctx.out.length;
  // The header section ends at the first empty line; an entity may have none (starts with CRLF).
  let bodyStart: number;
  let headerEnd: number;
  if (buf[start] === 13 && buf[start + 1] === 10) {
    headerEnd = start;
    bodyStart = start + 2;
  } else {
    const blank = buf.indexOf(HEADER_END, start);
    if (blank < 0 || blank + 4 > end) {
      headerEnd = end;
      bodyStart = end;
    } else {
      headerEnd = blank + 2;
      bodyStart = blank + 4;
    }
  }
  const fields = readFields(buf, start, headerEnd);
  const get = (name: string) => fields.find((f) => f.name.toLowerCase() === name)?.value;
  const type = parseHeaderValue(latin1ToText(get("content-type") ?? defaultType));
  const mediaType = (type.value || defaultType).toLowerCase();
  const cte = (get("content-transfer-encoding") ?? "7bit").trim().toLowerCase();

  // Body first: whether it was re-encoded decides the Content-Transfer-Encoding field.
  const body: Buffer[] = [];
  let newEncoding: string | undefined;
  const boundary = type.params.boundary;
  if (mediaType.startsWith("multipart/") && boundary && depth < MAX_DEPTH && isIdentity(cte)) {
    const inner = mediaType === "multipart/digest" ? "message/rfc822" : "text/plain";
    multipart(ctx, body, bodyStart, end, boundary, depth, inner);
  } else if (
    (mediaType === "message/rfc822" || mediaType === "message/global") &&
    depth < MAX_DEPTH &&
    isIdentity(cte)
  ) {
    // RFC 2046 §5.2.1: an encapsulated message is never encoded; its own parts are fixed instead.
    const saved = ctx.out.length;
    entity({ ...ctx, encodeHeaders: false }, bodyStart, end, depth + 1, "text/plain");
    pushAll(body, ctx.out.splice(saved));
  } else if (ctx.limit > 0 && hasLongLine(buf, bodyStart, end, ctx.limit)) {
    newEncoding = reencodeLeaf(ctx, body, bodyStart, end, mediaType, cte);
  } else if (bodyStart < end) {
    body.push(buf.subarray(bodyStart, end));
  }

  // Header fields: fold long lines, encode UTF-8 (top level), replace the transfer encoding.
  const header: Buffer[] = [];
  for (const field of fields) {
    const lower = field.name.toLowerCase();
    if (newEncoding !== undefined && lower === "content-transfer-encoding") continue;
    const crlf = buf[field.end - 1] === 10;
    let text = buf.toString("latin1", field.start, crlf ? field.end - 2 : field.end);
    let changed = false;
    if (ctx.encodeHeaders && depth === 0 && hasHighByte(buf.subarray(field.start, field.end))) {
      const encoded = encodeFieldValue(field.name, field.value);
      if (encoded !== null) {
        text = encoded;
        changed = true;
        ctx.changes.push(`encoded ${field.name} as RFC 2047 words`);
      }
    }
    if (changed || (ctx.limit > 0 && longestLine(text) > ctx.limit)) {
      const folded = foldField(text, ctx.limit > 0 ? ctx.limit : 998);
      if (folded === null) {
        throw new Unfixable(`header field ${field.name.slice(0, 64)} has a line that cannot be folded`);
      }
      if (!changed) ctx.changes.push(`folded ${field.name.slice(0, 64)}`);
      header.push(Buffer.from(`${folded}\r\n`, "latin1"));
    } else {
      header.push(buf.subarray(field.start, field.end));
    }
  }
  if (newEncoding !== undefined) {
    if (depth === 0 && get("mime-version") === undefined) header.push(Buffer.from("MIME-Version: 1.0\r\n"));
    header.push(Buffer.from(`Content-Transfer-Encoding: ${newEncoding}\r\n`));
  }
  if (ctx.changes.length === before) {
    // Nothing changed in this entity: its bytes go out as they came.
    ctx.out.length = outStart;
    ctx.out.push(buf.subarray(start, end));
    return;
  }
  pushAll(ctx.out, header);
  if (bodyStart > headerEnd) ctx.out.push(CRLF);
  pushAll(ctx.out, body);
}

/** target.push(...items) without the spread: a message of many parts must not overflow the stack. */
function pushAll(target: Buffer[], items: readonly Buffer[]): void {
  for (const item of items) target.push(item);
}

function isIdentity(cte: string): boolean {
  return cte === "7bit" || cte === "8bit" || cte === "binary";
}

function longestLine(text: string): number {
  let max = 0;
  let pos = 0;
  for (;;) {
    const eol = text.indexOf("\r\n", pos);
    const len = (eol < 0 ? text.length : eol) - pos;
    if (len > max) max = len;
    if (eol < 0) return max;
    pos = eol + 2;
  }
}

function latin1ToText(value: string): string {
  return Buffer.from(value, "latin1").toString("utf8");
}

/** Header fields in [start, headerEnd), each with its continuation lines. */
function readFields(buf: Buffer, start: number, headerEnd: number): Field[] {
  const fields: Field[] = [];
  let pos = start;
  let current: { start: number; end: number; name: string; value: string } | undefined;
  while (pos < headerEnd) {
    // The last line of an entity that is all header may end without CRLF (it belongs to the
    // delimiter that follows); its field then ends at headerEnd.
    let eol = buf.indexOf(CRLF, pos);
    let next: number;
    if (eol < 0 || eol >= headerEnd) next = eol = headerEnd;
    else next = eol + 2;
    const first = buf[pos];
    if ((first === 32 || first === 9) && current) {
      current.value += buf.toString("latin1", pos, eol);
      current.end = next;
    } else {
      if (current) fields.push(current);
      const line = buf.toString("latin1", pos, eol);
      const colon = line.indexOf(":");
      current = {
        start: pos,
        end: next,
        name: colon > 0 ? line.slice(0, colon).trim() : "",
        value: colon > 0 ? line.slice(colon + 1).replace(/^[ \t]+/, "") : "",
      };
    }
    pos = next;
  }
  if (current) fields.push(current);
  return fields;
}

/**
 * The body of a multipart entity: preamble, then each part between delimiter lines
 * (RFC 2046 §5.1.1: the CRLF before "--boundary" belongs to the delimiter), then the epilogue.
 */
function multipart(
  ctx: Context,
  body: Buffer[],
  bodyStart: number,
  end: number,
  boundary: string,
  depth: number,
  inner: string,
): void {
  const { buf } = ctx;
  const needle = Buffer.from(`\r\n--${boundary}`, "latin1");
  // The blank line that ends the header section supplies the CRLF before a first delimiter.
  let search = bodyStart - 2;
  let partStart = -1; // start of the current part's content, -1 = still in the preamble
  let cursor = bodyStart; // output copied up to here
  for (;;) {
    const at = buf.indexOf(needle, search);
    if (at < 0 || at + needle.length > end) break;
    // The delimiter line: "--boundary" [ "--" ] transport-padding CRLF.
    let i = at + needle.length;
    const close = buf[i] === 45 && buf[i + 1] === 45;
    if (close) i += 2;
    while (i < end && (buf[i] === 32 || buf[i] === 9)) i++;
    const lineEnd = i >= end ? end : buf[i] === 13 && buf[i + 1] === 10 ? i + 2 : -1;
    if (lineEnd < 0) {
      search = at + 1; // "--boundaryX…": a longer string, not this delimiter
      continue;
    }
    const contentEnd = Math.max(at, bodyStart);
    if (partStart < 0) pushLoose(ctx, body, cursor, contentEnd, "preamble");
    else entityInto(ctx, body, partStart, contentEnd, depth + 1, inner);
    body.push(buf.subarray(contentEnd, lineEnd));
    cursor = lineEnd;
    if (close) {
      pushLoose(ctx, body, lineEnd, end, "epilogue");
      return;
    }
    partStart = lineEnd;
    search = lineEnd;
  }
  // No closing delimiter: the last part runs to the end (what mail readers do).
  if (partStart < 0) pushLoose(ctx, body, cursor, end, "preamble");
  else entityInto(ctx, body, partStart, end, depth + 1, inner);
}

function entityInto(ctx: Context, body: Buffer[], start: number, end: number, depth: number, type: string) {
  const saved = ctx.out.length;
  entity({ ...ctx, encodeHeaders: false }, start, end, depth, type);
  pushAll(body, ctx.out.splice(saved));
}

/**
 * Preamble and epilogue text is to be ignored by readers (RFC 2046 §5.1.1); a long line there is
 * broken into lines of the limit, which changes nothing anyone reads.
 */
function pushLoose(ctx: Context, body: Buffer[], start: number, end: number, what: string): void {
  if (start >= end) return;
  if (ctx.limit === 0 || !hasLongLine(ctx.buf, start, end, ctx.limit)) {
    body.push(ctx.buf.subarray(start, end));
    return;
  }
  ctx.changes.push(`wrapped the multipart ${what}`);
  let pos = start;
  while (pos < end) {
    let eol = ctx.buf.indexOf(CRLF, pos);
    if (eol < 0 || eol > end) eol = end;
    for (let i = pos; i < eol; i += ctx.limit) {
      body.push(ctx.buf.subarray(i, Math.min(i + ctx.limit, eol)));
      if (i + ctx.limit < eol) body.push(CRLF);
    }
    if (eol < end) body.push(CRLF);
    pos = eol + 2;
  }
}

/**
 * Re-encodes a single-part body with a long line; returns the new Content-Transfer-Encoding.
 * The decoded bytes are the same: identity encodings are encoded from the raw bytes, and
 * quoted-printable or base64 text is only re-wrapped (soft line breaks, whitespace), never decoded.
 */
function reencodeLeaf(
  ctx: Context,
  body: Buffer[],
  start: number,
  end: number,
  mediaType: string,
  cte: string,
): string {
  if (isIdentity(cte) && (mediaType.startsWith("multipart/") || UNENCODABLE_MESSAGE.has(mediaType))) {
    // RFC 2045 §6.4, RFC 2046 §5.2.1: these may not be encoded, and this one could not be read.
    throw new Unfixable(`a ${mediaType.slice(0, 64)} body that cannot be read has a line that is too long`);
  }
  const raw = ctx.buf.subarray(start, end);
  let encoded: string;
  let encoding: string;
  if (cte === "quoted-printable") {
    encoded = qp.wrap(raw.toString("latin1"), 76);
    encoding = cte;
  } else if (cte === "base64") {
    encoded = base64.wrap(raw.toString("latin1").replace(/[\r\n\t ]+/g, ""), 76);
    encoding = cte;
  } else if (isIdentity(cte)) {
    // Text stays readable in quoted-printable unless most of it would be escaped (nodemailer's rule).
    const text = mediaType.startsWith("text/") && highByteShare(raw) < 0.5;
    encoding = text ? "quoted-printable" : "base64";
    encoded = text ? qp.wrap(qp.encode(raw), 76) : base64.wrap(base64.encode(raw), 76);
  } else {
    // x-uuencode and the like: we cannot know what the bytes decode to.
    throw new Unfixable(
      `a ${mediaType.slice(0, 64)} part in ${cte.slice(0, 32)} has a line that is too long`,
    );
  }
  // A body that ended its last line keeps doing so; base64 output carries no final CRLF.
  if (
    raw.length >= 2 &&
    raw[raw.length - 2] === 13 &&
    raw[raw.length - 1] === 10 &&
    !encoded.endsWith("\r\n")
  ) {
    encoded += "\r\n";
  }
  body.push(Buffer.from(encoded, "latin1"));
  ctx.changes.push(`re-encoded ${mediaType.slice(0, 64)} as ${encoding}`);
  return encoding;
}

function highByteShare(buf: Buffer): number {
  if (buf.length === 0) return 0;
  let high = 0;
  for (let i = 0; i < buf.length; i++) if (buf[i]! > 0x7f) high++;
  return high / buf.length;
}

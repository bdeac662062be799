/**
 * Reads and completes the header section of a submitted message: finds the From and Sender
 * addresses for sender verification, and adds what a relay must add before the commit — a
 * Received trace field (RFC 5321 §4.4) and Message-ID/Date where the client left them out
 * (RFC 6409 §8.2, §8.3). The body is never touched, so a client's DKIM signature would survive.
 *
 * Security: the content is untrusted client input. Parsing is bounded to the header section,
 * never throws on malformed fields, and only reads addresses through nodemailer's addressparser.
 * Submission reads it through readLimitedHeaderSection(): bytes, fields and addresses per field
 * are capped before the costly steps, and every pass is linear in the section.
 */
import addressparser from "nodemailer/lib/addressparser";
import { setBounded } from "../bounded-map.js";
import type { HeaderSenders } from "../policy/sender.js";
import { prepend } from "./headroom.js";

const CRLF = Buffer.from("\r\n");
const HEADER_END = Buffer.from("\r\n\r\n");

export interface HeaderSection {
  /** Unfolded fields in order: name as written, value without the leading space. */
  readonly fields: ReadonlyArray<{ readonly name: string; readonly value: string }>;
  /** Byte offset where the header section ends (the empty line's CRLF is at this offset). */
  readonly end: number;
}

/** Limits on a submitted header section (smtp.limits in the configuration). */
export interface HeaderLimits {
  /** Bytes of the header section, its final CRLF included. */
  readonly maxHeaderBytes: number;
  readonly maxHeaderFields: number;
  /** Addresses in one From or Sender field. */
  readonly maxAddressesPerField: number;
}

/** Why a header section can never be accepted: a permanent refusal, never a retry. */
export interface HeaderRefusal {
  readonly smtpCode: 550 | 552;
  readonly enhancedCode: string;
  /** For the client: generic, never quoting the input. */
  readonly message: string;
  /** For the log. */
  readonly reason: string;
}

/** Parses the header section (content must already use CRLF line endings). */
export function readHeaderSection(content: Buffer): HeaderSection {
  return parseSection(
    content,
    headerEndOf(content, content.length),
    Number.POSITIVE_INFINITY,
  ) as HeaderSection;
}

/**
 * readHeaderSection() within `limits`: the size is known before anything is decoded, and field
 * parsing stops at the first field over the count, so an oversized section costs one bounded
 * scan. RFC 5322 §2.1.1 bounds lines, not sections; these bounds are ours (Exim's header_maxsize).
 */
export function readLimitedHeaderSection(
  content: Buffer,
  limits: HeaderLimits,
): { ok: true; section: HeaderSection } | { ok: false; refusal: HeaderRefusal } {
  const end = headerEndOf(content, limits.maxHeaderBytes);
  if (end > limits.maxHeaderBytes) {
    return refuse(
      552,
      "5.3.4",
      "Message header section too large",
      `header section over ${limits.maxHeaderBytes} bytes`,
    );
  }
  const section = parseSection(content, end, limits.maxHeaderFields);
  if (section === null) {
    return refuse(
      552,
      "5.3.4",
      "Too many header fields",
      `more than ${limits.maxHeaderFields} header fields`,
    );
  }
  return { ok: true, section };
}

function refuse(
  smtpCode: 550 | 552,
  enhancedCode: string,
  message: string,
  reason: string,
): { ok: false; refusal: HeaderRefusal } {
  return { ok: false, refusal: { smtpCode, enhancedCode, message, reason } };
}

/**
 * Offset just after the last header line's CRLF; the whole content when there is no empty line
 * (a message with no body). Looks no further than `max` bytes: past that, only "more than max"
 * matters, and max + 1 is returned.
 */
function headerEndOf(content: Buffer, max: number): number {
  const window = content.length > max + 4 ? content.subarray(0, max + 4) : content;
  const blank = window.indexOf(HEADER_END);
  if (blank >= 0) return blank + 2;
  return content.length > max ? max + 1 : content.length;
}

/** The fields up to `end`; null when there are more than `maxFields`. */
function parseSection(content: Buffer, end: number, maxFields: number): HeaderSection | null {
  const text = content.subarray(0, end).toString("latin1");
  const fields: Array<{ name: string; value: string }> = [];
  for (const line of text.split("\r\n")) {
    if (line === "") continue;
    if ((line[0] === " " || line[0] === "\t") && fields.length > 0) {
      const last = fields[fields.length - 1]!;
      last.value += line; // unfolding removes only the CRLF (RFC 5322 §2.2.3)
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    if (fields.length >= maxFields) return null;
    fields.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).replace(/^[ \t]+/, "") });
  }
  return { fields, end };
}

/**
 * The From and Sender addresses. With `maxAddressesPerField`, a field with more addresses gives
 * a refusal instead (550 5.6.0: it can never pass). Addresses are appended one by one: a
 * `push(...list)` of ~125,000 addresses overflowed the stack, which answered 451 and made the
 * client retry forever.
 */
export function headerSenders(section: HeaderSection): HeaderSenders;
export function headerSenders(
  section: HeaderSection,
  maxAddressesPerField: number,
): HeaderSenders | { readonly refusal: HeaderRefusal };
export function headerSenders(
  section: HeaderSection,
  maxAddressesPerField = Number.POSITIVE_INFINITY,
): HeaderSenders | { readonly refusal: HeaderRefusal } {
  const from: string[] = [];
  const sender: string[] = [];
  let fromFields = 0;
  for (const field of section.fields) {
    const name = field.name.toLowerCase();
    if (name !== "from" && name !== "sender") continue;
    if (name === "from") fromFields++;
    const label = name === "from" ? "From" : "Sender";
    // Counted before addressparser runs (about 0.4 µs a byte: 1 s for 125,000 addresses here):
    // more list separators than the limit means more entries than the limit.
    const separators = listSeparators(field.value);
    const addresses = separators < maxAddressesPerField ? addressesIn(field.value) : [];
    const count = separators < maxAddressesPerField ? addresses.length : separators + 1;
    if (count > maxAddressesPerField) {
      return {
        refusal: {
          smtpCode: 550,
          enhancedCode: "5.6.0",
          message: `Too many addresses in the ${label} header field`,
          reason: `${separators < maxAddressesPerField ? `${count} addresses` : `${separators} list separators`} in ${label} (limit ${maxAddressesPerField})`,
        },
      };
    }
    const into = name === "from" ? from : sender;
    for (const address of addresses) into.push(address);
  }
  return { from, fromFields, sender };
}

/**
 * Commas and semicolons between entries of an address list (RFC 5322 §3.4), i.e. outside
 * quoted strings, comments and angle brackets: an upper bound for the entries minus one.
 */
function listSeparators(value: string): number {
  let count = 0;
  let quoted = false;
  let comment = 0;
  let angle = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 92 /* \ */ && (quoted || comment > 0)) i++;
    else if (quoted) quoted = c !== 34;
    else if (comment > 0) comment += c === 40 ? 1 : c === 41 ? -1 : 0;
    else if (c === 34) quoted = true;
    else if (c === 40) comment = 1;
    else if (c === 60) angle = true;
    else if (c === 62) angle = false;
    else if ((c === 44 || c === 59) && !angle) count++;
  }
  return count;
}

/**
 * The addresses of the last few hundred distinct short field values: an application sends with
 * the same From over and over, and addressparser took more of the SMTP thread than the rest of
 * the header checks together (1.6% of it in bench:relay; headerSenders 3.2 µs a message in a
 * warm loop here, 0.22 with the memo).
 * Bounded in entries and in key length; the oldest entry goes first.
 */
const MEMO_ENTRIES = 512;
const MEMO_KEY_CHARS = 256;
const addressMemo = new Map<string, readonly string[]>();

function addressesIn(value: string): readonly string[] {
  const known = addressMemo.get(value);
  if (known !== undefined) return known;
  // latin1 round-trip keeps UTF-8 bytes intact for addressparser to see as text.
  const text = Buffer.from(value, "latin1").toString("utf8");
  const addresses = Object.freeze(
    addressparser(text, { flatten: true })
      .map((a) => a.address)
      .filter((a): a is string => typeof a === "string" && a.length > 0),
  );
  if (value.length <= MEMO_KEY_CHARS) setBounded(addressMemo, value, addresses, MEMO_ENTRIES);
  return addresses;
}

export function hasField(section: HeaderSection, name: string): boolean {
  const lower = name.toLowerCase();
  return section.fields.some((f) => f.name.toLowerCase() === lower);
}

export interface TraceInfo {
  readonly queueId: string;
  readonly hostname: string;
  readonly heloName: string | undefined;
  readonly clientIp: string;
  /** RFC 3848 protocol keyword: ESMTP, ESMTPS, ESMTPA, ESMTPSA (or SMTP for HELO). */
  readonly protocol: string;
  readonly tls: string | undefined;
  readonly date: Date;
}

/** Returns the content with a Received field and any missing Message-ID/Date prepended. */
export function addTraceFields(content: Buffer, section: HeaderSection, trace: TraceInfo): Buffer {
  const from = trace.heloName ? `${sanitize(trace.heloName)} ([${trace.clientIp}])` : `[${trace.clientIp}]`;
  const tls = trace.tls ? `\r\n\t(${trace.tls})` : "";
  const lines = [
    `Received: from ${from}\r\n\tby ${trace.hostname} (Petrel) with ${trace.protocol} id ${trace.queueId}${tls};\r\n\t${rfc5322Date(trace.date)}`,
  ];
  if (!hasField(section, "message-id")) lines.push(`Message-ID: <${trace.queueId}@${trace.hostname}>`);
  if (!hasField(section, "date")) lines.push(`Date: ${rfc5322Date(trace.date)}`);
  const prefix = Buffer.from(lines.join("\r\n"), "latin1");
  // Into the room in front of a received message when it has some (headroom.ts): no copy of it.
  return prepend([prefix, CRLF], content);
}

/** HELO names are client input; keep them to printable ASCII without parentheses. */
function sanitize(value: string): string {
  return value.replace(/[^\x21-\x7e]|[()]/g, "?").slice(0, 255);
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** RFC 5322 §3.3 date-time in UTC: "Fri, 27 Nov 2026 18:36:28 +0000". */
export function rfc5322Date(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[date.getUTCDay()]}, ${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ${pad(
    date.getUTCHours(),
  )}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`;
}

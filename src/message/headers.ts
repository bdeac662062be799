/**
 * Reads and completes the header section of a submitted message: finds the From and Sender
 * addresses for sender verification, and adds what a relay must add before the commit — a
 * Received trace field (RFC 5321 §4.4) and Message-ID/Date where the client left them out
 * (RFC 6409 §8.2, §8.3). The body is never touched, so a client's DKIM signature would survive.
 *
 * Security: the content is untrusted client input. Parsing is bounded to the header section,
 * never throws on malformed fields, and only reads addresses through nodemailer's addressparser.
 */
import addressparser from "nodemailer/lib/addressparser";
import type { HeaderSenders } from "../policy/sender.js";

const CRLF = Buffer.from("\r\n");
const HEADER_END = Buffer.from("\r\n\r\n");

export interface HeaderSection {
  /** Unfolded fields in order: name as written, value without the leading space. */
  readonly fields: ReadonlyArray<{ readonly name: string; readonly value: string }>;
  /** Byte offset where the header section ends (the empty line's CRLF is at this offset). */
  readonly end: number;
}

/** Parses the header section (content must already use CRLF line endings). */
export function readHeaderSection(content: Buffer): HeaderSection {
  let end = content.indexOf(HEADER_END);
  // A message with no body has no empty line; then everything is header.
  if (end < 0) end = content.length;
  else end += 2;
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
    fields.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).replace(/^[ \t]+/, "") });
  }
  return { fields, end };
}

export function headerSenders(section: HeaderSection): HeaderSenders {
  const from: string[] = [];
  const sender: string[] = [];
  let fromFields = 0;
  for (const field of section.fields) {
    const name = field.name.toLowerCase();
    if (name === "from") {
      fromFields++;
      from.push(...addressesIn(field.value));
    } else if (name === "sender") {
      sender.push(...addressesIn(field.value));
    }
  }
  return { from, fromFields, sender };
}

function addressesIn(value: string): string[] {
  // latin1 round-trip keeps UTF-8 bytes intact for addressparser to see as text.
  const text = Buffer.from(value, "latin1").toString("utf8");
  return addressparser(text, { flatten: true })
    .map((a) => a.address)
    .filter((a): a is string => typeof a === "string" && a.length > 0);
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
  return Buffer.concat([prefix, CRLF, content]);
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

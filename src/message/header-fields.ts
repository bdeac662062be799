/**
 * One header field made fit for any receiver: long lines folded at whitespace (RFC 5322 §2.2.3,
 * §2.1.1: 998 octets at most, 78 recommended), and raw UTF-8 (RFC 6532) rewritten as RFC 2047
 * encoded words so the message needs no SMTPUTF8 when its envelope is ASCII.
 *
 * Invariants: folding only inserts CRLF before existing whitespace, so unfolding gives back the
 * same value; encoding is applied only where RFC 2047 allows encoded words (unstructured text
 * and the display names of address fields, §5), never inside addresses, message ids or
 * parameters — such a field is left as it is (and the message still needs SMTPUTF8).
 * Security: values are untrusted; every function is a single pass over its input.
 */
import addressparser from "nodemailer/lib/addressparser";
import { encodeWord, encodeWords, quoteString } from "nodemailer/lib/mime-funcs";
import { isAsciiAddress, toAsciiDomain } from "../address.js";

/** The line length folding aims for (RFC 5322 §2.1.1 "SHOULD"; RFC 2047 §2 for encoded words). */
const PREFERRED = 76;

/**
 * Folds one field text (no trailing CRLF; it may be folded already) so that no line exceeds
 * `limit` octets: every line longer than `preferred` is broken before whitespace, aiming at
 * lines of ≤ 76. Returns null when a line over `limit` has no whitespace to break it at.
 * `text` is a latin1 string (one char per octet).
 */
export function foldField(text: string, limit: number, preferred = PREFERRED): string | null {
  const out: string[] = [];
  for (const line of text.split("\r\n")) {
    if (line.length <= Math.min(preferred, limit)) {
      out.push(line);
      continue;
    }
    const folded = foldLine(line, limit, Math.min(preferred, limit));
    if (folded === null) return null;
    for (const line of folded) out.push(line);
  }
  return out.join("\r\n");
}

function isWsp(c: number): boolean {
  return c === 32 || c === 9;
}

function foldLine(line: string, limit: number, preferred: number): string[] | null {
  const lines: string[] = [];
  let start = 0;
  while (line.length - start > preferred) {
    // A fold point is whitespace with some non-whitespace before it on the same output line:
    // a continuation line of only whitespace is not allowed (RFC 5322 §3.2.2).
    let firstText = start;
    while (firstText < line.length && isWsp(line.charCodeAt(firstText))) firstText++;
    let cut = -1;
    for (let i = start + preferred; i > firstText; i--) {
      if (isWsp(line.charCodeAt(i))) {
        cut = i;
        break;
      }
    }
    if (cut === -1) {
      const hardEnd = Math.min(line.length - 1, start + limit);
      for (let i = Math.max(start + preferred + 1, firstText + 1); i <= hardEnd; i++) {
        if (isWsp(line.charCodeAt(i))) {
          cut = i;
          break;
        }
      }
    }
    if (cut === -1) {
      if (line.length - start <= limit) break;
      return null;
    }
    lines.push(line.slice(start, cut));
    start = cut;
  }
  lines.push(line.slice(start));
  return lines;
}

/** Fields whose whole value is unstructured text (RFC 5322 §3.6.5, RFC 2045 §8, RFC 2047 §5(1)). */
const UNSTRUCTURED = new Set(["subject", "comments", "content-description", "thread-topic", "organization"]);
/** Fields holding address lists, whose display names may be encoded words (RFC 2047 §5(3)). */
const ADDRESS_FIELDS = new Set([
  "from",
  "sender",
  "reply-to",
  "to",
  "cc",
  "bcc",
  "resent-from",
  "resent-sender",
  "resent-to",
  "resent-cc",
  "resent-bcc",
  "disposition-notification-to",
]);

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The field with its raw UTF-8 turned into encoded words, as `Name: value` (unfolded, ASCII), or
 * null when it cannot be: the value is not valid UTF-8 (its charset is unknown), an address in
 * it has a non-ASCII local part, or the field is structured in a way encoded words may not enter.
 * `name` and `value` are latin1 strings as read from the message (value unfolded).
 */
export function encodeFieldValue(name: string, value: string): string | null {
  let text: string;
  try {
    text = UTF8.decode(Buffer.from(value, "latin1"));
  } catch {
    return null;
  }
  const lower = name.toLowerCase();
  if (ADDRESS_FIELDS.has(lower)) {
    const list = encodeAddressList(text);
    return list === null ? null : `${name}: ${list}`;
  }
  // X- fields are private and almost always free text; other known structured fields
  // (Message-ID, References, Content-Type, List-*, DKIM-Signature…) are left alone.
  if (UNSTRUCTURED.has(lower) || lower.startsWith("x-")) {
    return `${name}: ${encodeWords(text, wordEncoding(text), 52)}`;
  }
  return null;
}

/** Q when most characters are ASCII (readable, short), B otherwise — as nodemailer chooses. */
function wordEncoding(text: string): "Q" | "B" {
  let other = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 127) other++;
  return other < text.length / 2 ? "Q" : "B";
}

interface ParsedAddress {
  name?: string;
  address?: string;
  group?: ParsedAddress[];
}

function encodeAddressList(text: string): string | null {
  const parsed = addressparser(text) as ParsedAddress[];
  if (parsed.length === 0) return null;
  const parts: string[] = [];
  for (const entry of parsed) {
    if (entry.group) {
      const members: string[] = [];
      for (const member of entry.group) {
        const mailbox = formatMailbox(member);
        if (mailbox === null) return null;
        members.push(mailbox);
      }
      parts.push(`${phrase(entry.name ?? "")}: ${members.join(", ")};`);
    } else {
      const mailbox = formatMailbox(entry);
      if (mailbox === null) return null;
      parts.push(mailbox);
    }
  }
  return parts.join(", ");
}

function formatMailbox(entry: ParsedAddress): string | null {
  const address = entry.address ?? "";
  const at = address.lastIndexOf("@");
  if (at <= 0) return null; // not something we can rebuild faithfully
  const domain = toAsciiDomain(address.slice(at + 1));
  const local = address.slice(0, at);
  // A non-ASCII local part has no ASCII form at all (RFC 6530 §4): only SMTPUTF8 carries it.
  if (domain === "" || !isAsciiAddress(local)) return null;
  const mailbox = `${local}@${domain}`;
  return entry.name ? `${phrase(entry.name)} <${mailbox}>` : mailbox;
}

// atext plus space (RFC 5322 §3.2.3, §3.2.5): a phrase that needs no quoting.
const PLAIN_PHRASE = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*$/;

function phrase(name: string): string {
  if (!isAsciiAddress(name)) return encodeWord(name, wordEncoding(name), 52);
  return PLAIN_PHRASE.test(name) ? name : quoteString(name);
}

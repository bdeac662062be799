/**
 * RFC 5321 §4.1.2 path and mailbox syntax (with the RFC 6531 UTF-8 extensions), and the
 * MAIL FROM / RCPT TO argument split into path and ESMTP parameters.
 *
 * Invariants: an address that passes is `local-part "@" domain` (or "" for the null path),
 * with the source route stripped and the case kept as given; length limits are in octets
 * (§4.5.3.1: local part 64, domain 255, path 256 including the angle brackets).
 * Security: input is an untrusted command line; parsing is linear, without backtracking regexes.
 */

import { isIPv4, isIPv6 } from "node:net";

export type PathResult =
  | { kind: "ok"; address: string; params: string[] }
  /** Missing "FROM:"/"TO:", missing angle brackets, junk after ">". */
  | { kind: "syntax" }
  /** The address inside the brackets is not a valid mailbox. */
  | { kind: "address" };

/**
 * Splits `FROM:<path> params...` (or `TO:`). A space after the colon is tolerated, as many
 * clients send it. `prefix` is "FROM:" or "TO:" in upper case.
 */
export function splitPathArgument(arg: string, prefix: string): PathResult {
  if (arg.length < prefix.length || arg.slice(0, prefix.length).toUpperCase() !== prefix) {
    return { kind: "syntax" };
  }
  let i = prefix.length;
  while (arg.charCodeAt(i) === 32) i++;
  if (arg.charCodeAt(i) !== 60 /* < */) return { kind: "syntax" };
  const close = findClosingBracket(arg, i + 1);
  if (close === -1) return { kind: "syntax" };
  const rest = arg.slice(close + 1);
  if (rest !== "" && rest.charCodeAt(0) !== 32) return { kind: "syntax" };
  const inner = arg.slice(i + 1, close);
  const params = rest === "" ? [] : rest.split(" ").filter((p) => p !== "");
  if (inner === "") return { kind: "ok", address: "", params };
  // §4.5.3.1.3: the path including its punctuation is at most 256 octets.
  if (utf8Length(inner) + 2 > 256) return { kind: "address" };
  let mailbox = inner;
  if (inner.charCodeAt(0) === 64 /* @ */) {
    // A source route (<@a,@b:user@host>) must be accepted and its route ignored (§4.1.2, Appendix C).
    const colon = inner.indexOf(":");
    if (colon === -1 || !isSourceRoute(inner.slice(0, colon))) return { kind: "address" };
    mailbox = inner.slice(colon + 1);
  }
  return isValidMailbox(mailbox, true) ? { kind: "ok", address: mailbox, params } : { kind: "address" };
}

/** Index of the ">" that closes the path, skipping quoted strings and quoted pairs; -1 if none. */
function findClosingBracket(s: string, from: number): number {
  let quoted = false;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (quoted) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) quoted = false;
    } else if (c === 34) quoted = true;
    else if (c === 62 /* > */) return i;
  }
  return -1;
}

function isSourceRoute(route: string): boolean {
  for (const hop of route.split(",")) {
    if (hop.charCodeAt(0) !== 64 || !isValidDomain(hop.slice(1), false)) return false;
  }
  return true;
}

/** True when `s` contains a character outside US-ASCII. */
export function hasNonAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return true;
  return false;
}

/** RFC 5321 Mailbox = Local-part "@" ( Domain / address-literal ); `utf8` admits RFC 6531 non-ASCII. */
export function isValidMailbox(s: string, utf8: boolean): boolean {
  let at: number;
  if (s.charCodeAt(0) === 34) {
    at = quotedStringEnd(s, utf8);
    if (at === -1 || s.charCodeAt(at) !== 64) return false;
  } else {
    at = s.indexOf("@");
    if (at <= 0 || !isDotString(s.slice(0, at), utf8)) return false;
  }
  if (utf8Length(s.slice(0, at)) > 64) return false;
  const domain = s.slice(at + 1);
  if (domain.charCodeAt(0) === 91 /* [ */) return isAddressLiteral(domain);
  return isValidDomain(domain, utf8);
}

/** Index just after the closing quote of a quoted-string local part, or -1. */
function quotedStringEnd(s: string, utf8: boolean): number {
  for (let i = 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) return i > 1 ? i + 1 : -1; // an empty "" local part is not useful mail
    if (c === 92) {
      const n = s.charCodeAt(i + 1);
      if (!(n >= 32 && n <= 126)) return -1; // quoted-pairSMTP = "\" %d32-126
      i++;
    } else if (!((c >= 32 && c <= 126) || (utf8 && c > 127))) return -1;
  }
  return -1;
}

// atext (RFC 5322 §3.2.3) as a lookup table over ASCII.
const ATEXT = new Uint8Array(128);
for (const ch of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~") {
  ATEXT[ch.charCodeAt(0)] = 1;
}

function isDotString(s: string, utf8: boolean): boolean {
  let atomLen = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (atomLen === 0) return false; // leading or doubled dot
      atomLen = 0;
    } else if ((c < 128 && ATEXT[c] === 1) || (utf8 && c > 127)) atomLen++;
    else return false;
  }
  return atomLen > 0; // no trailing dot
}

/**
 * Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str], or a U-label under SMTPUTF8.
 * One pass over the labels (no split, and octets counted only where a string is not ASCII:
 * this ran for every MAIL and RCPT, 1.6% of the SMTP thread under bench:accept (b) as split and
 * Buffer.byteLength per label).
 */
function isValidDomain(d: string, utf8: boolean): boolean {
  if (d.length === 0 || utf8Length(d) > 255) return false;
  let start = 0;
  let ascii = true;
  for (let i = 0; i <= d.length; i++) {
    const c = i === d.length ? 46 : d.charCodeAt(i);
    if (c === 46 /* . */) {
      const length = i - start;
      if (length === 0 || (ascii ? length : Buffer.byteLength(d.slice(start, i))) > 63) return false;
      if (d.charCodeAt(start) === 45 || d.charCodeAt(i - 1) === 45) return false;
      start = i + 1;
      ascii = true;
      continue;
    }
    if (c > 127) {
      if (!utf8) return false;
      ascii = false;
    } else if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45)) {
      return false;
    }
  }
  return true;
}

/** The octets of `s` in UTF-8: an ASCII string's length (a scan in JS, no call into C++). */
function utf8Length(s: string): number {
  return hasNonAscii(s) ? Buffer.byteLength(s) : s.length;
}

/** [a.b.c.d] or [IPv6:...]; general address literals (§4.1.3 tags) have no registered use and are refused. */
function isAddressLiteral(d: string): boolean {
  if (d.charCodeAt(d.length - 1) !== 93 /* ] */) return false;
  const inner = d.slice(1, -1);
  if (inner.slice(0, 5).toUpperCase() === "IPV6:") return isIPv6(inner.slice(5));
  return isIPv4(inner);
}

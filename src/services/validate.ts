/**
 * Checks of operator and API input shared by the services: domain names and addresses.
 * Security: linear-time regular expressions only (bounded length first).
 */
import { domainToASCII } from "node:url";
import { PetrelError } from "../errors.js";

// RFC 1035 §2.3.1 labels (with RFC 1123 leading digits), at least two labels.
const DOMAIN =
  /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A domain name in its canonical form: lower-case A-labels (issue 11). U-labels ("例子.测试") are
 * converted with UTS #46 (url.domainToASCII), which also refuses an "xn--" label that is not
 * valid punycode.
 */
export function validDomain(value: string): string {
  const given = value.trim().replace(/\.$/, "");
  if (given.length > 1024)
    throw new PetrelError("invalid-input", `not a valid domain name: ${value.slice(0, 64)}…`);
  const lower = given.toLowerCase();
  const idn = lower.includes("xn--") || /[^\x00-\x7f]/.test(lower);
  const domain = idn ? domainToASCII(given) : lower;
  if (!DOMAIN.test(domain)) throw new PetrelError("invalid-input", `not a valid domain name: ${value}`);
  return domain;
}

/** An address in canonical form: the local part as given (NFC), the domain as validDomain(). */
export function validAddress(value: string): string {
  const address = value.trim();
  const at = address.lastIndexOf("@");
  const local = address.slice(0, at).normalize("NFC");
  if (at <= 0 || Buffer.byteLength(local) > 64 || /[\s<>()[\]\\,;:"]/.test(local))
    throw new PetrelError("invalid-input", `not a valid address: ${value}`);
  return `${local}@${validDomain(address.slice(at + 1))}`;
}

/**
 * A queue or event ID (a ULID) in the stored form. IDs are Crockford base32, written upper-case
 * here but lower-case in VERP addresses and by people: they match whatever the case.
 */
export function canonicalId(value: string): string {
  return value.trim().toUpperCase();
}

/**
 * "2026-12-02T18:00:00Z" (RFC 3339 §5.6 date-time; a date alone is midnight UTC) or unix seconds
 * ("1796320800", fractions allowed) → ms since the epoch, or NaN. Date.parse accepts much more
 * (RFC 2822 dates, local times): the shape check keeps it to RFC 3339.
 */
export function timeMs(value: string): number {
  const text = value.trim();
  if (/^\d{1,12}(\.\d{1,6})?$/.test(text)) return Math.round(Number(text) * 1000);
  if (/^\d{4}-\d\d-\d\d([Tt ]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d))?$/.test(text))
    return Date.parse(text);
  return Number.NaN;
}

/** timeMs(), or the invalid-input problem naming `what`. */
export function parseTime(value: string | number, what = "time"): number {
  const ms = typeof value === "number" ? Math.round(value * 1000) : timeMs(value);
  if (!Number.isFinite(ms))
    throw new PetrelError(
      "invalid-input",
      `${what} must be an RFC 3339 time or unix seconds: ${String(value).slice(0, 40)}`,
    );
  return ms;
}

/**
 * Mail address helpers shared by policy, store and delivery: one canonical form for every
 * address Petrel stores or compares, and the form people read.
 *
 * Canonical: the domain in lower-case A-labels (RFC 5890 §2.3.2.1, converted with UTS #46 as
 * browsers do, through node's url.domainToASCII), the local part in Unicode NFC (RFC 6530 §10.1
 * asks for normalised UTF-8) and otherwise exactly as given (RFC 5321 §2.4: only the
 * destination host may interpret it). Display: the domain's A-labels back as U-labels.
 * ASCII domains take a fast path (lower-casing only), so the hot paths pay nothing for IDN.
 */
import { domainToASCII, domainToUnicode } from "node:url";

/** True when `s` contains a character outside US-ASCII. */
function nonAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return true;
  return false;
}

/**
 * The canonical (A-label, lower-case) form of a domain. A name that has no A-label form (it is
 * not a valid IDN) is returned lower-cased as given, so nothing is lost; validators that must
 * refuse it use toAsciiDomain().
 */
export function canonicalDomain(domain: string): string {
  if (!nonAscii(domain)) return domain.toLowerCase();
  return toAsciiDomain(domain) || domain.toLowerCase();
}

/** The A-label form of a domain, or "" when it has none (url.domainToASCII's answer). */
export function toAsciiDomain(domain: string): string {
  if (!nonAscii(domain)) return domain.toLowerCase();
  return domainToASCII(domain);
}

/** The domain as people read it: A-labels ("xn--…") shown as U-labels. */
export function displayDomain(domain: string): string {
  if (!domain.toLowerCase().includes("xn--")) return domain;
  return domainToUnicode(domain) || domain;
}

/** A domain for people: "例子.测试 (xn--fsqu00a.xn--0zwm56d)" for an IDN, else the name itself. */
export function describeDomain(domain: string): string {
  const shown = displayDomain(domain);
  return shown === domain ? domain : `${shown} (${domain})`;
}

/** The domain part, canonical ("" when there is no @). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? "" : canonicalDomain(address.slice(at + 1));
}

/** The address in canonical form: local part NFC, domain lower-case A-labels. */
export function normalizeAddress(address: string): string {
  const at = address.lastIndexOf("@");
  if (at < 0) return address;
  const local = address.slice(0, at);
  return `${nonAscii(local) ? local.normalize("NFC") : local}@${canonicalDomain(address.slice(at + 1))}`;
}

/**
 * An envelope address as Petrel stores it: unchanged when it is ASCII (its case kept, as
 * before IDN), canonical otherwise (U-labels to A-labels, NFC local part), so a recipient
 * written with U-labels is stored, matched and delivered under its A-label domain.
 */
export function envelopeAddress(address: string): string {
  return nonAscii(address) ? normalizeAddress(address) : address;
}

/** The address as people read it: its domain's A-labels as U-labels. */
export function displayAddress(address: string): string {
  const at = address.lastIndexOf("@");
  if (at < 0) return address;
  return `${address.slice(0, at)}@${displayDomain(address.slice(at + 1))}`;
}

/** True when the address needs SMTPUTF8 (RFC 6531): non-ASCII in its local part or domain. */
export function isAsciiAddress(address: string): boolean {
  return !nonAscii(address);
}

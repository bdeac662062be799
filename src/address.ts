/**
 * Mail address helpers shared by policy, store and delivery. Domains compare case-insensitively;
 * local parts are kept exactly as given (RFC 5321 §2.4: only the destination host may interpret them).
 */

/** The domain part, lower-cased ("" when there is no @). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? "" : address.slice(at + 1).toLowerCase();
}

/** The address with its domain lower-cased. */
export function normalizeAddress(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? address : address.slice(0, at) + address.slice(at).toLowerCase();
}

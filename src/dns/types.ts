/**
 * What the rest of Petrel needs from DNS. `src/dns/resolver.ts` implements it against the
 * configured servers (`dns.servers`, e.g. 127.0.0.1:5353 in tests) with a TTL-respecting cache.
 *
 * Outcomes are data, not exceptions, because delivery must tell a permanent answer (NXDOMAIN)
 * from a temporary one (SERVFAIL, timeout) and act differently on each (RFC 5321 §5.1).
 */

export interface MxRecord {
  readonly exchange: string;
  readonly preference: number;
}

export type DnsAnswer<T> =
  /** The name exists and has records of this type (possibly an empty list: NODATA). */
  | { readonly kind: "ok"; readonly records: readonly T[]; readonly ttl: number }
  /** The name does not exist (RCODE 3). Permanent. */
  | { readonly kind: "nxdomain" }
  /** SERVFAIL, REFUSED, timeout, network error. Temporary: try again later. */
  | { readonly kind: "tempfail"; readonly reason: string };

export interface DnsResolver {
  resolveMx(domain: string): Promise<DnsAnswer<MxRecord>>;
  resolveA(name: string): Promise<DnsAnswer<string>>;
  resolveAaaa(name: string): Promise<DnsAnswer<string>>;
  /** Each record's character-strings joined (RFC 7208 §3.3 / RFC 6376 §3.6.2.2 concatenation). */
  resolveTxt(name: string): Promise<DnsAnswer<string>>;
}

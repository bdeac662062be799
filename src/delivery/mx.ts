/**
 * Where to connect for a recipient domain (RFC 5321 §5.1): MX hosts by preference, random order
 * among equal preferences, each host's addresses; no MX → the domain itself (implicit MX); a null
 * MX (RFC 7505) → permanent 5.1.10; NXDOMAIN → permanent 5.1.2; SERVFAIL or timeout → temporary.
 * Relay routes resolve their one host the same way.
 *
 * Outcomes are data (like src/dns): delivery must tell permanent from temporary failures.
 * Invariants: the candidate list is finite and ordered (the caller tries it in order and stops at
 * `maxAddresses`); IPv6 addresses of a host come before its IPv4 ones unless IPv4 is forced.
 * Security: MX data comes from the DNS (untrusted); names only select addresses to connect to,
 * and an address in an MX answer is never used without its own A/AAAA lookup.
 */
import { isIP } from "node:net";
import type { DnsAnswer, DnsResolver, MxRecord } from "../dns/types.js";

export interface Candidate {
  /** The MX (or relay) host name, for TLS verification, SNI and logs. */
  readonly host: string;
  readonly ip: string;
  readonly preference: number;
}

export type MxOutcome =
  | { readonly kind: "ok"; readonly candidates: readonly Candidate[]; readonly implicit: boolean }
  | { readonly kind: "permanent"; readonly code: number; readonly enhanced: string; readonly message: string }
  | { readonly kind: "temporary"; readonly enhanced: string; readonly message: string };

export interface MxOptions {
  readonly forceIpv4: boolean;
  /** Random source for shuffling equal preferences (tests pass a fixed one). */
  readonly random?: () => number;
}

/** Resolves the MX candidates of `domain`. */
export async function resolveMx(
  resolver: DnsResolver,
  domain: string,
  options: MxOptions,
): Promise<MxOutcome> {
  const mx = await resolver.resolveMx(domain);
  if (mx.kind === "nxdomain") {
    return {
      kind: "permanent",
      code: 550,
      enhanced: "5.1.2",
      message: `Host or domain name not found: ${domain}`,
    };
  }
  if (mx.kind === "tempfail") {
    return { kind: "temporary", enhanced: "4.4.3", message: `DNS lookup failed: ${mx.reason}` };
  }
  const records = mx.records;
  // RFC 7505 §3: a null MX is the only record; if it is mixed with others we just skip it.
  if (records.length === 1 && records[0]!.exchange === ".") {
    return {
      kind: "permanent",
      code: 556,
      enhanced: "5.1.10",
      message: `Recipient domain ${domain} accepts no mail (null MX)`,
    };
  }
  const hosts = records.filter((r) => r.exchange !== "." && r.exchange !== "");
  if (records.length === 0) {
    // RFC 5321 §5.1: no MX records → the domain is its own MX, preference 0 (implicit MX).
    const outcome = await hostCandidates(resolver, domain, 0, options);
    return finish(domain, [outcome], true);
  }
  const ordered = orderByPreference(hosts, options.random ?? Math.random);
  const outcomes = await Promise.all(
    ordered.map((r) => hostCandidates(resolver, r.exchange, r.preference, options)),
  );
  return finish(domain, outcomes, false);
}

/** A relay route's host: an IP literal as it is, a name by its A/AAAA records. */
export async function resolveRelay(
  resolver: DnsResolver,
  host: string,
  options: MxOptions,
): Promise<MxOutcome> {
  if (isIP(host) !== 0)
    return { kind: "ok", candidates: [{ host, ip: host, preference: 0 }], implicit: false };
  return finish(host, [await hostCandidates(resolver, host, 0, options)], false);
}

/** Sorts by preference and shuffles each group of equal preference (RFC 5321 §5.1). */
export function orderByPreference(records: readonly MxRecord[], random: () => number): MxRecord[] {
  const groups = new Map<number, MxRecord[]>();
  for (const r of records) groups.set(r.preference, [...(groups.get(r.preference) ?? []), r]);
  return [...groups.keys()]
    .sort((a, b) => a - b)
    .flatMap((p) => {
      const group = groups.get(p)!;
      for (let i = group.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [group[i], group[j]] = [group[j]!, group[i]!];
      }
      return group;
    });
}

type HostOutcome =
  | { readonly kind: "ok"; readonly candidates: Candidate[] }
  | { readonly kind: "none"; readonly reason: string }
  | { readonly kind: "temporary"; readonly reason: string };

async function hostCandidates(
  resolver: DnsResolver,
  host: string,
  preference: number,
  options: MxOptions,
): Promise<HostOutcome> {
  const [v6, v4] = await Promise.all([
    options.forceIpv4 ? Promise.resolve(undefined) : resolver.resolveAaaa(host),
    resolver.resolveA(host),
  ]);
  const answers = [v6, v4].filter((a): a is DnsAnswer<string> => a !== undefined);
  const addresses = answers.flatMap((a) => (a.kind === "ok" ? a.records : []));
  if (addresses.length > 0) {
    return { kind: "ok", candidates: addresses.map((ip) => ({ host, ip, preference })) };
  }
  const failed = answers.find((a) => a.kind === "tempfail");
  if (failed?.kind === "tempfail") return { kind: "temporary", reason: failed.reason };
  const nx = answers.some((a) => a.kind === "nxdomain");
  return { kind: "none", reason: `${host}: ${nx ? "host not found" : "no address records"}` };
}

function finish(domain: string, outcomes: readonly HostOutcome[], implicit: boolean): MxOutcome {
  const candidates = outcomes.flatMap((o) => (o.kind === "ok" ? o.candidates : []));
  if (candidates.length > 0) return { kind: "ok", candidates, implicit };
  const temporary = outcomes.find((o) => o.kind === "temporary");
  if (temporary) {
    return { kind: "temporary", enhanced: "4.4.3", message: `DNS lookup failed: ${temporary.reason}` };
  }
  // RFC 5321 §5.1: MX records present but none usable (or an unusable implicit MX) is an error.
  const reasons = outcomes.map((o) => (o.kind === "none" ? o.reason : "")).filter(Boolean);
  return {
    kind: "permanent",
    code: 550,
    enhanced: implicit ? "5.1.2" : "5.4.4",
    message: `No usable address for ${domain} (${reasons.join("; ")})`,
  };
}

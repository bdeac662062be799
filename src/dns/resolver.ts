/**
 * The DnsResolver Petrel uses for MX/A/AAAA/TXT lookups: talks to the configured servers itself
 * (or the system's, from /etc/resolv.conf, when none are configured) and caches by TTL.
 *
 * Why our own client over dgram/net with dns-packet, not node:dns or dns2's client:
 * - `dns.promises.Resolver` hides TTLs for MX and TXT and folds NXDOMAIN/NODATA/SERVFAIL into
 *   error codes that differ by platform; delivery needs the TTL and the exact outcome.
 * - dns2 3.0's client has no timeout on its TCP path (a silent server hangs the query forever),
 *   takes the host from `dns.split(":")` on TCP fallback (wrong for IPv6 servers), does not check
 *   the reply ID over TCP, swallows record decode errors and parses one bit at a time; and dns2 is
 *   only a devDependency (3.1 needs Node 22). dns-packet (mafintosh, the codec behind
 *   multicast-dns and bonjour) is pure JS, widely used, throws on malformed input and gives us
 *   flags, RCODE, TTLs and TXT as raw bytes.
 *
 * Outcomes (RFC 5321 §5.1 needs them apart):
 * - NOERROR → ok, with the records of the asked type reached through any CNAME chain in the
 *   answer; none = NODATA, ok with [] and the SOA's negative TTL.
 * - NXDOMAIN → nxdomain (permanent). A name that cannot exist in DNS (empty label, label over
 *   63 octets, over 253 characters) is answered nxdomain without a query.
 * - SERVFAIL, REFUSED, other RCODEs, timeouts, network errors → next server; when every server
 *   failed on every try → tempfail with the last reason.
 * - EDNS0 is advertised (1232 bytes); a FORMERR reply to it gets the question again without it.
 * - A truncated UDP reply (TC bit) is asked again over TCP at the same server (RFC 7766 §5):
 *   DKIM TXT records with 2048-bit keys exceed 512 bytes.
 * - Null MX (RFC 7505) comes back as { preference: 0, exchange: "." }; other exchanges lose the
 *   trailing dot and are lower-cased. MX records are sorted by preference (stable).
 * - TXT: each record's character-strings are concatenated (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
 *
 * Cache: ok answers for min(ttl, maxTtl); NODATA and NXDOMAIN for the SOA's negative TTL
 * (min(SOA TTL, SOA minimum), RFC 2308 §5) or `negativeTtl` without an SOA, also capped by
 * maxTtl; tempfails never. Concurrent identical lookups share one query.
 *
 * Invariants: never throws for a lookup (outcomes are data); every query ends within
 * servers × tries × timeoutMs (plus one TCP retry per truncated reply).
 * Security: names are untrusted (they come from recipient addresses): they are converted to
 * A-labels and length-checked before encoding; see transport.ts for reply validation.
 */

import { isIP } from "node:net";
import { domainToASCII } from "node:url";
import type { Answer, DecodedPacket, RecordType } from "dns-packet";
import { AnswerCache, type CacheableAnswer } from "./cache.js";
import { formatNameServer, type NameServer, resolveNameServers } from "./servers.js";
import {
  type DnsQuestion,
  DnsTransportError,
  type ExchangeOptions,
  isTruncated,
  rcodeOf,
  tcpExchange,
  udpExchange,
} from "./transport.js";
import type { DnsAnswer, DnsResolver, MxRecord } from "./types.js";

export interface ResolverOptions {
  /** "127.0.0.1:5353", "1.1.1.1", "[::1]:53" or "::1"; empty = the system's servers. */
  readonly servers: readonly string[];
  /** Wait for one reply from one server, default 2000 ms. */
  readonly timeoutMs?: number;
  /** Rounds over the whole server list before giving up, default 2. */
  readonly tries?: number;
  /** Cache answers by TTL, default true. */
  readonly cache?: boolean;
  /** Clock for cache expiry (ms since epoch), default Date.now; tests inject their own. */
  readonly now?: () => number;
  /** Upper bound on any cached TTL, seconds, default 3600. */
  readonly maxTtl?: number;
  /** NXDOMAIN/NODATA TTL when the reply has no SOA, seconds, default 60. */
  readonly negativeTtl?: number;
  /** Cache capacity in names, default 10000. */
  readonly maxCacheEntries?: number;
  /**
   * EDNS0 UDP payload size advertised, default 1232 (the DNS flag day 2020 value that avoids IP
   * fragmentation); 0 sends plain queries, limiting UDP replies to 512 bytes.
   */
  readonly ednsUdpSize?: number;
}

export interface CachingDnsResolver extends DnsResolver {
  clearCache(): void;
  /** The servers in use, as "host:port" / "[v6]:port" (for logs and `petrel dns check`). */
  readonly servers: readonly string[];
}

const MAX_CNAME_HOPS = 8;

type Extract<T> = (answer: Answer) => T | undefined;

const extractMx: Extract<MxRecord> = (a) => {
  if (a.type !== "MX") return undefined;
  const exchange = a.data.exchange === "." || a.data.exchange === "" ? "." : stripDot(a.data.exchange);
  return { preference: a.data.preference ?? 0, exchange: exchange.toLowerCase() };
};

const extractAddress =
  (type: "A" | "AAAA"): Extract<string> =>
  (a) =>
    a.type === type && typeof a.data === "string" && isIP(a.data) !== 0 ? a.data : undefined;

const extractTxt: Extract<string> = (a) => {
  if (a.type !== "TXT") return undefined;
  const parts = Array.isArray(a.data) ? a.data : [a.data];
  return Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : p))).toString("utf8");
};

function stripDot(name: string): string {
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/** A-label form of `name`, or null when it cannot exist in DNS (RFC 1035 §2.3.4). */
export function toQueryName(name: string): string | null {
  const trimmed = stripDot(name.trim());
  if (trimmed === "") return null;
  const ascii = domainToASCII(trimmed);
  if (ascii === "" || ascii.length > 253) return null;
  return ascii.split(".").every((label) => label.length > 0 && label.length <= 63) ? ascii : null;
}

function ttlOf(a: Answer): number {
  return a.type === "OPT" ? 0 : (a.ttl ?? 0);
}

function sameName(a: string, b: string): boolean {
  return stripDot(a).toLowerCase() === stripDot(b).toLowerCase();
}

/** RFC 2308 §5: the negative TTL is min(SOA's own TTL, SOA MINIMUM). */
function negativeTtlOf(reply: DecodedPacket, fallback: number): number {
  for (const rr of reply.authorities ?? []) {
    if (rr.type === "SOA") return Math.min(rr.ttl ?? fallback, rr.data.minimum ?? fallback);
  }
  return fallback;
}

export function createResolver(options: ResolverOptions): CachingDnsResolver {
  const servers: NameServer[] = resolveNameServers(options.servers);
  const timeoutMs = options.timeoutMs ?? 2000;
  const tries = Math.max(1, options.tries ?? 2);
  const maxTtl = options.maxTtl ?? 3600;
  const negativeTtl = options.negativeTtl ?? 60;
  const exchange: ExchangeOptions = { timeoutMs, ednsUdpSize: options.ednsUdpSize ?? 1232 };
  const cache =
    options.cache === false
      ? undefined
      : new AnswerCache(options.now ?? Date.now, options.maxCacheEntries ?? 10_000);
  const inflight = new Map<string, Promise<DnsAnswer<unknown>>>();

  /** Asks one server, over TCP too when the UDP reply was truncated. */
  async function ask(server: NameServer, question: DnsQuestion): Promise<DecodedPacket> {
    let options = exchange;
    let reply = await udpExchange(server, question, options);
    // RFC 6891 §7: a server that predates EDNS answers FORMERR to the OPT record; ask it plainly.
    if (rcodeOf(reply) === 1 && options.ednsUdpSize > 0) {
      options = { ...options, ednsUdpSize: 0 };
      reply = await udpExchange(server, question, options);
    }
    return isTruncated(reply) ? tcpExchange(server, question, options) : reply;
  }

  function interpret<T>(
    reply: DecodedPacket,
    question: DnsQuestion,
    extract: Extract<T>,
  ): { answer: CacheableAnswer<T>; cacheTtl: number } | undefined {
    const rcode = rcodeOf(reply);
    if (rcode === 3) {
      return { answer: { kind: "nxdomain" }, cacheTtl: Math.min(negativeTtlOf(reply, negativeTtl), maxTtl) };
    }
    if (rcode !== 0) return undefined;
    // Follow the CNAME chain the server put in the answer (RFC 1034 §3.6.2); the RRset's TTL is
    // the smallest TTL along the way, since the data expires when any link does.
    const answers = reply.answers ?? [];
    let owner = question.name;
    let ttl = Number.POSITIVE_INFINITY;
    for (let hop = 0; hop < MAX_CNAME_HOPS; hop++) {
      const cname = answers.find((a) => a.type === "CNAME" && sameName(a.name, owner));
      if (cname === undefined || question.type === "CNAME" || cname.type !== "CNAME") break;
      ttl = Math.min(ttl, cname.ttl ?? 0);
      owner = cname.data;
    }
    const records: T[] = [];
    for (const a of answers) {
      if (a.type !== question.type || !sameName(a.name, owner)) continue;
      const value = extract(a);
      if (value === undefined) continue;
      records.push(value);
      ttl = Math.min(ttl, ttlOf(a));
    }
    if (records.length === 0) {
      const nodataTtl = Math.min(negativeTtlOf(reply, negativeTtl), maxTtl);
      return { answer: { kind: "ok", records, ttl: nodataTtl }, cacheTtl: nodataTtl };
    }
    return { answer: { kind: "ok", records, ttl }, cacheTtl: Math.min(ttl, maxTtl) };
  }

  async function query<T>(name: string, type: RecordType, extract: Extract<T>): Promise<DnsAnswer<T>> {
    const qname = toQueryName(name);
    if (qname === null) return { kind: "nxdomain" };
    const question: DnsQuestion = { name: qname, type };
    const key = `${type} ${qname}`;
    const cached = cache?.get<T>(key);
    if (cached !== undefined) return cached;

    let reason = "no DNS servers";
    for (let attempt = 0; attempt < tries; attempt++) {
      for (const server of servers) {
        let reply: DecodedPacket;
        try {
          reply = await ask(server, question);
        } catch (err) {
          reason = err instanceof DnsTransportError ? err.message : String(err);
          continue;
        }
        const result = interpret(reply, question, extract);
        if (result === undefined) {
          reason = `${rcodeName(rcodeOf(reply))} from ${formatNameServer(server)}`;
          continue;
        }
        cache?.set(key, result.answer, result.cacheTtl);
        return result.answer;
      }
    }
    return { kind: "tempfail", reason: `${type} ${qname}: ${reason}` };
  }

  /** Shares one in-flight query among concurrent callers asking the same thing. */
  function shared<T>(name: string, type: RecordType, extract: Extract<T>): Promise<DnsAnswer<T>> {
    const key = `${type} ${name.toLowerCase()}`;
    const pending = inflight.get(key);
    if (pending !== undefined) return pending as Promise<DnsAnswer<T>>;
    const promise = query(name, type, extract).finally(() => inflight.delete(key));
    inflight.set(key, promise);
    return promise;
  }

  return {
    servers: servers.map(formatNameServer),
    async resolveMx(domain) {
      const answer = await shared(domain, "MX", extractMx);
      if (answer.kind !== "ok") return answer;
      const records = [...answer.records].sort((a, b) => a.preference - b.preference);
      return { ...answer, records };
    },
    resolveA: (name) => shared(name, "A", extractAddress("A")),
    resolveAaaa: (name) => shared(name, "AAAA", extractAddress("AAAA")),
    resolveTxt: (name) => shared(name, "TXT", extractTxt),
    clearCache() {
      cache?.clear();
    },
  };
}

function rcodeName(rcode: number): string {
  const names = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];
  return names[rcode] ?? `RCODE ${rcode}`;
}

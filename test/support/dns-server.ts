/**
 * A real authoritative DNS server on loopback for tests (design convention 8): UDP and TCP on
 * the same port, answering from a zone the test writes as plain data.
 *
 *   const dns = await startDnsServer({
 *     "example.test": { MX: [{ preference: 10, exchange: "mx1.example.test" }] },
 *     "mx1.example.test": { A: ["127.0.0.1"] },
 *     "null-mx.test": { MX: [{ preference: 0, exchange: "." }] },
 *     "broken.test": { behaviour: "servfail" },
 *   });
 *   const resolver = createResolver({ servers: [dns.server] });
 *   ...
 *   dns.set("broken.test", { MX: [...] }); // recovery: records change while running
 *   await dns.close();
 *
 * Behaviour:
 * - A name absent from the zone gets NXDOMAIN with an SOA in the authority section.
 * - A name present without records of the asked type gets NOERROR with no answers (NODATA) and
 *   the SOA, so resolvers can cache the negative answer (RFC 2308).
 * - `behaviour` overrides everything for that name: "servfail" (RCODE 2), "refused" (RCODE 5),
 *   "nxdomain" (even though the name has records), "timeout" (never answers, UDP or TCP),
 *   "formerr-on-edns" (FORMERR to queries with an EDNS OPT record, like a pre-EDNS server;
 *   plain queries get the records).
 * - A CNAME is followed inside the zone, like a real server answering for its own data.
 * - TXT: a string longer than 255 bytes is split into 255-byte character-strings here, because
 *   dns2 writes one length byte per string and would corrupt longer ones. Give an array to
 *   choose the split yourself (each part at most 255 bytes).
 * - UDP answers larger than 512 bytes (or the client's EDNS size) come back with TC=1 and no
 *   records, so a client must retry over TCP (dns2's UDP server does this).
 * Every query is logged in `queries` (name, type, transport), so tests can see cache hits (no
 * new query) and the TCP fallback.
 *
 * Invariants: binds 127.0.0.1 (or the given loopback address) only; `close()` also ends TCP
 * connections held open by "timeout" names, so a test never hangs on shutdown.
 */

import type { AddressInfo, Socket } from "node:net";
import type { DnsHandler } from "dns2";
import { Packet, TCPServer, UDPServer } from "dns2";

export interface ZoneMx {
  readonly preference: number;
  /** A host name, or "." for a null MX (RFC 7505). */
  readonly exchange: string;
}

/** See the header: how a name misbehaves instead of answering from its records. */
export type DnsBehaviour = "servfail" | "refused" | "nxdomain" | "timeout" | "formerr-on-edns";

/** Everything the server knows about one owner name. */
export interface NameRecords {
  readonly A?: readonly string[];
  readonly AAAA?: readonly string[];
  readonly MX?: readonly ZoneMx[];
  /** One entry per TXT record: a string (split into ≤255-byte strings) or explicit strings. */
  readonly TXT?: readonly (string | readonly string[])[];
  /** The canonical name; queries for other types are answered from the target's records. */
  readonly CNAME?: string;
  /** TTL in seconds for all records of this name (default: the server's `defaultTtl`). */
  readonly ttl?: number;
  readonly behaviour?: DnsBehaviour;
}

/** Owner name (case-insensitive, trailing dot optional) → its records. */
export type ZoneRecords = Record<string, NameRecords>;

export type DnsQueryType = "A" | "AAAA" | "MX" | "TXT" | "CNAME" | "SOA" | string;

export interface LoggedQuery {
  readonly name: string;
  readonly type: DnsQueryType;
  readonly transport: "udp" | "tcp";
}

export interface DnsServerOptions {
  /** Loopback address to bind, default "127.0.0.1". */
  readonly address?: string;
  /** TTL of records without their own `ttl`, default 300. */
  readonly defaultTtl?: number;
  /** SOA minimum (the negative-caching TTL, RFC 2308 §5), default 60. */
  readonly soaMinimum?: number;
}

export interface TestDnsServer {
  readonly address: string;
  readonly port: number;
  /** "127.0.0.1:PORT", ready for `createResolver({ servers: [dns.server] })`. */
  readonly server: string;
  /** Queries received so far, oldest first. */
  readonly queries: LoggedQuery[];
  /** Replaces the records of a name (the name then exists). */
  set(name: string, records: NameRecords): void;
  /** Removes a name: queries for it get NXDOMAIN from now on. */
  remove(name: string): void;
  /** Sets or clears (undefined) the behaviour of a name, keeping its records. */
  setBehaviour(name: string, behaviour: DnsBehaviour | undefined): void;
  /** Queries logged for this name (and type, if given). */
  queriesFor(name: string, type?: DnsQueryType): LoggedQuery[];
  close(): Promise<void>;
}

/** RFC 1035 §4.1.1 response codes (dns2 has them at run time but not in its typings). */
const RCODE = { FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

const TXT_STRING_MAX = 255;
const MAX_CNAME_HOPS = 8;

/** Splits one TXT value into character-strings of at most 255 bytes (RFC 1035 §3.3.14). */
export function splitTxt(value: string): Buffer[] {
  const bytes = Buffer.from(value, "utf8");
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += TXT_STRING_MAX) {
    parts.push(bytes.subarray(i, i + TXT_STRING_MAX));
  }
  return parts.length > 0 ? parts : [Buffer.alloc(0)];
}

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

const TYPE_NAMES = new Map<number, string>(Object.entries(Packet.TYPE).map(([k, v]) => [v, k]));

type Resource = InstanceType<typeof Packet.Resource>;

export async function startDnsServer(
  initial: ZoneRecords = {},
  options: DnsServerOptions = {},
): Promise<TestDnsServer> {
  const address = options.address ?? "127.0.0.1";
  const defaultTtl = options.defaultTtl ?? 300;
  const soaMinimum = options.soaMinimum ?? 60;

  const zone = new Map<string, NameRecords>();
  for (const [name, records] of Object.entries(initial)) zone.set(normalizeName(name), records);
  const queries: LoggedQuery[] = [];

  function soaFor(qname: string): Resource {
    // The apex is a guess (last two labels): resolvers only read the TTL and minimum.
    const apex = normalizeName(qname).split(".").slice(-2).join(".") || ".";
    const soa = {
      name: apex,
      type: Packet.TYPE.SOA,
      class: Packet.CLASS.IN,
      ttl: soaMinimum,
      primary: `ns.${apex}`,
      admin: `hostmaster.${apex}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expiration: 86400,
      minimum: soaMinimum,
    };
    return soa as Resource;
  }

  function recordsOf(owner: string, records: NameRecords, type: number): Resource[] {
    const ttl = records.ttl ?? defaultTtl;
    const base = { name: owner, type, class: Packet.CLASS.IN, ttl };
    const out: object[] = [];
    switch (type) {
      case Packet.TYPE.A:
        for (const a of records.A ?? []) out.push({ ...base, address: a });
        break;
      case Packet.TYPE.AAAA:
        for (const a of records.AAAA ?? []) out.push({ ...base, address: a });
        break;
      case Packet.TYPE.MX:
        for (const mx of records.MX ?? []) {
          out.push({ ...base, priority: mx.preference, exchange: mx.exchange === "." ? "" : mx.exchange });
        }
        break;
      case Packet.TYPE.TXT:
        for (const txt of records.TXT ?? []) {
          const parts = typeof txt === "string" ? splitTxt(txt) : txt.map((s) => Buffer.from(s, "utf8"));
          for (const p of parts) {
            if (p.length > TXT_STRING_MAX) throw new Error(`TXT string over 255 bytes for ${owner}`);
          }
          // dns2's TXT encoder takes Buffers as well as strings; its types only say string.
          out.push({ ...base, data: parts });
        }
        break;
      default:
        break;
    }
    return out as Resource[];
  }

  /** Builds the answer; returns null to stay silent (behaviour "timeout"). */
  function answer(request: InstanceType<typeof Packet>, transport: "udp" | "tcp") {
    const response = Packet.createResponseFromRequest(request);
    response.header.aa = 1;
    const question = request.questions[0];
    if (!question) {
      response.header.rcode = RCODE.FORMERR;
      return response;
    }
    const qtype = TYPE_NAMES.get(question.type) ?? String(question.type);
    queries.push({ name: normalizeName(question.name), type: qtype, transport });

    const hasEdns = request.additionals.some((rr) => rr.type === Packet.TYPE.EDNS);
    if (hasEdns && zone.get(normalizeName(question.name))?.behaviour === "formerr-on-edns") {
      response.header.rcode = RCODE.FORMERR;
      return response;
    }

    let owner = question.name;
    for (let hop = 0; hop <= MAX_CNAME_HOPS; hop++) {
      const records = zone.get(normalizeName(owner));
      if (records?.behaviour === "timeout") return null;
      if (records?.behaviour === "servfail") {
        response.answers = [];
        response.header.rcode = RCODE.SERVFAIL;
        return response;
      }
      if (records?.behaviour === "refused") {
        response.answers = [];
        response.header.rcode = RCODE.REFUSED;
        return response;
      }
      if (!records || records.behaviour === "nxdomain") {
        response.header.rcode = RCODE.NXDOMAIN;
        response.authorities.push(soaFor(owner));
        return response;
      }
      if (records.CNAME !== undefined && question.type !== Packet.TYPE.CNAME) {
        const cname = {
          name: owner,
          type: Packet.TYPE.CNAME,
          class: Packet.CLASS.IN,
          ttl: records.ttl ?? defaultTtl,
          domain: records.CNAME,
        };
        response.answers.push(cname as Resource);
        owner = records.CNAME;
        continue;
      }
      if (question.type === Packet.TYPE.CNAME && records.CNAME !== undefined) {
        const cname = {
          name: owner,
          type: Packet.TYPE.CNAME,
          class: Packet.CLASS.IN,
          ttl: records.ttl ?? defaultTtl,
          domain: records.CNAME,
        };
        response.answers.push(cname as Resource);
        return response;
      }
      response.answers.push(...recordsOf(owner, records, question.type));
      if (response.answers.length === 0) response.authorities.push(soaFor(owner));
      return response;
    }
    response.header.rcode = RCODE.SERVFAIL;
    response.answers = [];
    return response;
  }

  function handler(transport: "udp" | "tcp"): DnsHandler {
    return (request, send) => {
      let response: InstanceType<typeof Packet> | null;
      try {
        response = answer(request, transport);
      } catch (err) {
        // A zone mistake in a test: answer SERVFAIL and say why on stderr.
        process.stderr.write(`test dns server: ${String(err)}\n`);
        response = Packet.createResponseFromRequest(request);
        response.header.rcode = RCODE.SERVFAIL;
      }
      if (response === null) return;
      // UDP's send returns a promise that rejects if the client went away; TCP's returns nothing.
      Promise.resolve(send(response)).catch(() => {});
    };
  }

  const udpType = address.includes(":") ? "udp6" : "udp4";
  const sockets = new Set<Socket>();
  let udp: InstanceType<typeof UDPServer> | undefined;
  let tcp: InstanceType<typeof TCPServer> | undefined;
  let port = 0;

  // UDP picks a free port; TCP must take the same one, since a client retries TC answers over
  // TCP at the same address. Another process may hold that TCP port: retry with a new one.
  for (let attempt = 0; attempt < 10 && tcp === undefined; attempt++) {
    const u = new UDPServer({ type: udpType });
    u.on("request", handler("udp"));
    // dns2's listen() never rejects: a bind error (no IPv6 here, say) would be an uncaught
    // 'error' event. Bind ourselves so startDnsServer rejects instead.
    await new Promise<void>((resolve, reject) => {
      u.once("error", reject);
      u.bind(0, address, () => {
        u.off("error", reject);
        resolve();
      });
    });
    u.on("error", (err) => process.stderr.write(`test dns server (udp): ${String(err)}\n`));
    port = (u.address() as AddressInfo).port;
    const t = new TCPServer();
    t.on("request", handler("tcp"));
    t.on("connection", (s: Socket) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    const bound = await new Promise<boolean>((resolve) => {
      t.once("error", () => resolve(false));
      t.listen(port, address, () => resolve(true));
    });
    if (bound) {
      t.on("error", (err) => process.stderr.write(`test dns server (tcp): ${String(err)}\n`));
      udp = u;
      tcp = t;
    } else {
      u.close();
    }
  }
  if (udp === undefined || tcp === undefined) throw new Error("test dns server: no free port");
  const udpServer = udp;
  const tcpServer = tcp;

  const server = address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;

  return {
    address,
    port,
    server,
    queries,
    set(name, records) {
      zone.set(normalizeName(name), records);
    },
    remove(name) {
      zone.delete(normalizeName(name));
    },
    setBehaviour(name, behaviour) {
      const key = normalizeName(name);
      const current = zone.get(key) ?? {};
      zone.set(key, { ...current, behaviour });
    },
    queriesFor(name, type) {
      const key = normalizeName(name);
      return queries.filter((q) => q.name === key && (type === undefined || q.type === type));
    },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udpServer.close(() => resolve())),
        new Promise<void>((resolve) => tcpServer.close(() => resolve())),
      ]);
    },
  };
}

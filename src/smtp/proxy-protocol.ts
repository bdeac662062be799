/**
 * PROXY protocol v1 and v2 header parser (HAProxy's doc/proxy-protocol.txt), for listeners
 * behind a TCP load balancer: the header at the very start of the connection carries the real
 * client's address, which then stands for the peer in trusted networks, throttles, logs and the
 * Received field.
 *
 * Why our own: the format is two small fixed layouts, and the npm parsers we looked at either
 * buffer without a bound or pull in a stream framework; this one is ~100 lines, bounded and
 * incremental (it is called with whatever bytes have arrived so far).
 *
 * Invariants: at most V1_MAX (107, §2.1) bytes for v1 and V2_MAX for v2 are looked at before a
 * verdict; a header that is malformed or too long is an error, never a guess. LOCAL (v2) and
 * UNKNOWN (v1) headers — the balancer's own health checks — keep the connection's own address
 * (§2.1, §2.2: "the receiver must use the real connection endpoints").
 * Security: only ever applied to connections from smtp.proxyProtocol.trustedNetworks (server.ts);
 * from anyone else a header would let a client choose its own address.
 */
import { isIP } from "node:net";

/** §2.1: the longest v1 line, CRLF included. */
export const V1_MAX = 107;
/** 16-byte v2 preamble plus addresses and TLVs; real balancers send a few dozen bytes. */
export const V2_MAX = 16 + 1024;

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from("PROXY ");

export interface ProxySource {
  readonly address: string;
  readonly port: number;
}

export type ProxyParse =
  | { readonly kind: "more" }
  | { readonly kind: "error"; readonly reason: string }
  /** `source` undefined: a LOCAL/UNKNOWN header (keep the connection's own address). */
  | { readonly kind: "done"; readonly length: number; readonly source: ProxySource | undefined };

const MORE: ProxyParse = { kind: "more" };
const error = (reason: string): ProxyParse => ({ kind: "error", reason });

/** Parses the header at the start of `buf` (all bytes received so far). */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length === 0) return MORE;
  if (buf[0] === 0x0d) return parseV2(buf);
  if (buf[0] === 0x50) return parseV1(buf);
  return error("no PROXY header");
}

function startsWithPrefix(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

function parseV1(buf: Buffer): ProxyParse {
  if (!startsWithPrefix(buf, V1_PREFIX)) return error("no PROXY header");
  const lf = buf.indexOf(0x0a);
  if (lf === -1) return buf.length >= V1_MAX ? error("PROXY v1 line too long") : MORE;
  if (lf + 1 > V1_MAX || buf[lf - 1] !== 0x0d) return error("PROXY v1 line malformed");
  const fields = buf.toString("latin1", 0, lf - 1).split(" ");
  const length = lf + 1;
  if (fields[1] === "UNKNOWN") return { kind: "done", length, source: undefined };
  if (fields.length !== 6) return error("PROXY v1 line malformed");
  const [, proto, src, dst, sport, dport] = fields as [string, string, string, string, string, string];
  const family = proto === "TCP4" ? 4 : proto === "TCP6" ? 6 : 0;
  if (family === 0 || isIP(src) !== family || isIP(dst) !== family) return error("PROXY v1 bad address");
  const port = parsePort(sport);
  if (port === undefined || parsePort(dport) === undefined) return error("PROXY v1 bad port");
  return { kind: "done", length, source: { address: src, port } };
}

/** §2.1: ports are decimal 0..65535 without leading zeros. */
function parsePort(text: string): number | undefined {
  if (!/^(?:0|[1-9][0-9]{0,4})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

function parseV2(buf: Buffer): ProxyParse {
  if (!startsWithPrefix(buf, V2_SIGNATURE)) return error("no PROXY header");
  if (buf.length < 16) return MORE;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return error("PROXY v2 bad version");
  const command = verCmd & 0x0f;
  if (command > 1) return error("PROXY v2 bad command");
  const famProto = buf[13]!;
  const len = buf.readUInt16BE(14);
  const length = 16 + len;
  if (length > V2_MAX) return error("PROXY v2 header too long");
  if (buf.length < length) return MORE;
  // §2.2: LOCAL — the proxy's own connection (health check); addresses, if any, are ignored.
  if (command === 0) return { kind: "done", length, source: undefined };
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  // UNSPEC or a non-stream transport: "the receiver must use the real connection endpoints".
  if (family === 0 || transport !== 1) return { kind: "done", length, source: undefined };
  if (family === 1) {
    if (len < 12) return error("PROXY v2 address block too short");
    const address = `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`;
    return { kind: "done", length, source: { address, port: buf.readUInt16BE(24) } };
  }
  if (family === 2) {
    if (len < 36) return error("PROXY v2 address block too short");
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + 2 * i).toString(16));
    return { kind: "done", length, source: { address: compressIpv6(groups), port: buf.readUInt16BE(48) } };
  }
  // AF_UNIX (3): no IP to speak of; keep the connection's own address.
  if (family === 3) return { kind: "done", length, source: undefined };
  return error("PROXY v2 bad address family");
}

/** RFC 5952 text form (longest run of zero groups as "::"), and IPv4-mapped as a.b.c.d. */
function compressIpv6(groups: string[]): string {
  if (groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff") {
    const a = Number.parseInt(groups[6]!, 16);
    const b = Number.parseInt(groups[7]!, 16);
    return `${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart === -1) return groups.join(":");
  return `${groups.slice(0, bestStart).join(":")}::${groups.slice(bestStart + bestLen).join(":")}`;
}

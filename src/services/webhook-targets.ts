/**
 * SSRF check for webhook URLs created through the HTTP API (issue 9): the host may not be, or
 * resolve to, a loopback, link-local, private, unique-local or otherwise non-public address, so
 * an API key cannot make Petrel POST into the operator's own network — unless
 * events.webhooks.allowPrivateTargets is on. Operators adding endpoints with the CLI may point
 * anywhere. The names are resolved through Petrel's resolver (dns.servers).
 * Limitation: the check runs when the endpoint is added; a name re-pointed later (DNS rebinding)
 * is not checked again at each POST.
 */
import { BlockList, isIP } from "node:net";
import type { DnsResolver } from "../dns/types.js";
import { PetrelError } from "../errors.js";

const BLOCKED = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // RFC 6598 carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata services
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const)
  BLOCKED.addSubnet(net, bits, "ipv4");
for (const [net, bits] of [
  ["::", 128],
  ["::1", 128],
  ["64:ff9b::", 96],
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["ff00::", 8],
] as const)
  BLOCKED.addSubnet(net, bits, "ipv6");

export function isPrivateAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) return BLOCKED.check(ip, "ipv4");
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    return BLOCKED.check(ip, "ipv6") || (mapped !== null && BLOCKED.check(mapped[1]!, "ipv4"));
  }
  return true;
}

/** Refuses a URL whose host is or resolves to a non-public address. */
export async function checkPublicTarget(url: string, resolver: DnsResolver): Promise<void> {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const refuse = (why: string) =>
    new PetrelError(
      "invalid-input",
      `webhook URLs may not point at ${why} (events.webhooks.allowPrivateTargets allows it)`,
    );
  if (isIP(host) !== 0) {
    if (isPrivateAddress(host)) throw refuse(`a loopback, link-local or private address (${host})`);
    return;
  }
  if (host === "localhost" || host.endsWith(".localhost")) throw refuse("localhost");
  const [a, aaaa] = await Promise.all([resolver.resolveA(host), resolver.resolveAaaa(host)]);
  const addresses = [...(a.kind === "ok" ? a.records : []), ...(aaaa.kind === "ok" ? aaaa.records : [])];
  if (addresses.length === 0)
    throw new PetrelError("invalid-input", `the webhook host ${host} does not resolve`);
  const bad = addresses.find(isPrivateAddress);
  if (bad) throw refuse(`a name that resolves to a private address (${host} → ${bad})`);
}

/**
 * Parses the configured name-server list ("127.0.0.1:5353", "1.1.1.1", "[::1]:53", "::1") and
 * falls back to the system's servers (what `/etc/resolv.conf` said when Node started).
 *
 * Invariants: every parsed server is an IP literal (no host names: resolving the resolver would
 * need a resolver) with a port in 1..65535. Replies are matched to their server by the
 * transport (a connected UDP socket), not by comparing address strings here.
 */

import { getServers } from "node:dns";
import { isIP } from "node:net";

export interface NameServer {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

const DEFAULT_PORT = 53;

function parsePort(text: string, original: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) throw new Error(`Invalid DNS server port in "${original}"`);
  return port;
}

/** Parses one server: IPv4 with optional ":port", bare IPv6, or "[IPv6]:port". Throws if invalid. */
export function parseNameServer(text: string): NameServer {
  const trimmed = text.trim();
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(trimmed);
  if (bracketed) {
    const host = bracketed[1] ?? "";
    if (isIP(host) !== 6) throw new Error(`Invalid DNS server address "${text}"`);
    const port = bracketed[2] === undefined ? DEFAULT_PORT : parsePort(bracketed[2], text);
    return { host, port, family: 6 };
  }
  if (isIP(trimmed) === 6) return { host: trimmed, port: DEFAULT_PORT, family: 6 };
  const [host = "", portText, ...rest] = trimmed.split(":");
  if (rest.length > 0 || isIP(host) !== 4) throw new Error(`Invalid DNS server address "${text}"`);
  const port = portText === undefined ? DEFAULT_PORT : parsePort(portText, text);
  return { host, port, family: 4 };
}

/**
 * The servers to query: the configured ones, or the system's when none are configured, or the
 * local resolver as a last resort (what libc does without a resolv.conf).
 */
export function resolveNameServers(configured: readonly string[]): NameServer[] {
  const list = configured.length > 0 ? configured : getServers();
  if (list.length === 0) return [{ host: "127.0.0.1", port: DEFAULT_PORT, family: 4 }];
  return list.map(parseNameServer);
}

export function formatNameServer(server: NameServer): string {
  return server.family === 6 ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
}

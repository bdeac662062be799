/**
 * Routes: which transport, port, TLS policy and limits apply to a recipient domain. Plain data in,
 * plain data out. Matching: an exact domain wins over the longest "*.suffix" pattern, which wins
 * over "*"; with no match the default is direct MX delivery on delivery.port.
 *
 * A relay route names the destination that limits and backoff are counted against
 * ("relay:host:port"), since every domain routed to one relay shares its connections; for MX
 * delivery the dispatcher finds the destination once the MX hosts are known (providers.ts), and
 * `destination` is only the recipient domain.
 */
import type { DeliveryConfig, RouteConfig, TlsPolicy } from "../config/delivery-schema.js";

export interface ResolvedRoute {
  /** Key for connection pools and concurrency limits. */
  readonly destination: string;
  readonly transport: "mx" | "relay";
  /** Relay host (relay routes only). */
  readonly host: string | null;
  readonly port: number;
  /** How the connection starts: plaintext then maybe STARTTLS, or implicit TLS (relay `tls`). */
  readonly implicitTls: boolean;
  readonly tlsPolicy: TlsPolicy;
  readonly auth: { readonly user: string; readonly pass: string } | null;
  readonly maxConnections: number;
  readonly maxMessagesPerConnection: number;
  /** 0 = no limit. */
  readonly maxMessagesPerMinute: number;
  /** The pattern that matched, for logs ("default" when none did). */
  readonly match: string;
}

export type RouteResolver = (domain: string) => ResolvedRoute;

export function compileRoutes(config: DeliveryConfig): RouteResolver {
  const exact = new Map<string, RouteConfig>();
  const suffixes: Array<{ suffix: string; route: RouteConfig }> = [];
  let catchAll: RouteConfig | undefined;
  for (const route of config.routes) {
    if (route.match === "*") catchAll ??= route;
    else if (route.match.startsWith("*.")) suffixes.push({ suffix: route.match.slice(1), route });
    else if (!exact.has(route.match)) exact.set(route.match, route);
  }
  // Longest suffix first: "*.eu.example.com" before "*.example.com".
  suffixes.sort((a, b) => b.suffix.length - a.suffix.length);

  return (domain) => {
    const name = domain.toLowerCase();
    const route =
      exact.get(name) ?? suffixes.find((s) => name.endsWith(s.suffix))?.route ?? catchAll ?? undefined;
    return resolve(config, name, route);
  };
}

function resolve(config: DeliveryConfig, domain: string, route: RouteConfig | undefined): ResolvedRoute {
  const limits = {
    maxConnections: route?.maxConnections ?? config.maxConnectionsPerDestination,
    maxMessagesPerConnection: route?.maxMessagesPerConnection ?? config.maxMessagesPerConnection,
    maxMessagesPerMinute: route?.maxMessagesPerMinute ?? config.maxMessagesPerMinute,
  };
  if (route?.transport === "relay") {
    const policy: TlsPolicy =
      route.security === "none" ? "none" : (route.tlsPolicy ?? (route.auth ? "required" : config.tlsPolicy));
    return {
      destination: `relay:${route.host}:${route.port}`,
      transport: "relay",
      host: route.host.toLowerCase(),
      port: route.port,
      implicitTls: route.security === "tls",
      tlsPolicy: policy,
      auth: route.auth ?? null,
      match: route.match,
      ...limits,
    };
  }
  return {
    destination: domain,
    transport: "mx",
    host: null,
    port: route?.port ?? config.port,
    implicitTls: false,
    tlsPolicy: route?.tlsPolicy ?? config.tlsPolicy,
    auth: null,
    match: route?.match ?? "default",
    ...limits,
  };
}

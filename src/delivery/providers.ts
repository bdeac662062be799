/**
 * Destinations by MX site (issue 11): which destination a recipient domain's mail is counted
 * against once its MX hosts are known. A provider rule (delivery.providers, then the shipped
 * ones) matched on MX host names groups every domain hosted there, whatever its MX set; without
 * a rule, domains with the same MX host set share one destination (KumoMTA's "MX rollup").
 * Plain data in, plain data out.
 *
 * Invariants: the key of an MX host set does not depend on the order DNS returned it in (equal
 * preferences are shuffled per lookup); host names compare case-insensitively, without the root dot.
 */
import type { DeliveryConfig, ProviderConfig } from "../config/delivery-schema.js";
import { DEFAULT_PROVIDERS } from "../config/delivery-schema.js";

export interface ShapingLimits {
  readonly maxConnections: number;
  readonly maxMessagesPerConnection: number;
  /** 0 = no limit. */
  readonly maxMessagesPerMinute: number;
}

export interface Site {
  /** Destination key: "provider:google" or "mx:mx1.example.test,mx2.example.test". */
  readonly key: string;
  /** The provider rule's name, or null for an MX host set. */
  readonly provider: string | null;
  /** Limits of the provider rule (unset fields: the route's), or the route's. */
  readonly limits: ShapingLimits;
}

export type SiteResolver = (mxHosts: readonly string[], routeLimits: ShapingLimits) => Site;

interface Rule {
  readonly provider: ProviderConfig;
  readonly exact: ReadonlySet<string>;
  /** ".google.com" for "*.google.com". */
  readonly suffixes: readonly string[];
}

/** Compiles delivery.providers (first) and, unless turned off, the shipped rules. */
export function compileSites(config: Pick<DeliveryConfig, "providers" | "defaultProviders">): SiteResolver {
  const rules: Rule[] = [...config.providers, ...(config.defaultProviders ? DEFAULT_PROVIDERS : [])].map(
    (provider) => ({
      provider,
      exact: new Set(provider.mx.filter((p) => !p.startsWith("*."))),
      suffixes: provider.mx.filter((p) => p.startsWith("*.")).map((p) => p.slice(1)),
    }),
  );
  return (mxHosts, routeLimits) => {
    const hosts = mxHosts.map(normalise);
    // Hosts come most preferred first: the first host any rule claims decides.
    for (const host of hosts) {
      const rule = rules.find((r) => r.exact.has(host) || r.suffixes.some((s) => host.endsWith(s)));
      if (rule) {
        const p = rule.provider;
        return {
          key: `provider:${p.name}`,
          provider: p.name,
          limits: {
            maxConnections: p.maxConnections ?? routeLimits.maxConnections,
            maxMessagesPerConnection: p.maxMessagesPerConnection ?? routeLimits.maxMessagesPerConnection,
            maxMessagesPerMinute: p.maxMessagesPerMinute ?? routeLimits.maxMessagesPerMinute,
          },
        };
      }
    }
    return { key: `mx:${[...new Set(hosts)].sort().join(",")}`, provider: null, limits: routeLimits };
  };
}

function normalise(host: string): string {
  return host.toLowerCase().replace(/\.$/, "");
}

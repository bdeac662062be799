/**
 * The records Petrel asks an operator to publish for one sender domain, built from the
 * configuration and the domain's keys (src/dkim/records.ts renders and validates them).
 *
 * Which records count toward `verified` (issue 4): the DKIM record of every key that signs (or
 * will sign once a pending rotation is seen) and the return-path MX and SPF. The From-domain
 * SPF and DMARC are advice: many domains already have their own, and alignment holds through
 * DKIM and the return path without them.
 *
 * Sources of the SPF mechanisms, first that is set: `domains.spf.ips`, else the delivery engine's
 * egress pool (`delivery.sources`), plus `domains.spf.include`; with none of them, include:<hostname>
 * (the relay host then publishes its own SPF record), so `domains add` never needs a guess.
 */
import type { PetrelConfig } from "../config/schema.js";
import { type DnsRecordSpec, senderDomainRecords } from "../dkim/records.js";
import type { DkimKeyInfo } from "../store/types.js";
import type { ExpectedRecord } from "./verify.js";

/** The configuration this module reads (a subset, so tests can build one by hand). */
export type RecordsConfig = Pick<PetrelConfig, "hostname" | "domains" | "delivery">;

export function spfSources(config: RecordsConfig): { egressIps: string[]; spfInclude?: string } {
  const ips =
    config.domains.spf.ips.length > 0
      ? [...config.domains.spf.ips]
      : config.delivery.sources.map((source) => source.address);
  const include = config.domains.spf.include || (ips.length === 0 ? config.hostname : "");
  return include ? { egressIps: ips, spfInclude: include } : { egressIps: ips };
}

/**
 * Every record for the domain, DKIM first (one per key in `keys`, in order), then return path,
 * SPF and DMARC. Throws (with the field named) when the configuration makes an invalid record.
 */
export function domainRecords(
  config: RecordsConfig,
  domain: string,
  keys: ReadonlyArray<Pick<DkimKeyInfo, "selector" | "kind" | "publicKey">>,
): DnsRecordSpec[] {
  const records = senderDomainRecords({
    domain,
    selectors: keys.map((k) => ({ selector: k.selector, kind: k.kind, publicKeyBase64: k.publicKey })),
    bounceSubdomain: config.domains.returnPath.subdomain,
    inboundHost: config.domains.returnPath.inboundHost || config.hostname,
    ...spfSources(config),
    dmarcRua: config.domains.dmarcReports || `dmarc-reports@${domain}`,
  });
  const { spfInclude } = spfSources(config);
  if (spfInclude !== undefined && spfInclude === config.hostname && config.domains.spf.include === "") {
    return records.map((r) =>
      r.purpose === "return-path-spf" || r.purpose === "spf"
        ? {
            ...r,
            note:
              `${r.note ?? ""} include:${spfInclude} asks receivers for the SPF record of ${spfInclude}: ` +
              `publish one there listing Petrel's outbound addresses (e.g. "v=spf1 a -all"), or set ` +
              "domains.spf.ips (or delivery.sources) to list them here instead.",
          }
        : r,
    );
  }
  return records;
}

/**
 * The records a check compares, marked required or not. `keys` are the domain's active and
 * pending keys; `promoted` the pending selectors whose record is already published (they will
 * replace the active keys of their kind, so those are no longer required).
 */
export function expectedRecords(
  config: RecordsConfig,
  domain: string,
  keys: readonly DkimKeyInfo[],
  promoted: ReadonlySet<string> = new Set(),
): ExpectedRecord[] {
  const live = keys.filter((k) => k.state === "active" || k.state === "pending");
  const replacedKinds = new Set(live.filter((k) => promoted.has(k.selector)).map((k) => k.kind));
  const records = domainRecords(config, domain, live);
  return records.map((record, i) => {
    if (record.purpose !== "dkim") {
      return {
        ...record,
        required: record.purpose === "return-path-mx" || record.purpose === "return-path-spf",
      };
    }
    const key = live[i]!;
    const signs = key.state === "active" ? !replacedKinds.has(key.kind) : promoted.has(key.selector);
    return { ...record, required: signs };
  });
}

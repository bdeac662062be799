/**
 * Publishes a sender domain's records in the loopback test DNS server, the way an operator pastes
 * `petrel domains add --format zone` output into a zone: the zone text is parsed back
 * (parseZone), so TXT records keep the ≤255-byte character-strings the zone lines split them into.
 */
import { type DnsRecordSpec, formatZone, parseZone } from "../../src/dkim/records.js";
import type { NameRecords, TestDnsServer, ZoneMx } from "./dns-server.js";

interface Entry {
  TXT: string[][];
  MX: ZoneMx[];
}

/** name → records, from zone-file text (as printed by `domains add --format zone`). */
export function zoneToRecords(zone: string): Map<string, Entry> {
  const byName = new Map<string, Entry>();
  for (const r of parseZone(zone)) {
    const entry = byName.get(r.name) ?? { TXT: [], MX: [] };
    if (r.type === "TXT") entry.TXT.push([...(r.strings ?? [r.value])]);
    else {
      const [preference, exchange] = r.value.split(" ");
      entry.MX.push({ preference: Number(preference), exchange: exchange! });
    }
    byName.set(r.name, entry);
  }
  return byName;
}

/** Adds the zone's records to the server, beside records other names already have. */
export function publishZone(dns: TestDnsServer, zone: string): void {
  for (const [name, entry] of zoneToRecords(zone)) {
    const records: NameRecords = {
      ...(entry.TXT.length > 0 ? { TXT: entry.TXT } : {}),
      ...(entry.MX.length > 0 ? { MX: entry.MX } : {}),
    };
    dns.set(name, records);
  }
}

export function publishRecords(dns: TestDnsServer, records: readonly DnsRecordSpec[]): void {
  publishZone(dns, formatZone(records));
}

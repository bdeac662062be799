/**
 * The DNS records an operator publishes for a sender domain, as plain data, and three ways to
 * show them: a BIND zone fragment, JSON, and a table for terminals. `parseZone` reads the zone
 * text back, so tests (and `petrel` checks) can compare it with the data.
 *
 * Records: DKIM key per selector (RFC 6376 §3.6.1, Ed25519 RFC 8463); MX and SPF for the bounce
 * (return-path) subdomain, where VERP bounces come back; SPF for the From domain (RFC 7208);
 * DMARC (RFC 7489) starting at p=none.
 *
 * Invariants: names are absolute without the trailing dot (zone output adds it); MX values are
 * "<preference> <host>"; TXT values are the joined text, split into ≤255-byte character-strings
 * only when rendered (RFC 1035 §3.3.14); every input is validated, so no value can carry a
 * quote, newline or ";" into a zone file or a DKIM/SPF/DMARC tag list.
 * Security: inputs come from operators and the API; they are checked, never interpolated raw.
 */

import { isIP } from "node:net";
import { domainToASCII } from "node:url";
import type { DkimKeyKind } from "./keys.js";

export type DnsRecordPurpose = "dkim" | "return-path-mx" | "return-path-spf" | "spf" | "dmarc";

export interface DnsRecordSpec {
  /** Absolute owner name without the trailing dot, e.g. "s1._domainkey.example.com". */
  readonly name: string;
  readonly type: "TXT" | "MX";
  /** TXT: the whole text; MX: "<preference> <host>". */
  readonly value: string;
  readonly purpose: DnsRecordPurpose;
  readonly note?: string;
}

export interface SenderDomainInput {
  readonly domain: string;
  readonly selectors: readonly { selector: string; kind: DkimKeyKind; publicKeyBase64: string }[];
  /** Label(s) under the domain for the return path, e.g. "bounces". */
  readonly bounceSubdomain: string;
  /** Host that receives bounces (Petrel's inbound listener). */
  readonly inboundHost: string;
  /** Addresses (or CIDR ranges) Petrel sends from. */
  readonly egressIps: readonly string[];
  /** An SPF include (e.g. a provider's "_spf.example.net"), alongside or instead of the IPs. */
  readonly spfInclude?: string;
  /** Address for DMARC aggregate reports (rua). */
  readonly dmarcRua?: string;
}

const BOUNCE_MX_PREFERENCE = 10;
const TXT_STRING_MAX = 255;

/** Builds every record to publish, in the order an operator should add them. */
export function senderDomainRecords(input: SenderDomainInput): DnsRecordSpec[] {
  const domain = hostName(input.domain, "domain");
  const bounceDomain = hostName(`${input.bounceSubdomain}.${domain}`, "bounce subdomain");
  const inboundHost = hostName(input.inboundHost, "inbound host");
  const mechanisms = spfMechanisms(input.egressIps, input.spfInclude);
  const records: DnsRecordSpec[] = [];

  for (const { selector, kind, publicKeyBase64 } of input.selectors) {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(publicKeyBase64)) {
      throw new Error(`DKIM public key for selector "${selector}" is not base64`);
    }
    records.push({
      name: `${hostName(selector, "selector")}._domainkey.${domain}`,
      type: "TXT",
      value: `v=DKIM1; k=${kind}; p=${publicKeyBase64}`,
      purpose: "dkim",
      ...(kind === "ed25519"
        ? {
            note: "Ed25519 (RFC 8463) is not verified by every receiver yet; keep an RSA selector too and sign with both.",
          }
        : {}),
    });
  }
  records.push({
    name: bounceDomain,
    type: "MX",
    value: `${BOUNCE_MX_PREFERENCE} ${inboundHost}`,
    purpose: "return-path-mx",
    note: `Bounces to the return path (…@${bounceDomain}) come back to ${inboundHost}.`,
  });
  records.push({
    name: bounceDomain,
    type: "TXT",
    value: `v=spf1 ${mechanisms} -all`,
    purpose: "return-path-spf",
    note: "Only Petrel sends with this return path, so -all (fail) is safe here.",
  });
  records.push({
    name: domain,
    type: "TXT",
    value: `v=spf1 ${mechanisms} ~all`,
    purpose: "spf",
    note:
      "A domain may have only one v=spf1 record (RFC 7208 §3.2): if one exists, add these mechanisms to it " +
      "instead. ~all (softfail) leaves room for other services sending as this domain.",
  });
  const rua = input.dmarcRua === undefined ? "" : `; rua=mailto:${mailbox(input.dmarcRua)}`;
  records.push({
    name: `_dmarc.${domain}`,
    type: "TXT",
    value: `v=DMARC1; p=none${rua}`,
    purpose: "dmarc",
    note:
      "Start at p=none and read the aggregate reports; when all legitimate mail passes aligned DKIM or SPF, " +
      "move to p=quarantine, then p=reject.",
  });
  return records;
}

/** Splits a TXT value into character-strings of at most 255 bytes, never inside a UTF-8 character. */
export function splitTxtValue(value: string): string[] {
  const parts: string[] = [];
  let current = "";
  let bytes = 0;
  for (const char of value) {
    const size = Buffer.byteLength(char, "utf8");
    if (bytes + size > TXT_STRING_MAX) {
      parts.push(current);
      current = "";
      bytes = 0;
    }
    current += char;
    bytes += size;
  }
  parts.push(current);
  return parts;
}

/** RFC 1035 §5.1 quoting: backslash and quote escaped, other non-printables as \DDD. */
function quoteTxt(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`;
    else if (byte < 0x20 || byte > 0x7e) out += `\\${String(byte).padStart(3, "0")}`;
    else out += String.fromCharCode(byte);
  }
  return `"${out}"`;
}

/** BIND zone-file lines, each record under a comment with its purpose and note. */
export function formatZone(records: readonly DnsRecordSpec[], options: { ttl?: number } = {}): string {
  const ttl = options.ttl ?? 3600;
  const lines: string[] = [];
  for (const r of records) {
    lines.push(`; ${r.purpose}${r.note === undefined ? "" : `: ${r.note}`}`);
    const rdata =
      r.type === "TXT"
        ? splitTxtValue(r.value).map(quoteTxt).join(" ")
        : r.value.replace(/ (\S+)$/, (_m, host: string) => ` ${host}.`);
    lines.push(`${r.name}. ${ttl} IN ${r.type} ${rdata}`);
  }
  return `${lines.join("\n")}\n`;
}

export function formatJson(records: readonly DnsRecordSpec[]): string {
  return `${JSON.stringify(records, null, 2)}\n`;
}

/** A plain-text table; values are shown whole (operators copy them), notes as footnotes. */
export function formatTable(records: readonly DnsRecordSpec[]): string {
  const notes: string[] = [];
  const rows = records.map((r) => {
    let purpose: string = r.purpose;
    if (r.note !== undefined) {
      notes.push(r.note);
      purpose += ` [${notes.length}]`;
    }
    return [purpose, r.type, r.name, r.value] as const;
  });
  const header = ["PURPOSE", "TYPE", "NAME", "VALUE"] as const;
  const widths = [0, 1, 2].map((i) => Math.max(header[i]!.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i < 3 ? cell.padEnd(widths[i]!) : cell))
      .join("  ")
      .trimEnd();
  const out = [line(header), line(widths.map((w) => "-".repeat(w)).concat("-----")), ...rows.map(line)];
  if (notes.length > 0) out.push("", ...notes.map((n, i) => `[${i + 1}] ${n}`));
  return `${out.join("\n")}\n`;
}

export interface ParsedZoneRecord {
  readonly name: string;
  readonly ttl: number;
  readonly type: string;
  /** TXT: the character-strings joined; MX: "<preference> <host>" without the dot. */
  readonly value: string;
  /** TXT only: the character-strings as written. */
  readonly strings?: readonly string[];
}

/** Parses one "name. ttl IN TYPE rdata" line; null for blank and comment lines. */
export function parseZoneLine(line: string): ParsedZoneRecord | null {
  const trimmed = line.trim();
  if (trimmed === "" || trimmed.startsWith(";")) return null;
  const m = /^(\S+)\s+(\d+)\s+IN\s+(TXT|MX)\s+(.*)$/.exec(trimmed);
  if (!m) throw new Error(`Unsupported zone line: ${line}`);
  const [, owner = "", ttl = "", type = "", rdata = ""] = m;
  const name = owner.replace(/\.$/, "");
  if (type === "MX") {
    const mx = /^(\d+)\s+(\S+?)\.?$/.exec(rdata);
    if (!mx) throw new Error(`Bad MX data: ${rdata}`);
    return { name, ttl: Number(ttl), type, value: `${mx[1]} ${mx[2]}` };
  }
  const strings = parseQuotedStrings(rdata);
  return { name, ttl: Number(ttl), type, value: strings.join(""), strings };
}

export function parseZone(text: string): ParsedZoneRecord[] {
  return text.split("\n").flatMap((line) => parseZoneLine(line) ?? []);
}

/** Reads `"…" "…"` with RFC 1035 §5.1 escapes back into UTF-8 strings. */
function parseQuotedStrings(rdata: string): string[] {
  const strings: string[] = [];
  let i = 0;
  while (i < rdata.length) {
    if (rdata[i] === " " || rdata[i] === "\t") {
      i++;
      continue;
    }
    if (rdata[i] !== '"') throw new Error(`Expected a quoted string in: ${rdata}`);
    const bytes: number[] = [];
    i++;
    while (i < rdata.length && rdata[i] !== '"') {
      if (rdata[i] === "\\") {
        const digits = /^\d{3}/.exec(rdata.slice(i + 1, i + 4));
        if (digits) {
          bytes.push(Number(digits[0]));
          i += 4;
        } else {
          bytes.push(rdata.charCodeAt(i + 1));
          i += 2;
        }
      } else {
        bytes.push(rdata.charCodeAt(i));
        i++;
      }
    }
    if (rdata[i] !== '"') throw new Error(`Unterminated string in: ${rdata}`);
    i++;
    strings.push(Buffer.from(bytes).toString("utf8"));
  }
  return strings;
}

/** A-label host name with letter/digit/hyphen/underscore labels; throws otherwise. */
function hostName(value: string, what: string): string {
  const ascii = domainToASCII(value.trim().replace(/\.$/, ""));
  const ok =
    ascii.length > 0 &&
    ascii.length <= 253 &&
    ascii.split(".").every((label) => /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label));
  if (!ok) throw new Error(`Invalid ${what} "${value}"`);
  return ascii;
}

function spfMechanisms(ips: readonly string[], include: string | undefined): string {
  const out: string[] = [];
  for (const ip of ips) {
    const [address = "", prefix, ...rest] = ip.trim().split("/");
    const family = isIP(address);
    const max = family === 4 ? 32 : 128;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= max);
    if (family === 0 || rest.length > 0 || !prefixOk) throw new Error(`Invalid egress IP "${ip}"`);
    out.push(`ip${family}:${address}${prefix === undefined ? "" : `/${prefix}`}`);
  }
  if (include !== undefined) out.push(`include:${hostName(include, "SPF include")}`);
  if (out.length === 0) throw new Error("SPF needs at least one egress IP or an include");
  return out.join(" ");
}

/**
 * The rua address, checked to be one plain addr-spec. The local part is kept to characters with
 * no meaning in a DMARC tag list or mailto URI ("!" is the size suffix, "," the list separator).
 */
function mailbox(value: string): string {
  const address = value.trim().replace(/^mailto:/i, "");
  const at = address.lastIndexOf("@");
  if (at < 1 || !/^[A-Za-z0-9._%+-]+$/.test(address.slice(0, at))) {
    throw new Error(`Invalid DMARC report address "${value}"`);
  }
  return `${address.slice(0, at)}@${hostName(address.slice(at + 1), "DMARC report domain")}`;
}

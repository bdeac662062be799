/**
 * Checks a sender domain's published DNS records against the ones Petrel asked for: per record
 * found and matching, missing, different (with what was found), or not checkable (DNS tempfail).
 *
 * Matching is by meaning, not by text: DKIM compares the k= and p= tags (whitespace in p= is
 * allowed, RFC 6376 §3.6.1); SPF requires each expected mechanism in the one v=spf1 record
 * (operators merge ours into their record, RFC 7208 §3.2 allows one); the return-path MX must
 * list the inbound host; DMARC only has to exist (its policy is the operator's choice).
 * SPF is compared, not evaluated: an include that happens to cover our addresses shows as
 * different, with the record found, so the operator can judge.
 *
 * Invariants: pure over the resolver's answers (the DnsResolver gives outcomes as data); every
 * expected record yields exactly one RecordCheck, in the order given.
 * Security: TXT data is untrusted; it is only compared and echoed (shortened) in reports.
 */
import type { DnsRecordSpec } from "../dkim/records.js";
import type { DnsAnswer, DnsResolver } from "../dns/types.js";
import type { RecordCheck, RecordCheckResult } from "../store/types.js";

/** A record to check, with whether it counts toward `verified`. */
export interface ExpectedRecord extends DnsRecordSpec {
  readonly required: boolean;
}

/** Longest found value echoed in a report: DKIM keys are long, and the text is untrusted. */
const ECHO_MAX = 600;

export async function checkRecords(
  resolver: DnsResolver,
  expected: readonly ExpectedRecord[],
): Promise<RecordCheck[]> {
  return Promise.all(expected.map((record) => checkRecord(resolver, record)));
}

async function checkRecord(resolver: DnsResolver, record: ExpectedRecord): Promise<RecordCheck> {
  const base = {
    name: record.name,
    type: record.type,
    purpose: record.purpose,
    required: record.required,
    expected: record.value,
  };
  if (record.type === "MX") {
    const answer = await resolver.resolveMx(record.name);
    if (answer.kind !== "ok") return { ...base, ...notOk(answer) };
    const found = answer.records.map((mx) => `${mx.preference} ${mx.exchange}`);
    return { ...base, found, ...compareMx(record.value, answer.records) };
  }
  const answer = await resolver.resolveTxt(record.name);
  if (answer.kind !== "ok") return { ...base, ...notOk(answer) };
  const compare =
    record.purpose === "dkim" ? compareDkim : record.purpose === "dmarc" ? compareDmarc : compareSpf;
  const { result, detail, relevant } = compare(record.value, answer.records);
  return { ...base, found: relevant.map(echo), result, ...(detail === undefined ? {} : { detail }) };
}

function notOk(answer: Exclude<DnsAnswer<unknown>, { kind: "ok" }>): {
  found: string[];
  result: RecordCheckResult;
  detail: string;
} {
  if (answer.kind === "nxdomain") return { found: [], result: "missing", detail: "the name does not exist" };
  return { found: [], result: "tempfail", detail: `DNS lookup failed: ${answer.reason}` };
}

interface Comparison {
  readonly result: RecordCheckResult;
  readonly detail?: string;
  /** The found values that matter for this record (shown in the report). */
  readonly relevant: readonly string[];
}

/** Tag list of a DKIM key record (RFC 6376 §3.2): names lower-cased, values trimmed. */
export function parseTags(text: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of text.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    tags.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return tags;
}

export function compareDkim(expected: string, found: readonly string[]): Comparison {
  const want = parseTags(expected);
  const wantKey = (want.get("p") ?? "").replace(/\s+/g, "");
  const wantKind = want.get("k") ?? "rsa";
  // A selector's name may hold other TXT records; only key records count (v=DKIM1 or a p= tag).
  const keys = found.filter((text) => {
    const tags = parseTags(text);
    return tags.has("p") || (tags.get("v") ?? "").toUpperCase() === "DKIM1";
  });
  if (keys.length === 0) {
    return {
      result: "missing",
      relevant: found,
      ...(found.length > 0 ? { detail: "no DKIM key record" } : {}),
    };
  }
  const several = keys.length > 1 ? "; several key records at one selector: verifiers may use any" : "";
  for (const text of keys) {
    const tags = parseTags(text);
    const key = (tags.get("p") ?? "").replace(/\s+/g, "");
    const kind = (tags.get("k") ?? "rsa").toLowerCase();
    const version = tags.get("v");
    if (
      key === wantKey &&
      kind === wantKind &&
      (version === undefined || version.toUpperCase() === "DKIM1")
    ) {
      return { result: "match", relevant: keys, ...(several ? { detail: several.slice(2) } : {}) };
    }
  }
  const tags = parseTags(keys[0]!);
  const key = (tags.get("p") ?? "").replace(/\s+/g, "");
  let why = "p= is a different public key";
  if (key === "") why = "p= is empty (the key is revoked)";
  else if ((tags.get("k") ?? "rsa").toLowerCase() !== wantKind)
    why = `k=${tags.get("k") ?? "rsa"}, expected k=${wantKind}`;
  else if (key === wantKey) why = `v=${tags.get("v")}, expected v=DKIM1`;
  return { result: "different", detail: why + several, relevant: keys };
}

/** The mechanisms and modifiers of an SPF record, without v=spf1 and the all term. */
function spfTerms(record: string): string[] {
  return record
    .trim()
    .split(/\s+/)
    .slice(1)
    .map((term) => term.toLowerCase().replace(/^\+/, ""))
    .filter((term) => !/^[~?-]?all$/.test(term));
}

function isSpf(text: string): boolean {
  return /^v=spf1(\s|$)/i.test(text.trim());
}

export function compareSpf(expected: string, found: readonly string[]): Comparison {
  const records = found.filter(isSpf);
  if (records.length === 0) return { result: "missing", relevant: [] };
  if (records.length > 1) {
    return {
      result: "different",
      detail: "several v=spf1 records: receivers treat that as a permanent error (RFC 7208 §4.5); merge them",
      relevant: records,
    };
  }
  const have = new Set(spfTerms(records[0]!));
  const lacking = spfTerms(expected).filter((term) => !have.has(term));
  if (lacking.length === 0) return { result: "match", relevant: records };
  return { result: "different", detail: `missing ${lacking.join(" ")}`, relevant: records };
}

export function compareDmarc(_expected: string, found: readonly string[]): Comparison {
  const records = found.filter((text) => /^v=DMARC1\s*(;|$)/i.test(text.trim()));
  if (records.length === 0) return { result: "missing", relevant: [] };
  if (records.length > 1) {
    return {
      result: "different",
      detail: "several DMARC records: receivers ignore them all",
      relevant: records,
    };
  }
  const policy = parseTags(records[0]!).get("p") ?? "(none given)";
  return { result: "match", detail: `policy p=${policy}`, relevant: records };
}

export function compareMx(
  expected: string,
  found: ReadonlyArray<{ readonly preference: number; readonly exchange: string }>,
): { result: RecordCheckResult; detail?: string } {
  const host = expected.split(" ")[1]?.toLowerCase() ?? "";
  if (found.length === 0) return { result: "missing" };
  if (found.some((mx) => mx.exchange.toLowerCase() === host)) return { result: "match" };
  return { result: "different", detail: `no MX points at ${host}` };
}

/** pass: every required record matches; fail: one is missing or different; else unknown. */
export function outcomeOf(checks: readonly RecordCheck[]): "pass" | "fail" | "unknown" {
  const required = checks.filter((c) => c.required);
  if (required.some((c) => c.result === "missing" || c.result === "different")) return "fail";
  if (required.some((c) => c.result === "tempfail")) return "unknown";
  return "pass";
}

function echo(text: string): string {
  const printable = text.replace(/[^\x20-\x7e]/g, "?");
  return printable.length > ECHO_MAX ? `${printable.slice(0, ECHO_MAX)}…` : printable;
}

/**
 * Sender domains with DKIM (issue 4): add a domain with its keys, list the records to publish,
 * verify them through the configured resolver, rotate keys and retire old selectors. The CLI and
 * `serve` (the periodic re-check) both go through here; the HTTP API will too.
 *
 * Key life cycle: `domains add` creates generation 1 (RSA 2048, plus Ed25519 when dkim.ed25519)
 * as active keys. `rotate-dkim` creates generation n+1 as pending: Petrel keeps signing with the
 * active keys until a check finds the new record published, then the pending key becomes active
 * and the old key of its kind retired, in one store transaction. `retire-selector` deletes a key
 * that no longer signs (or a pending one, to abandon a rotation) — never the last active key.
 *
 * Invariants: selectors are <dkim.selectorPrefix><generation> (RSA) and …-ed25519, never reused;
 * keys are generated before any store write, so a failed generation leaves nothing behind.
 * Security: private keys leave this module only through exportKey() (on purpose, for migration)
 * and the signing path; results, errors and logs carry selectors and public keys only.
 */
import type { PetrelConfig } from "../config/schema.js";
import { type DkimKey, type DkimKeyKind, generateDkimKey } from "../dkim/keys.js";
import type { DnsRecordSpec } from "../dkim/records.js";
import type { DnsResolver } from "../dns/types.js";
import { PetrelError } from "../errors.js";
import type {
  DkimKeyInfo,
  DomainCheckChange,
  NewDkimKey,
  RecordCheck,
  SenderDomain,
  SenderDomainDetail,
  Store,
} from "../store/types.js";
import { domainRecords, expectedRecords } from "./records.js";
import { checkRecords, outcomeOf } from "./verify.js";

export type DomainsServiceConfig = Pick<PetrelConfig, "hostname" | "domains" | "delivery" | "dkim">;

export interface DomainsServiceDeps {
  readonly store: Store;
  readonly config: DomainsServiceConfig;
  /** Needed by verify() only; CLI commands that never look anything up leave it out. */
  readonly resolver?: DnsResolver;
  readonly now?: () => number;
}

export interface VerifyReport {
  readonly domain: string;
  readonly outcome: "pass" | "fail" | "unknown";
  readonly checks: readonly RecordCheck[];
  readonly change: DomainCheckChange;
}

export interface RotateResult {
  readonly keys: readonly DkimKeyInfo[];
  /** The DKIM records of the new keys. */
  readonly records: readonly DnsRecordSpec[];
  /** True when the domain had no active key, so the new keys sign at once. */
  readonly immediate: boolean;
}

export class DomainsService {
  private readonly store: Store;
  private readonly config: DomainsServiceConfig;
  private readonly resolver: DnsResolver | undefined;
  private readonly now: () => number;

  constructor(deps: DomainsServiceDeps) {
    this.store = deps.store;
    this.config = deps.config;
    this.resolver = deps.resolver;
    this.now = deps.now ?? Date.now;
  }

  /** Creates the domain for the account with its first keys; returns the records to publish. */
  async add(accountId: number, domain: string): Promise<{ domain: SenderDomain; records: DnsRecordSpec[] }> {
    const name = domain.toLowerCase();
    const keys = await this.newKeys(1, "active");
    // Build the records before writing: a configuration that makes an invalid record fails here.
    const records = domainRecords(this.config, name, keys);
    const added = await this.store.addDomainWithKeys(accountId, name, keys);
    return { domain: added, records };
  }

  async get(domain: string): Promise<SenderDomainDetail> {
    const detail = await this.store.getDomain(domain);
    if (!detail)
      throw new PetrelError("not-found", `no domain ${domain} (add it with: petrel domains add ${domain})`);
    return detail;
  }

  async keys(domain: string): Promise<DkimKeyInfo[]> {
    await this.get(domain);
    return this.store.listDkimKeys(domain);
  }

  /** Every record to publish now: the DKIM records of active and pending keys, then the rest. */
  async records(domain: string): Promise<DnsRecordSpec[]> {
    const keys = (await this.keys(domain)).filter((k) => k.state !== "retired");
    return domainRecords(this.config, domain.toLowerCase(), keys);
  }

  /** Adds the next generation of keys, pending (or active when nothing signs yet). */
  async rotate(domain: string): Promise<RotateResult> {
    const detail = await this.get(domain);
    const existing = await this.store.listDkimKeys(detail.domain);
    const immediate = !existing.some((k) => k.state === "active");
    const generation = detail.dkimGeneration + 1;
    const keys = await this.newKeys(generation, immediate ? "active" : "pending");
    await this.store.addDkimKeys(detail.domain, generation, keys);
    const added = (await this.store.listDkimKeys(detail.domain)).filter((k) => k.generation === generation);
    const records = domainRecords(this.config, detail.domain, added).filter((r) => r.purpose === "dkim");
    return { keys: added, records, immediate };
  }

  /** Deletes a key that does not sign any more, or a pending one; refuses the last active key. */
  async retireSelector(domain: string, selector: string): Promise<DkimKeyInfo> {
    const keys = await this.keys(domain);
    const key = keys.find((k) => k.selector === selector);
    if (!key) throw new PetrelError("not-found", `${domain} has no DKIM selector ${selector}`);
    if (key.state === "active" && !keys.some((k) => k.state === "active" && k.id !== key.id)) {
      throw new PetrelError(
        "conflict",
        `${selector} is the only key signing for ${domain}; rotate first (petrel domains rotate-dkim ${domain}) ` +
          "and retire it once verify has switched to the new selector",
      );
    }
    await this.store.deleteDkimKey(key.domain, selector);
    return key;
  }

  /** The private key PEM of one selector, for moving a domain to another system. A secret. */
  async exportKey(domain: string, selector?: string): Promise<{ selector: string; pem: string }> {
    const keys = await this.keys(domain);
    const key =
      selector === undefined
        ? keys.find((k) => k.state === "active" && k.kind === "rsa")
        : keys.find((k) => k.selector === selector);
    if (!key)
      throw new PetrelError(
        "not-found",
        `${domain} has no ${selector === undefined ? "active RSA key" : `selector ${selector}`}`,
      );
    const pem = await this.store.getDkimPrivateKey(key.domain, key.selector);
    if (pem === undefined) throw new PetrelError("not-found", `${domain} has no selector ${key.selector}`);
    return { selector: key.selector, pem };
  }

  /**
   * Looks every record up, records the result and the status it leads to, and switches to a
   * pending key whose record is now published.
   */
  async verify(domain: string): Promise<VerifyReport> {
    if (!this.resolver) throw new Error("DomainsService.verify needs a resolver");
    const detail = await this.get(domain);
    const keys = await this.store.listDkimKeys(detail.domain);
    if (!keys.some((k) => k.state === "active" || k.state === "pending")) {
      throw new PetrelError(
        "conflict",
        `${detail.domain} has no DKIM key; create one with: petrel domains rotate-dkim ${detail.domain}`,
      );
    }
    const at = this.now();
    const firstPass = await checkRecords(this.resolver, expectedRecords(this.config, detail.domain, keys));
    const promoted = new Set(
      keys
        .filter((k, i) => k.state === "pending" && firstPass[indexOfKey(keys, i)]?.result === "match")
        .map((k) => k.selector),
    );
    // Same lookups; only which DKIM records are required changes once a pending key takes over.
    const required = expectedRecords(this.config, detail.domain, keys, promoted);
    const checks = firstPass.map((check, i) => ({ ...check, required: required[i]!.required }));
    const outcome = outcomeOf(checks);
    const change = await this.store.recordDomainCheck({
      domain: detail.domain,
      at,
      outcome,
      records: checks,
      promote: [...promoted],
    });
    return { domain: detail.domain, outcome, checks, change };
  }

  private async newKeys(generation: number, state: "active" | "pending"): Promise<NewDkimKey[]> {
    const kinds: DkimKeyKind[] = this.config.dkim.ed25519 ? ["rsa", "ed25519"] : ["rsa"];
    const generated: DkimKey[] = await Promise.all(kinds.map((kind) => generateDkimKey(kind)));
    const prefix = this.config.dkim.selectorPrefix;
    return generated.map((key) => ({
      selector: `${prefix}${generation}${key.kind === "ed25519" ? "-ed25519" : ""}`,
      kind: key.kind,
      privateKeyPem: key.privateKeyPem,
      publicKey: key.publicKeyBase64,
      state,
    }));
  }
}

/**
 * Index of key i's DKIM record in the check list: expectedRecords() lists the live (active and
 * pending) keys' records first, in key order, so count the live keys before it.
 */
function indexOfKey(keys: readonly DkimKeyInfo[], i: number): number {
  let index = 0;
  for (let j = 0; j < i; j++) if (keys[j]!.state !== "retired") index++;
  return keys[i]!.state === "retired" ? -1 : index;
}

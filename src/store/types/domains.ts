/**
 * Store part: sender identities (issue 4): sender domains with their DKIM keys, DNS checks and
 * status events, and single sender addresses.
 * Invariants: a sender domain or single sender belongs to exactly one account; a domain's DKIM
 * generation only grows, so a selector name is never reused.
 * Security: private keys are returned only by getSigningKeys() and getDkimPrivateKey(); listings
 * never carry them.
 */

export interface SenderDomain {
  readonly id: number;
  readonly accountId: number;
  readonly accountName: string;
  readonly domain: string;
  readonly status: "unverified" | "verified" | "failing";
  readonly createdAt: number;
  readonly lastCheckedAt: number | null;
}

export interface SingleSender {
  readonly id: number;
  readonly accountId: number;
  readonly accountName: string;
  readonly address: string;
  readonly createdAt: number;
}

/** What an account may send as: its domains (any local part) and its single addresses. */
export interface SenderIdentities {
  readonly domains: ReadonlySet<string>;
  readonly addresses: ReadonlySet<string>;
}

export type DomainStatus = SenderDomain["status"];
export type DkimKeyKindName = "rsa" | "ed25519";
export type DkimKeyState = "pending" | "active" | "retired";

export interface NewDkimKey {
  readonly selector: string;
  readonly kind: DkimKeyKindName;
  /** PKCS#8 PEM. A secret. */
  readonly privateKeyPem: string;
  /** Base64 for the DNS record's p= tag. */
  readonly publicKey: string;
  readonly state: "pending" | "active";
}

/** A key as listings and the API show it: no private key. */
export interface DkimKeyInfo {
  readonly id: number;
  readonly domain: string;
  readonly selector: string;
  readonly kind: DkimKeyKindName;
  readonly publicKey: string;
  readonly state: DkimKeyState;
  /** Key generation: 1 for the keys made by `domains add`, +1 per rotation. */
  readonly generation: number;
  readonly createdAt: number;
  readonly activatedAt: number | null;
  readonly retiredAt: number | null;
}

export interface DkimSigningKey {
  readonly id: number;
  readonly selector: string;
  readonly kind: DkimKeyKindName;
  /** PKCS#8 PEM. A secret: never log it. */
  readonly privateKeyPem: string;
}

export interface SigningKeys {
  readonly status: DomainStatus;
  /** Active keys, RSA first. */
  readonly keys: readonly DkimSigningKey[];
}

export type RecordCheckResult = "match" | "missing" | "different" | "tempfail";

/** One DNS record as a check found it. */
export interface RecordCheck {
  readonly name: string;
  readonly type: "TXT" | "MX";
  /** dkim, return-path-mx, return-path-spf, spf, dmarc. */
  readonly purpose: string;
  /** DKIM of active keys and the return path are required for `verified`; the rest is advice. */
  readonly required: boolean;
  readonly expected: string;
  /** The values found at the name (the relevant ones: v=spf1 TXT for SPF, and so on). */
  readonly found: readonly string[];
  readonly result: RecordCheckResult;
  /** Why it is different or could not be checked. */
  readonly detail?: string;
}

export interface DomainCheck {
  readonly domain: string;
  readonly at: number;
  /** pass: every required record matches; fail: one is missing or different; unknown: DNS failed. */
  readonly outcome: "pass" | "fail" | "unknown";
  readonly records: readonly RecordCheck[];
  /** Selectors of pending keys whose record was found: they become the active keys. */
  readonly promote: readonly string[];
}

export interface DomainCheckChange {
  readonly previous: DomainStatus;
  readonly status: DomainStatus;
  /** Selectors that became active, and those retired by the switch. */
  readonly activated: readonly string[];
  readonly retired: readonly string[];
}

export interface SenderDomainDetail extends SenderDomain {
  /** Highest key generation so far (selectors are never reused). */
  readonly dkimGeneration: number;
  readonly verifiedAt: number | null;
  /** The per-record results of the last check, [] before the first. */
  readonly lastCheck: readonly RecordCheck[];
}

export interface DomainEvent {
  readonly domain: string;
  readonly at: number;
  readonly fromStatus: DomainStatus;
  readonly toStatus: DomainStatus;
  readonly detail: string;
}

export interface DomainStore {
  /** Throws StoreConflictError when the domain already belongs to an account. */
  addDomain(accountId: number, domain: string): Promise<SenderDomain>;
  removeDomain(domain: string): Promise<boolean>;
  listDomains(accountId?: number): Promise<SenderDomain[]>;
  /** Throws StoreConflictError when the address, or its domain, belongs to another account. */
  addSender(accountId: number, address: string): Promise<SingleSender>;
  removeSender(address: string): Promise<boolean>;
  listSenders(accountId?: number): Promise<SingleSender[]>;
  getSenderIdentities(accountId: number): Promise<SenderIdentities>;

  // A domain's keys: `active` ones sign, `pending` ones (a rotation) wait until a check sees their
  // record, `retired` ones no longer sign but stay until the operator removes them.

  /** The domain with its DKIM generation and last check, or undefined. */
  getDomain(domain: string): Promise<SenderDomainDetail | undefined>;
  /** addDomain() and the first keys (generation 1, state active) in one transaction. */
  addDomainWithKeys(accountId: number, domain: string, keys: readonly NewDkimKey[]): Promise<SenderDomain>;
  /** Adds keys of a new generation; StoreConflictError if the domain already reached it. */
  addDkimKeys(domain: string, generation: number, keys: readonly NewDkimKey[]): Promise<void>;
  /** Every key of a domain (any state), oldest first, without private keys. */
  listDkimKeys(domain: string): Promise<DkimKeyInfo[]>;
  /**
   * The domain's status and active keys with their private keys (for signing only; never log
   * them); undefined when the domain is not a sender domain.
   */
  getSigningKeys(domain: string): Promise<SigningKeys | undefined>;
  /** One key's private key PEM (for `petrel domains export-key`). */
  getDkimPrivateKey(domain: string, selector: string): Promise<string | undefined>;
  /** Deletes one key; false when the domain has no such selector. */
  deleteDkimKey(domain: string, selector: string): Promise<boolean>;
  /** Status of each of the account's sender domains. */
  getDomainStatuses(accountId: number): Promise<ReadonlyMap<string, DomainStatus>>;
  /**
   * Records a check in one transaction: per-record results and time; the status (pass →
   * verified; fail → failing if it was verified or failing, else unverified; unknown → as it
   * was); pending keys in `promote` become active and the other active keys of their kind
   * retire; a status change or key switch appends a DomainEvent.
   */
  recordDomainCheck(check: DomainCheck): Promise<DomainCheckChange>;
  /** Domains a periodic check should look at: verified, failing or with pending keys, checked before `before`. */
  listDomainsToRecheck(before: number): Promise<string[]>;
  /** A domain's events, newest first. */
  listDomainEvents(domain: string, limit?: number): Promise<DomainEvent[]>;
}

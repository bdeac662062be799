/**
 * May this account send as this address? An account sends only as its sender domains (any local
 * part) and its single sender addresses. The same rule applies to the envelope sender at MAIL
 * FROM and to every address in the From and Sender header fields at the end of DATA, so that a
 * key can never put another account's domain in front of a recipient.
 */
import { domainOf, normalizeAddress } from "../address.js";
import type { DomainStatus, SenderIdentities } from "../store/types.js";
import { ACCEPT, reject, type Verdict } from "./verdict.js";

export function isVerifiedSender(identities: SenderIdentities, address: string): boolean {
  const domain = domainOf(address);
  if (domain === "") return false;
  return identities.domains.has(domain) || identities.addresses.has(normalizeAddress(address));
}

export function checkEnvelopeSender(identities: SenderIdentities, mailFrom: string): Verdict {
  if (mailFrom === "") {
    // Bounces are Petrel's own job; a submitting application has no reason to send a null sender.
    return reject(550, "5.7.1", "Sender address not verified", "null reverse-path from a submission client");
  }
  if (isVerifiedSender(identities, mailFrom)) return ACCEPT;
  return reject(550, "5.7.1", "Sender address not verified", `envelope sender ${mailFrom} is not verified`);
}

export interface HeaderSenders {
  /** Addresses of every From field (one field expected, RFC 5322 §3.6). */
  readonly from: readonly string[];
  /** Number of From fields found. */
  readonly fromFields: number;
  readonly sender: readonly string[];
}

export function checkHeaderSenders(identities: SenderIdentities, headers: HeaderSenders): Verdict {
  if (headers.fromFields === 0 || headers.from.length === 0) {
    return reject(550, "5.6.0", "Message has no From address", "no From header field with an address");
  }
  if (headers.fromFields > 1) {
    // RFC 5322 §3.6 allows one From field; DMARC receivers reject more (RFC 7489 §6.6.1).
    return reject(550, "5.6.0", "Message has more than one From header field", "several From fields");
  }
  for (const address of [...headers.from, ...headers.sender]) {
    if (!isVerifiedSender(identities, address)) {
      return reject(550, "5.7.1", "Sender address not verified", `header sender ${address} is not verified`);
    }
  }
  return ACCEPT;
}

/**
 * sending.requireVerifiedDomains (issue 4): an address at a sender domain that was added but not
 * verified yet is refused, unless the address itself is a single sender (those work without DNS).
 * `failing` domains (verified once, a later re-check found a record changed) keep sending: the
 * re-check logs and records the change for the operator, and one DNS mishap should not stop an
 * application's mail. Call with the envelope sender at MAIL FROM and the From/Sender addresses
 * at the end of DATA. The reply names the domain (one of the account's own) and the fix.
 */
export function checkDomainsVerified(
  identities: SenderIdentities,
  statuses: ReadonlyMap<string, DomainStatus>,
  addresses: readonly string[],
): Verdict {
  for (const address of addresses) {
    const domain = domainOf(address);
    if (statuses.get(domain) !== "unverified" || identities.addresses.has(normalizeAddress(address)))
      continue;
    return reject(
      550,
      "5.7.1",
      `Sender domain ${domain} is not verified: the Petrel operator must publish its DNS records and run: petrel domains verify ${domain}`,
      `sender domain ${domain} of ${address} is not verified`,
    );
  }
  return ACCEPT;
}

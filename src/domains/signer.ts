/**
 * DKIM signing on the accept path: `onData` hands the finished message (trace fields added) and
 * its From domain here, just before the spool commit, so a message is signed exactly once and a
 * retry delivers the same bytes (issue 4). It signs with the domain's active keys once the domain
 * has been verified (status verified, or failing since); other mail passes through as is.
 *
 * The domain's active keys are read from the store for every message (one indexed query), so a
 * key switch made by `petrel domains verify` in another process applies to the next message
 * without a restart. Parsed keys are cached by the set of key ids, because parsing a PEM RSA key
 * costs about as much as a signature; the RSA/Ed25519 work itself runs in libuv's thread pool
 * (src/dkim/sign.ts), not on the event loop.
 *
 * Invariants: a signing failure is an error for the caller (which answers 451 and keeps nothing),
 * never a silently unsigned message. A verified (or failing) domain always signs: with no usable
 * active key — none left, or one that does not parse — the message is refused with a
 * SigningUnavailableError naming the domain, and `stats.refused` counts it (issue 13 item 7);
 * only an unverified domain, or an address that is no sender domain, passes unsigned.
 * Security: private keys go from the store to createMessageSigner only; errors name the
 * selector and domain, never the key.
 */
import { createMessageSigner } from "../dkim/sign.js";
import type { Store } from "../store/types.js";

export interface SignResult {
  readonly content: Buffer;
  /** Selectors that signed ([] = the domain has no active key). */
  readonly selectors: readonly string[];
}

/** Counters for /metrics. */
export interface SigningStats {
  /** Messages of a verified domain refused (451 4.3.0) because no key could sign them. */
  refused: number;
}

export interface MessageSigning {
  readonly stats: SigningStats;
  /** `lookups`: where to read the domain's keys (default: the store given at creation; or a message's lookup view). */
  sign(fromDomain: string, content: Buffer, lookups?: Pick<Store, "getSigningKeys">): Promise<SignResult>;
}

/** A verified domain's mail cannot be signed: the caller answers 451 4.3.0 and keeps nothing. */
export class SigningUnavailableError extends Error {
  constructor(
    readonly domain: string,
    why: string,
    options?: { cause?: unknown },
  ) {
    const detail = options?.cause instanceof Error ? `: ${options.cause.message}` : "";
    super(`DKIM signing unavailable for ${domain}: ${why}${detail}`, options);
    this.name = "SigningUnavailableError";
  }
}

type Signer = ReturnType<typeof createMessageSigner>;

/** Domains whose parsed keys stay in memory; beyond this the cache starts over. */
const MAX_CACHED_DOMAINS = 10_000;

export function createMessageSigning(store: Pick<Store, "getSigningKeys">): MessageSigning {
  const cache = new Map<
    string,
    { readonly ids: string; readonly sign: Signer; readonly selectors: string[] }
  >();
  const stats: SigningStats = { refused: 0 };
  const unavailable = (domain: string, why: string, cause?: unknown): never => {
    stats.refused++;
    throw new SigningUnavailableError(domain, why, { cause });
  };
  return {
    stats,
    async sign(fromDomain, content, lookups = store) {
      const domain = fromDomain.toLowerCase();
      const found = await lookups.getSigningKeys(domain);
      // Until a check has seen the domain's records, a signature could only fail at receivers
      // (no published key); such mail reaches here only with sending.requireVerifiedDomains off.
      if (!found || found.status === "unverified") {
        cache.delete(domain);
        return { content, selectors: [] };
      }
      // Verified or failing: receivers expect a signature; unsigned mail would fail DMARC.
      if (found.keys.length === 0) return unavailable(domain, "the domain has no active DKIM key");
      const { keys } = found;
      const ids = keys.map((k) => k.id).join(",");
      let entry = cache.get(domain);
      if (entry?.ids !== ids) {
        let sign: Signer;
        try {
          sign = createMessageSigner(
            keys.map((k) => ({ domain, selector: k.selector, kind: k.kind, privateKeyPem: k.privateKeyPem })),
          );
        } catch (err) {
          return unavailable(domain, "its active DKIM key cannot be loaded", err);
        }
        if (cache.size >= MAX_CACHED_DOMAINS) cache.clear();
        entry = { ids, sign, selectors: keys.map((k) => k.selector) };
        cache.set(domain, entry);
      }
      return { content: await entry.sign(content), selectors: entry.selectors };
    },
  };
}

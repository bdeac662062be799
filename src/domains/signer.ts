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
 * never a silently unsigned message.
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

export interface MessageSigning {
  sign(fromDomain: string, content: Buffer): Promise<SignResult>;
}

type Signer = ReturnType<typeof createMessageSigner>;

/** Domains whose parsed keys stay in memory; beyond this the cache starts over. */
const MAX_CACHED_DOMAINS = 10_000;

export function createMessageSigning(store: Pick<Store, "getSigningKeys">): MessageSigning {
  const cache = new Map<
    string,
    { readonly ids: string; readonly sign: Signer; readonly selectors: string[] }
  >();
  return {
    async sign(fromDomain, content) {
      const domain = fromDomain.toLowerCase();
      const found = await store.getSigningKeys(domain);
      // Until a check has seen the domain's records, a signature could only fail at receivers
      // (no published key); such mail reaches here only with sending.requireVerifiedDomains off.
      if (!found || found.status === "unverified" || found.keys.length === 0) {
        cache.delete(domain);
        return { content, selectors: [] };
      }
      const { keys } = found;
      const ids = keys.map((k) => k.id).join(",");
      let entry = cache.get(domain);
      if (entry?.ids !== ids) {
        const sign = createMessageSigner(
          keys.map((k) => ({ domain, selector: k.selector, kind: k.kind, privateKeyPem: k.privateKeyPem })),
        );
        if (cache.size >= MAX_CACHED_DOMAINS) cache.clear();
        entry = { ids, sign, selectors: keys.map((k) => k.selector) };
        cache.set(domain, entry);
      }
      return { content: await entry.sign(content), selectors: entry.selectors };
    },
  };
}

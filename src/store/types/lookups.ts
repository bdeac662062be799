/**
 * Store part: the version of what the per-message lookups read (issue 12). Accepting a message
 * reads the account's sender identities and domain statuses, the From domain's signing keys and,
 * per connection, the API key; they change rarely (an operator's command), so `petrel serve`
 * keeps them in memory (src/store/lookup-cache.ts) and asks only this one number per lookup.
 * Triggers in the schema change it in the same transaction as any write to those tables, from
 * any process or node, so a revoked key or a removed domain is never served from the cache.
 */

import type { AccountStore } from "./accounts.js";
import type { DomainStore } from "./domains.js";

/** The lookups accepting a message makes (sender identities, domain statuses, signing keys, API key). */
export type MessageLookups = Pick<
  AccountStore & DomainStore,
  "getSenderIdentities" | "getDomainStatuses" | "getSigningKeys" | "findActiveApiKey"
>;

export interface LookupVersionStore {
  /** Changes (increases) whenever sender domains, single senders, DKIM keys, API keys or accounts change. */
  lookupVersion(): Promise<number>;
  /**
   * Only on the cached store of `petrel serve` (lookup-cache.ts): the per-message lookups under
   * one version, read at the view's first lookup, for all of one message's checks.
   */
  lookupView?(): MessageLookups;
}

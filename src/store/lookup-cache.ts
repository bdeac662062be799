/**
 * In-memory copies of what accepting a message looks up (issue 12, item 3): an account's sender
 * identities and domain statuses, a domain's signing keys, an API key by hash. Measured on
 * SQLite here: 8.8, 6.7, 4.8 and 3.0 µs per call, against ~2.5 µs for the version read that
 * replaces them; on PostgreSQL one round trip replaces two to four.
 *
 * Never stale: each entry keeps the lookup version (src/store/types/lookups.ts) read before its
 * data was, and is used only while the version is unchanged. The version changes, in the
 * writer's transaction, on any change to those tables from any process or node, so a key revoked
 * by `petrel keys revoke` is refused at the next AUTH exactly as without the cache. An entry read
 * under an older version (a slow read racing a change) is simply refreshed on its next use.
 * A view (lookupView) pins the version read at its first lookup for one message's checks.
 * Misses of API keys are not kept: a guessing client must not fill the cache.
 * Measured by `npm run bench:lookups` (one message's lookups in two event-loop turns, here under
 * load ~5): SQLite 32.5–43.5 µs per message from the store, 12.8 through the cache with a version
 * read per lookup, 8.3–9.2 with one read per turn; PostgreSQL 293 → 65 µs.
 */
import type { ApiKey, DomainStatus, MessageLookups, SenderIdentities, SigningKeys, Store } from "./types.js";

/** Entries per map; beyond this the map starts over (a bound, not an eviction policy). */
const MAX_ENTRIES = 10_000;

export interface LookupCacheStats {
  hits: number;
  misses: number;
}

interface Entry<T> {
  readonly version: number;
  readonly value: T;
}

/** A lookup served from memory under the version its caller gives (read, or a view's). */
type Cached<K, T> = (key: K, version: () => Promise<number>) => Promise<T>;

function cached<K, T>(
  load: (key: K) => Promise<T>,
  stats: LookupCacheStats,
  keep: (value: T) => boolean = () => true,
): Cached<K, T> {
  const entries = new Map<K, Entry<T>>();
  return async (key: K, version: () => Promise<number>): Promise<T> => {
    const current = await version();
    const entry = entries.get(key);
    if (entry && entry.version === current) {
      stats.hits++;
      return entry.value;
    }
    stats.misses++;
    const value = await load(key);
    if (keep(value)) {
      if (entries.size >= MAX_ENTRIES) entries.clear();
      entries.set(key, { version: current, value });
    } else {
      entries.delete(key);
    }
    return value;
  };
}

/** A Store whose four per-message lookups are served from memory while nothing changed. */
export function withLookupCache(
  store: Store,
): Store & { readonly lookupCacheStats: LookupCacheStats; lookupView(): MessageLookups } {
  const stats: LookupCacheStats = { hits: 0, misses: 0 };
  // One version read serves every lookup of the same event-loop turn (and, on PostgreSQL, every
  // lookup made while it is in flight): as if those lookups had run a moment earlier, never
  // before a change that had committed when the read was sent.
  let shared: Promise<number> | undefined;
  const forget = () => {
    shared = undefined;
  };
  const version = (): Promise<number> => {
    if (shared) return shared;
    const read = store.lookupVersion();
    shared = read;
    read.then(
      () => setImmediate(forget),
      () => forget(),
    );
    return read;
  };
  const identities = cached<number, SenderIdentities>((id) => store.getSenderIdentities(id), stats);
  const statuses = cached<number, ReadonlyMap<string, DomainStatus>>(
    (id) => store.getDomainStatuses(id),
    stats,
  );
  const signingKeys = cached<string, SigningKeys | undefined>(
    (domain) => store.getSigningKeys(domain.toLowerCase()),
    stats,
  );
  const apiKeys = cached<string, ApiKey | undefined>(
    (hash) => store.findActiveApiKey(hash),
    stats,
    (key) => key !== undefined,
  );
  const lookupsAt = (at: () => Promise<number>): MessageLookups => ({
    getSenderIdentities: (id) => identities(id, at),
    getDomainStatuses: (id) => statuses(id, at),
    getSigningKeys: (domain) => signingKeys(domain, at),
    findActiveApiKey: (hash) => apiKeys(hash, at),
  });
  const lookups = lookupsAt(version);
  /**
   * One message's lookups under one version, read at the view's first lookup (and shared with
   * the other lookups of that turn, as above): the message is checked against the settings as
   * they were when it began, and a change committed later applies from the next message (a
   * new view). On PostgreSQL MAIL FROM and the signing keys at the end of DATA then share one
   * version read (AUTH still reads its own, so a revoked key is refused at the next AUTH):
   * stubbing the version reads out entirely made bench:relay 69%/63% -> 71%/72% of SQLite.
   */
  const lookupView = (): MessageLookups => {
    let pinned: Promise<number> | undefined;
    return lookupsAt(() => {
      if (!pinned) {
        const read = version();
        pinned = read;
        // A failed read (store unreachable) is not kept: the message's next lookup asks again.
        read.catch(() => {
          if (pinned === read) pinned = undefined;
        });
      }
      return pinned;
    });
  };
  // The store's methods are closures over its connection (no `this`), so a copy with the four
  // lookups replaced is the same store everywhere else. Every other method may write: once it
  // settles, the next lookup reads the version again, so this process sees its own writes even
  // within the turn that made them.
  const copy: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(store)) {
    if (typeof value !== "function") {
      copy[name] = value;
      continue;
    }
    const method = value as (...args: unknown[]) => unknown;
    copy[name] = (...args: unknown[]) => {
      const result = method(...args);
      forget();
      if (!(result instanceof Promise)) return result;
      return result.then(
        (v) => {
          forget();
          return v;
        },
        (err: unknown) => {
          forget();
          throw err;
        },
      );
    };
  }
  return { ...(copy as unknown as Store), ...lookups, lookupCacheStats: stats, lookupView };
}

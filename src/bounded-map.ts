/**
 * A Map kept to a bound: for memos keyed by what clients send (addresses, header values), so that
 * many distinct keys only churn the memo instead of growing it.
 */

/** Sets `key` in `map`, first dropping the oldest entry (insertion order) when `max` are held. */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  if (!map.has(key) && map.size >= max) map.delete(map.keys().next().value as K);
  map.set(key, value);
}

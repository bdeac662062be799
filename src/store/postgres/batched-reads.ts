/**
 * Point reads gathered into one statement (issue 8, bench:relay on PostgreSQL): every call made in
 * one turn of the event loop waits for that turn to end (setImmediate), then one query serves
 * all of them with `= ANY(…)` through the same primary-key index. Under load (20 SMTP sessions,
 * a claim batch of many messages) this turns one round trip per recipient or per message into
 * one per turn: each round trip costs CPU in this process and in a PostgreSQL backend, and on
 * a 2-core machine that CPU is the relay rate. A lone call costs one turn of latency, nothing else.
 *
 * Invariant: a read sees what had committed when its statement started, as a single read would;
 * calls never share a result with a call made after the statement was sent.
 */

interface Waiter<V> {
  resolve(value: V | undefined): void;
  reject(err: unknown): void;
}

/**
 * Returns `get(key)`: gathered per event-loop turn and answered by `load(keys)` (distinct keys),
 * which returns the rows found by key; a key not in the map resolves undefined.
 */
export function batchedReads<V>(
  load: (keys: readonly string[]) => Promise<ReadonlyMap<string, V>>,
): (key: string) => Promise<V | undefined> {
  let pending: Map<string, Waiter<V>[]> | undefined;
  const run = (batch: Map<string, Waiter<V>[]>) => {
    load([...batch.keys()]).then(
      (found) => {
        for (const [key, waiters] of batch) for (const w of waiters) w.resolve(found.get(key));
      },
      (err: unknown) => {
        for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
      },
    );
  };
  return (key: string) =>
    new Promise<V | undefined>((resolve, reject) => {
      if (!pending) {
        const batch = new Map<string, Waiter<V>[]>();
        pending = batch;
        setImmediate(() => {
          pending = undefined;
          run(batch);
        });
      }
      const waiters = pending.get(key) ?? [];
      waiters.push({ resolve, reject });
      pending.set(key, waiters);
    });
}

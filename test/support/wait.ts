/**
 * Polling with a deadline, for conditions no event announces (a row in the store, a log line of a
 * child process). Every poll in the tests goes through here, so none can spin forever: past the
 * deadline it fails with what it was waiting for and the last value it saw.
 *
 *   const detail = await waitFor(async () => {
 *     const d = await show(id);
 *     return d.state === "delivered" && d;
 *   }, { what: `${id} delivered`, timeoutMs: 30_000 });
 *
 * Deadlines are generous on purpose (the machine is shared): they bound a hang, they do not
 * measure speed. Timing goals belong in bench/.
 */

export interface WaitOptions {
  /** What is awaited, for the failure message. */
  readonly what: string;
  /** Default 30 s. */
  readonly timeoutMs?: number;
  /** Pause between probes, default 20 ms. */
  readonly intervalMs?: number;
  /** Describes the last probe result in the failure message (default: JSON of the value). */
  readonly describe?: () => string | Promise<string>;
}

/** Probes until it returns a truthy value, and returns that value; throws after the deadline. */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  options: WaitOptions,
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as Exclude<T, false | null | undefined | 0 | "">;
    if (Date.now() >= deadline) {
      const last = options.describe ? await options.describe() : JSON.stringify(value);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${options.what} (last: ${last})`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

/**
 * The delivery settings the HTTP and dashboard end-to-end tests share: deliver at once to the
 * test MX on its port, on the delivery thread, and retry a deferral only after an hour (so a test
 * sees one attempt per recipient).
 */
export function immediateDeliveryTo(mxPort: number) {
  return {
    enabled: true,
    thread: true,
    port: mxPort,
    pollIntervalMs: 20,
    idleTimeoutMs: 500,
    retryJitter: 0,
    retrySchedule: [3_600_000],
  };
}

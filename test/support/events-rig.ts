/**
 * Helpers for the events and webhooks end-to-end tests: a loopback DNS zone and test MX for
 * example.com, the delivery and webhook configuration a `petrel serve` under test needs, bulk
 * submission over raw SMTP sessions (trusted network), and reading the event log from the data
 * directory the way an operator's tool would (its own store connection).
 */
import type { EventFilter, PetrelEvent } from "../../src/store/types.js";
import { startDnsServer, type TestDnsServer } from "./dns-server.js";
import { type RawMessage, RawSmtpSession } from "./raw-smtp.js";
import { openTestStore } from "./test-store.js";

/** example.com's MX is mx.example.com at `mxAddress`. */
export function startZone(mxAddress: string): Promise<TestDnsServer> {
  return startDnsServer({
    "example.com": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
    "mx.example.com": { A: [mxAddress] },
  });
}

/** Configuration for a `petrel serve` that delivers to the test MX and sends webhooks quickly. */
export function eventsConfig(
  dns: TestDnsServer,
  mxPort: number,
  webhooks: Record<string, unknown> = {},
  delivery: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    auth: { trustedNetworks: [{ network: "127.0.0.1/32", account: "default" }] },
    delivery: {
      enabled: true,
      port: mxPort,
      pollIntervalMs: 20,
      leaseMs: 60_000,
      idleTimeoutMs: 500,
      connectTimeoutMs: 10_000,
      greetingTimeoutMs: 10_000,
      retryJitter: 0,
      ...delivery,
    },
    dns: { servers: [dns.server], timeoutMs: 5000, tries: 2 },
    events: {
      webhooks: {
        batchWindowMs: 200,
        pollIntervalMs: 50,
        retrySchedule: [200, 400],
        timeoutMs: 5000,
        ...webhooks,
      },
    },
  };
}

/** A message from app@events.example with optional extra header fields. */
export function testMessage(n: number, to: string, headers = ""): RawMessage {
  return {
    from: "app@events.example",
    to: [to],
    content: Buffer.from(
      `From: app@events.example\r\nTo: ${to}\r\nSubject: events ${n}\r\n${headers}\r\nBody ${n}\r\n`,
    ),
  };
}

/** Submits every message over `sessions` parallel sessions; returns the queue IDs in order. */
export async function submitAll(
  port: number,
  messages: readonly RawMessage[],
  sessions = 10,
): Promise<string[]> {
  const ids: string[] = new Array(messages.length);
  await Promise.all(
    Array.from({ length: Math.min(sessions, messages.length) }, async (_, s) => {
      const session = await RawSmtpSession.open({ port });
      try {
        for (let i = s; i < messages.length; i += sessions) {
          const reply = await session.send(messages[i]!);
          const id = /queued as ([0-9A-Z]{26})/.exec(reply.text)?.[1];
          if (reply.code !== 250 || !id) throw new Error(`message ${i}: ${reply.code} ${reply.text}`);
          ids[i] = id;
        }
      } finally {
        session.destroy();
      }
    }),
  );
  return ids;
}

/** The event log of a data directory, oldest first. */
export async function readEvents(dataDir: string, filter: EventFilter = {}): Promise<PetrelEvent[]> {
  const store = await openTestStore(dataDir);
  try {
    return await store.listEvents({ limit: 1_000_000, ...filter });
  } finally {
    await store.close();
  }
}

/** Polls `check` until it returns true (generous timeouts: other suites share the machine). */
export async function waitUntil(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 90_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

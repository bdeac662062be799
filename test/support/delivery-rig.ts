/**
 * An in-process delivery rig for tests: a real SQLite store in a temporary directory, a real DNS
 * server on loopback with the test's zone, the real delivery engine with a controllable clock,
 * and a log that keeps its lines. Messages go in through the Store API (as the spool puts them).
 *
 *   const rig = await startRig({ "example.test": { MX: [...] }, ... }, { port: mx.port });
 *   const id = await rig.enqueue(["ann@example.test"]);
 *   await rig.settled(id);                 // every recipient final (or in the given states)
 *   rig.clock.advance(3600_000); rig.poke(); // due again now
 */
import assert from "node:assert/strict";
import pino from "pino";
import { bouncesSchema } from "../../src/config/bounces-schema.js";
import { type DeliveryConfig, deliverySchema } from "../../src/config/delivery-schema.js";
import { type DeliveryEngine, startDelivery } from "../../src/delivery/engine.js";
import { newQueueId } from "../../src/queue/spool.js";
import type { MessageDetail, RecipientState, Store } from "../../src/store/types.js";
import { startDnsServer, type TestDnsServer, type ZoneRecords } from "./dns-server.js";
import { removeDataDir, tempDataDir } from "./petrel-process.js";
import { openTestStore } from "./test-store.js";

export interface Rig {
  /** The data directory holding petrel.db (for `petrel … --data-dir`). */
  readonly dataDir: string;
  readonly store: Store;
  readonly dns: TestDnsServer;
  readonly engine: DeliveryEngine;
  readonly clock: { now(): number; advance(ms: number): void };
  readonly logs: Array<Record<string, unknown>>;
  enqueue(
    recipients: readonly string[],
    options?: { from?: string; content?: Buffer; lifetimeMs?: number },
  ): Promise<string>;
  /**
   * Enqueues one message per recipient list in a single store transaction, so the worker's next
   * claim sees them all at once (demand on the dispatcher does not depend on the test's speed).
   */
  enqueueBatch(recipientLists: ReadonlyArray<readonly string[]>): Promise<string[]>;
  /** Waits until every recipient of `id` is in one of `states` (default: any final state). */
  settled(id: string, states?: readonly RecipientState[], timeoutMs?: number): Promise<MessageDetail>;
  /** Waits until the message has `count` attempt records. */
  attempts(id: string, count: number, timeoutMs?: number): Promise<void>;
  /** Look for due work now. */
  poke(): void;
  close(): Promise<void>;
}

const FINAL: readonly RecipientState[] = ["delivered", "bounced", "expired", "dropped"];

export async function startRig(
  zone: ZoneRecords,
  delivery: Partial<DeliveryConfig> = {},
  options: { readonly realClock?: boolean; readonly bounces?: Record<string, unknown> } = {},
): Promise<Rig> {
  const dataDir = tempDataDir("petrel-delivery-");
  const store = await openTestStore(dataDir);
  const dns = await startDnsServer(zone);
  // A frozen clock that tests advance, or the real one (for CLI actions, which use Date.now()).
  let t = Date.UTC(2026, 10, 27, 12);
  const clock = options.realClock
    ? { now: () => Date.now(), advance: () => assert.fail("the real clock cannot be advanced") }
    : {
        now: () => t,
        advance: (ms: number) => {
          t += ms;
        },
      };
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: "debug", base: undefined },
    { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const config = deliverySchema.parse({
    pollIntervalMs: 10,
    idleTimeoutMs: 300,
    // Generous: on a loaded CI machine a greeting can take seconds; no test waits for these.
    connectTimeoutMs: 5000,
    greetingTimeoutMs: 5000,
    commandTimeoutMs: 10_000,
    retryJitter: 0,
    ...delivery,
  });
  const engine = await startDelivery({
    config: {
      delivery: config,
      // Generous: the DNS server shares this process; a stall must not turn into a deferral.
      dns: { servers: [dns.server], timeoutMs: 5000, tries: 2 },
      hostname: "petrel.test",
      dataDir,
      ...(options.bounces ? { bounces: bouncesSchema.parse(options.bounces) } : {}),
    },
    store,
    logger,
    now: clock.now,
  });
  const account = (await store.getAccount("default"))!;
  const newMessage = (
    recipients: readonly string[],
    options: { from?: string; content?: Buffer; lifetimeMs?: number } = {},
  ) => {
    const id = newQueueId();
    const content =
      options.content ??
      Buffer.from(
        `From: app@sender.test\r\nSubject: test ${id}\r\nMessage-ID: <${id}@sender.test>\r\n\r\nHello ${id}\r\n`,
      );
    return {
      id,
      accountId: account.id,
      apiKeyId: null,
      mailFrom: options.from ?? "app@sender.test",
      recipients: [...recipients],
      content,
      clientIp: "127.0.0.1",
      receivedAt: clock.now(),
      expiresAt: clock.now() + (options.lifetimeMs ?? 72 * 3600_000),
    };
  };
  return {
    dataDir,
    store,
    dns,
    engine,
    clock,
    logs,
    async enqueue(recipients, options = {}) {
      const message = newMessage(recipients, options);
      await store.enqueueMessages([message]);
      engine.worker.poke();
      return message.id;
    },
    async enqueueBatch(recipientLists) {
      const batch = recipientLists.map((recipients) => newMessage(recipients));
      await store.enqueueMessages(batch);
      engine.worker.poke();
      return batch.map((m) => m.id);
    },
    async settled(id, states = FINAL, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const detail = (await store.getMessage(id))!;
        if (detail.recipientDetails.every((r) => states.includes(r.state))) {
          await engine.worker.flush();
          return (await store.getMessage(id))!;
        }
        if (Date.now() > deadline) {
          const replies = detail.recipientDetails.map((r) => `${r.address} ${r.state}: ${r.lastReply}`);
          throw new Error(`message ${id} not settled: ${replies.join("; ")}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async attempts(id, count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        await engine.worker.flush();
        const n = (await store.listAttempts(id)).length;
        if (n >= count) return;
        if (Date.now() > deadline) throw new Error(`message ${id}: ${n} of ${count} attempts`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    poke: () => engine.worker.poke(),
    async close() {
      await engine.stop(1000);
      await dns.close();
      await store.close();
      removeDataDir(dataDir);
    },
  };
}

/** Recipient states of a message by address. */
export function statesOf(detail: MessageDetail): Record<string, RecipientState> {
  return Object.fromEntries(detail.recipientDetails.map((r) => [r.address, r.state]));
}

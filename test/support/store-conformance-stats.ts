/**
 * Store conformance, countEvents() (issue 9, GET /v1/stats): counts per UTC bucket, type, bounce
 * class and hardness, drop reason; only the account asked for; [since, until) bounds; the
 * category and recipient-domain filters (domain case-insensitive, LIKE wildcards literal).
 * Called from storeConformance().
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import type { EventCount, NewEvent, NewMessage, Store } from "../../src/store/types.js";

type WithStore = (fn: (store: Store) => Promise<void>) => () => Promise<void>;

const HOUR = 3_600_000;
/** 2023-11-14T22:00:00Z: an hour boundary. */
const T0 = 1_700_000_000_000 - (1_700_000_000_000 % HOUR);

function message(id: string, accountId: number, recipients: string[], categories?: string[]): NewMessage {
  return {
    id,
    accountId,
    apiKeyId: null,
    mailFrom: "app@sender.test",
    recipients,
    content: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
    clientIp: "127.0.0.1",
    receivedAt: T0 + 60_000,
    expiresAt: T0 + 72 * HOUR,
    ...(categories ? { categories } : {}),
  };
}

/** "bucket-offset-in-hours type[/class/hard|reason] count", sorted, for readable comparisons. */
const brief = (rows: readonly EventCount[]) =>
  rows
    .map((r) => {
      const detail =
        r.type === "bounce"
          ? `/${r.bounceClass}/${r.bounceHard ? "hard" : "soft"}`
          : r.reason
            ? `/${r.reason}`
            : "";
      return `${(r.bucket - T0) / HOUR} ${r.type}${detail} ${r.count}`;
    })
    .sort();

export function statsConformance(withStore: WithStore): void {
  it(
    "counts an account's events per bucket, type, bounce class and drop reason, inside [since, until)",
    withStore(async (store) => {
      const def = (await store.getAccount("default"))!;
      const other = await store.createAccount("other");
      await store.enqueueMessages([
        message("S1", def.id, ["a@one.test", "b@Two.test", "c@one.test"], ["welcome"]),
        message("S2", def.id, ["d@one.test"], ["billing", "welcome"]),
        message("S3", other.id, ["e@one.test"], ["welcome"]),
      ]);
      const at = (hours: number, minutes = 0) => T0 + hours * HOUR + minutes * 60_000;
      const event = (e: Omit<NewEvent, "at"> & { h: number; m?: number }): NewEvent => {
        const { h, m, ...rest } = e;
        return { ...rest, at: at(h, m) };
      };
      await store.recordEvents([
        event({ type: "delivered", messageId: "S1", recipient: "a@one.test", h: 0, m: 5 }),
        event({ type: "deferred", messageId: "S1", recipient: "b@Two.test", h: 0, m: 6, attempt: 1 }),
        event({
          type: "bounce",
          messageId: "S1",
          recipient: "b@Two.test",
          h: 1,
          m: 10,
          bounceClass: "mailbox-full",
          bounceHard: false,
        }),
        event({
          type: "bounce",
          messageId: "S1",
          recipient: "c@one.test",
          h: 1,
          m: 59,
          bounceClass: "invalid-recipient",
          bounceHard: true,
        }),
        event({ type: "dropped", messageId: "S2", recipient: "d@one.test", h: 2, reason: "suppressed" }),
        event({ type: "spamreport", messageId: "S1", recipient: "a@one.test", h: 2, reason: "abuse" }),
        // Another account's events are never counted for this one.
        event({ type: "delivered", messageId: "S3", recipient: "e@one.test", h: 0, m: 7 }),
        // Outside the range: at until (exclusive).
        event({ type: "expired", messageId: "S2", recipient: "d@one.test", h: 3 }),
      ]);

      const all = await store.countEvents({ accountId: def.id, since: T0, until: at(3), bucketMs: HOUR });
      assert.deepEqual(brief(all), [
        "0 deferred 1",
        "0 delivered 1",
        "0 processed 4",
        "1 bounce/invalid-recipient/hard 1",
        "1 bounce/mailbox-full/soft 1",
        "2 dropped/suppressed 1",
        // A spamreport's reason (its feedback type) is not split.
        "2 spamreport 1",
      ]);
      const buckets = all.map((r) => r.bucket);
      assert.deepEqual(
        buckets,
        [...buckets].sort((a, b) => a - b),
        "buckets ascending",
      );

      const otherCounts = await store.countEvents({
        accountId: other.id,
        since: T0,
        until: at(3),
        bucketMs: HOUR,
      });
      assert.deepEqual(brief(otherCounts), ["0 delivered 1", "0 processed 1"]);

      // Day buckets start at UTC midnight; the range bounds apply to the event time.
      const day = 86_400_000;
      const dayStart = T0 - (T0 % day);
      const days = await store.countEvents({ accountId: def.id, since: at(1), until: at(4), bucketMs: day });
      assert.ok(days.every((r) => r.bucket === dayStart || r.bucket === dayStart + day));
      assert.equal(
        days.reduce((n, r) => n + r.count, 0),
        5,
        "2 bounces, a drop, a spamreport, an expiry",
      );
    }),
  );

  it(
    "filters by category and by recipient domain (case-insensitive, wildcards literal)",
    withStore(async (store) => {
      const def = (await store.getAccount("default"))!;
      await store.enqueueMessages([
        message("F1", def.id, ["a@one.test", "b@Two.test"], ["welcome"]),
        message("F2", def.id, ["c@one.test", "d@sub.one.test", "e@one_test"], ["billing"]),
        message("F3", def.id, ["f@oneXtest"]),
      ]);
      const range = { accountId: def.id, since: T0, until: T0 + HOUR, bucketMs: HOUR };
      const total = (rows: readonly EventCount[]) => rows.reduce((n, r) => n + r.count, 0);
      assert.equal(total(await store.countEvents(range)), 6);
      assert.equal(total(await store.countEvents({ ...range, category: "welcome" })), 2);
      assert.equal(total(await store.countEvents({ ...range, category: "billing" })), 3);
      assert.equal(total(await store.countEvents({ ...range, category: "welc" })), 0);
      assert.equal(total(await store.countEvents({ ...range, domain: "one.test" })), 2);
      assert.equal(total(await store.countEvents({ ...range, domain: "two.test" })), 1);
      assert.equal(total(await store.countEvents({ ...range, domain: "one_test" })), 1);
      assert.equal(total(await store.countEvents({ ...range, domain: "sub.one.test" })), 1);
      assert.equal(total(await store.countEvents({ ...range, domain: "one.test", category: "billing" })), 1);
    }),
  );
}

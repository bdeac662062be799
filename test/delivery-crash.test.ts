/**
 * Issue 11, nothing lost and no poison loops, against real `petrel serve` processes killed with
 * SIGKILL, a real DNS server and a real test MX:
 * - a message whose delivery hangs the worker (the MX never answers its RCPT) and is killed three
 *   times is counted three times and held with a `held` event; the worker keeps delivering others;
 * - kill -9 the moment a bounce is committed: its DSN to the sender is already in the store, and
 *   is delivered after the restart;
 * - the same for a late bounce learnt from an inbound report: kill -9 right after the bounce
 *   listener's 250, and the DSN is in the store and delivered after the restart.
 * And in-process (deterministic): the DSN is part of the very commit that records the bounce.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { VerpCodec } from "../src/bounces/verp.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { SAMPLES } from "./support/bounce-samples.js";
import { startRig } from "./support/delivery-rig.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { waitUntil } from "./support/events-rig.js";
import {
  type PetrelProcess,
  petrelOk,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";

const ZONE = {
  "crash.test": { MX: [{ preference: 10, exchange: "mx.crash.test" }] },
  "sender.test": { MX: [{ preference: 10, exchange: "mx.crash.test" }] },
  "mx.crash.test": { A: ["127.0.0.2"] },
};

describe("delivery: no poison loops, nothing lost (kill -9)", () => {
  let dns: TestDnsServer;
  let mx: TestMx;
  before(async () => {
    dns = await startDnsServer(ZONE);
    mx = await startTestMx({ address: "127.0.0.2" });
  });
  after(async () => {
    await mx.close();
    await dns.close();
  });

  const config = (extra: Record<string, unknown> = {}) => ({
    auth: { trustedNetworks: [{ network: "127.0.0.1/32", account: "default" }] },
    dns: { servers: [dns.server], timeoutMs: 2000, tries: 2 },
    delivery: {
      enabled: true,
      port: mx.port,
      pollIntervalMs: 20,
      idleTimeoutMs: 200,
      retryJitter: 0,
      // The hanging RCPT must outlast the test's wait for it.
      commandTimeoutMs: 120_000,
    },
    ...extra,
  });

  async function submit(petrel: PetrelProcess, to: string): Promise<string> {
    const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
    try {
      const reply = await session.send({
        from: "app@sender.test",
        to: [to],
        content: Buffer.from(
          `From: app@sender.test\r\nTo: ${to}\r\nSubject: crash ${to}\r\nMessage-ID: <${Date.now()}.${to}>\r\n\r\nHello\r\n`,
        ),
      });
      const id = /queued as ([0-9A-Z]{26})/.exec(reply.text)?.[1];
      assert.ok(reply.code === 250 && id, `${reply.code} ${reply.text}`);
      return id;
    } finally {
      await session.quit();
    }
  }

  it("holds a message that hung the worker through three kills, and keeps delivering others", async () => {
    const dataDir = tempDataDir("petrel-poison-");
    let petrel = await startPetrel(dataDir, { config: config() });
    try {
      await petrelOk(dataDir, ["senders", "add", "app@sender.test"]);
      const poison = await submit(petrel, "hang@crash.test");
      for (let kill = 1; kill <= 3; kill++) {
        await waitUntil(
          () => mx.stats.rcpts.filter((r) => r === "hang@crash.test").length >= kill,
          `RCPT ${kill}`,
        );
        await petrel.stop("SIGKILL");
        petrel = await startPetrel(dataDir, { config: config() });
      }
      const other = await submit(petrel, "fine@crash.test");
      await waitUntil(() => mx.messages.some((m) => m.to.includes("fine@crash.test")), "the other message");
      const store = openSqliteStore({ file: join(dataDir, "petrel.db") });
      try {
        await waitUntil(
          async () => (await store.getMessage(poison))?.recipientDetails[0]?.state === "held",
          "the poison message held",
        );
        const detail = (await store.getMessage(poison))!;
        assert.equal(
          detail.recipientDetails[0]!.attempts,
          3,
          "three attempts, each recorded before it started",
        );
        const attempts = await store.listAttempts(poison);
        assert.equal(attempts.length, 3);
        const held = (await store.listEvents({ messageId: poison })).filter((e) => e.type === "held");
        assert.equal(held.length, 1);
        assert.match(held[0]!.reply ?? "", /stopped during 3 attempts/);
        assert.equal(
          mx.stats.rcpts.filter((r) => r === "hang@crash.test").length,
          3,
          "no fourth attempt reached the MX",
        );
        assert.equal((await store.getMessage(other))!.recipientDetails[0]!.state, "delivered");
      } finally {
        await store.close();
      }
    } finally {
      await petrel.stop("SIGKILL");
      removeDataDir(dataDir);
    }
  });

  it("still sends the DSN after kill -9 the moment the bounce is committed", async () => {
    const dataDir = tempDataDir("petrel-dsn-kill-");
    const withDsn = config({ bounces: { notifySender: true, verp: false } });
    let petrel = await startPetrel(dataDir, { config: withDsn });
    try {
      await petrelOk(dataDir, ["senders", "add", "app@sender.test"]);
      const id = await submit(petrel, "permfail@crash.test");
      // Watch the database from outside and kill the server as soon as the bounce is visible.
      const db = new Database(join(dataDir, "petrel.db"), { readonly: true });
      const state = db.prepare("SELECT state FROM recipients WHERE message_id = ?").pluck();
      const dsns = db.prepare("SELECT COUNT(*) FROM messages WHERE mail_from = '' AND id <> ?").pluck();
      const deadline = Date.now() + 30_000;
      while (state.get(id) !== "bounced") {
        assert.ok(Date.now() < deadline, "no bounce before the deadline");
        await new Promise((resolve) => setImmediate(resolve));
      }
      petrel.child.kill("SIGKILL");
      const seenWithBounce = Number(dsns.get(id));
      await petrel.stop("SIGKILL");
      assert.equal(seenWithBounce, 1, "the DSN was committed with the bounce");
      db.close();
      petrel = await startPetrel(dataDir, { config: withDsn });
      await waitUntil(
        () => mx.messages.some((m) => m.from === "" && m.to.includes("app@sender.test")),
        "the DSN at the sender's MX",
      );
      const dsn = mx.messages.find((m) => m.from === "" && m.to.includes("app@sender.test"))!;
      assert.match(dsn.content.toString(), /Final-Recipient: rfc822; permfail@crash\.test/);
      assert.match(dsn.content.toString(), /550 5\.1\.1 No such user/);
    } finally {
      await petrel.stop("SIGKILL");
      removeDataDir(dataDir);
    }
  });

  it("still sends the DSN after kill -9 right after the bounce listener's 250 for a late bounce", async () => {
    const dataDir = tempDataDir("petrel-report-kill-");
    const withDsn = config({ bounces: { notifySender: true, verp: false } });
    let petrel = await startPetrel(dataDir, { config: withDsn });
    try {
      assert.ok(petrel.ports.bounces, "the bounce listener runs");
      await petrelOk(dataDir, ["senders", "add", "app@sender.test"]);
      const id = await submit(petrel, "late@crash.test");
      await waitUntil(() => mx.messages.some((m) => m.to.includes("late@crash.test")), "the delivery");
      const db = new Database(join(dataDir, "petrel.db"), { readonly: true });
      const recipient = db.prepare("SELECT id, state FROM recipients WHERE message_id = ?");
      await waitUntil(
        () => (recipient.get(id) as { state: string } | undefined)?.state === "delivered",
        "delivered",
      );
      // The return path the receiver would answer: a token made with the node's VERP key.
      const secret = db.prepare("SELECT value FROM node_secrets WHERE name = 'verp-key'").pluck().get();
      const codec = new VerpCodec(Buffer.from(String(secret), "base64"));
      const rcpt = codec.address(id, (recipient.get(id) as { id: number }).id, "bounces.sender.test");
      const report = readFileSync(resolve(SAMPLES, "dsn/gmail-550-5.1.1-nosuchuser.eml"), "utf8")
        .replace(/kijitora@(?:gmail\.com|example\.org)/g, "late@crash.test")
        .replace(/\r?\n/g, "\r\n")
        .replace(/^\./gm, "..");
      const session = await RawSmtpSession.open({ port: petrel.ports.bounces });
      assert.equal((await session.command("MAIL FROM:<>")).code, 250);
      assert.equal((await session.command(`RCPT TO:<${rcpt}>`)).code, 250);
      assert.equal((await session.command("DATA")).code, 354);
      const accepted = await session.command(`${report.endsWith("\r\n") ? report : `${report}\r\n`}.`);
      // The moment the report is acknowledged: nothing after the 250 may be needed.
      petrel.child.kill("SIGKILL");
      assert.equal(accepted.code, 250, accepted.text);
      await petrel.stop("SIGKILL");
      session.destroy();
      assert.equal((recipient.get(id) as { state: string }).state, "bounced");
      const dsns = db
        .prepare(
          "SELECT m.id FROM messages m JOIN recipients r ON r.message_id = m.id WHERE m.mail_from = '' AND r.address = ?",
        )
        .pluck()
        .all("app@sender.test");
      assert.equal(dsns.length, 1, "the DSN was committed with the bounce, before the 250");
      db.close();
      petrel = await startPetrel(dataDir, { config: withDsn });
      await waitUntil(
        () =>
          mx.messages.some(
            (m) =>
              m.from === "" &&
              m.to.includes("app@sender.test") &&
              /late@crash\.test/.test(m.content.toString()),
          ),
        "the DSN at the sender's MX",
      );
      const dsn = mx.messages.find((m) => m.from === "" && /late@crash\.test/.test(m.content.toString()))!;
      assert.match(dsn.content.toString(), /Final-Recipient: rfc822; late@crash\.test/);
      assert.match(dsn.content.toString(), /Status: 5\.1\.1/);
      assert.match(dsn.content.toString(), new RegExp(`X-Petrel-Queue-ID: ${id}`));
    } finally {
      await petrel.stop("SIGKILL");
      removeDataDir(dataDir);
    }
  });
});

describe("delivery: the DSN and its bounce share one commit", () => {
  it("has the DSN in the store when the commit of the bounce is reported", async () => {
    const mx = await startTestMx({ address: "127.0.0.2" });
    const rig = await startRig(ZONE, { port: mx.port }, { bounces: { notifySender: true, verp: false } });
    try {
      const seen: number[] = [];
      rig.engine.worker.onCommit = (batch) => {
        if (!batch.some((o) => o.state === "bounced")) return;
        // The SQLite store answers synchronously: this reads the state right after that commit.
        void rig.store.listMessages({ limit: 100 }).then((list) => {
          seen.push(list.filter((m) => m.mailFrom === "").length);
        });
      };
      const id = await rig.enqueue(["permfail@crash.test"]);
      await rig.settled(id);
      await waitUntil(() => seen.length > 0, "the bounce commit");
      assert.deepEqual(seen, [1]);
      await mx.waitForMessages(1);
      assert.equal(mx.messages[0]!.from, "");
      assert.deepEqual(mx.messages[0]!.to, ["app@sender.test"]);
    } finally {
      await rig.close();
      await mx.close();
    }
  });
});

/**
 * Real faults against a real `petrel serve`:
 * - A full data disk (a small tmpfs filled to its last byte): the commit of a message fails for
 *   real (SQLite cannot grow its WAL: ENOSPC), the client gets 451 4.3.0, nothing of the message
 *   is kept, and once space is back the same message is accepted without a restart.
 * - The disk fills while a delivery is under way: its outcome cannot be recorded, the recipient
 *   keeps its lease, and once space is back it is delivered again (a duplicate, nothing lost).
 * - SIGTERM while a client is in DATA: a transaction that ends within smtp.shutdownGraceMs is
 *   answered 250 and kept, then the session gets 421 4.3.2; one still in DATA when the grace
 *   period ends gets 421 4.3.2 and is not kept, not even in part. serve exits 0 both times.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { SmtpTestClient } from "./support/dialogue.js";
import { startDnsServer } from "./support/dns-server.js";
import {
  type PetrelProcess,
  petrelOk,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";
import { startTestMx } from "./support/test-mx.js";
import { fillDisk, mountTmpfs } from "./support/tmpfs.js";
import { waitFor } from "./support/wait.js";

const SENDER = "app@faults.example";
const trusted = { auth: { trustedNetworks: [{ network: "127.0.0.1/32", account: "default" }] } };

function message(n: number, bodyBytes: number) {
  const line = `${"x".repeat(76)}\r\n`;
  const body = line.repeat(Math.ceil(bodyBytes / line.length));
  return {
    from: SENDER,
    to: [`user${n}@example.com`],
    content: Buffer.from(`From: ${SENDER}\r\nTo: user${n}@example.com\r\nSubject: fault ${n}\r\n\r\n${body}`),
  };
}

const queueIdOf = (text: string) => /queued as ([0-9A-Z]{26})/.exec(text)?.[1];

/** What the data directory holds once serve has stopped: messages and an integrity check. */
async function inspect(dataDir: string): Promise<{ ids: string[]; integrity: string }> {
  const file = join(dataDir, "petrel.db");
  const db = new Database(file, { readonly: true });
  const integrity = String(db.pragma("integrity_check", { simple: true }));
  db.close();
  const store = openSqliteStore({ file });
  try {
    return { ids: (await store.listMessages({ limit: 1000 })).map((m) => m.id).sort(), integrity };
  } finally {
    await store.close();
  }
}

describe("a full data disk", () => {
  it("answers 451 4.3.0 when the commit fails, keeps nothing, and accepts again once there is space", async (t) => {
    const fs = await mountTmpfs(48 * 1024 * 1024);
    if (typeof fs === "string") return t.skip(fs);
    let petrel: PetrelProcess | undefined;
    try {
      const dataDir = join(fs.path, "data");
      mkdirSync(dataDir);
      await petrelOk(dataDir, ["senders", "add", SENDER]);
      petrel = await startPetrel(dataDir, { config: trusted });
      const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
      const first = await session.send(message(1, 1000));
      assert.equal(first.code, 250, first.text);

      // Three more sessions, greeted before the disk fills (once a commit has failed, the node's
      // store check refuses new sessions at connect: below).
      const sessions = await Promise.all(
        [3, 4, 5].map(() => RawSmtpSession.open({ port: petrel!.ports.submission! })),
      );
      const filler = fillDisk(fs.path);
      // 4 MB cannot fit in the WAL the small commits left behind: the file must grow, and cannot.
      const big = message(2, 4 * 1024 * 1024);
      const refused = await session.send(big);
      assert.equal(refused.code, 451);
      assert.equal(refused.text, "4.3.0 Temporary local problem, try again later");
      const failure = await waitFor(() => petrel!.logRecords().find((r) => r.msg === "spool commit failed"), {
        what: "the spool commit failure in the log",
      });
      assert.match(JSON.stringify(failure.err), /full|SQLITE_FULL|ENOSPC/i);
      const failedId = String(failure.queueId);
      // Three at once, which the spool commits together: the batch fails, and each gets 451.
      const others = await Promise.all(
        sessions.map(async (s, i) => {
          try {
            return await s.send(message(i + 3, 2 * 1024 * 1024));
          } finally {
            await s.quit();
          }
        }),
      );
      assert.deepEqual(
        others.map((r) => `${r.code} ${r.text}`),
        Array(3).fill("451 4.3.0 Temporary local problem, try again later"),
      );
      // A new session now: refused at connect (the store check failed too) or at DATA; never 250.
      const late = await RawSmtpSession.open({ port: petrel.ports.submission! }).then(
        async (s) => {
          try {
            const r = await s.send(message(6, 2 * 1024 * 1024));
            return `${r.code} ${r.text}`;
          } finally {
            await s.quit();
          }
        },
        (err: Error) => err.message,
      );
      assert.match(late, /421 4\.3\.0 .*message store unreachable|451 4\.3\.0 Temporary local problem/);

      // The session is still usable, and the same message goes through once there is room.
      filler.free();
      const again = await session.send(big);
      assert.equal(again.code, 250, again.text);
      await session.quit();
      // New sessions are greeted again without a restart, once the store check passes.
      await waitFor(
        async () => {
          const s = await RawSmtpSession.open({ port: petrel!.ports.submission! }).catch(() => undefined);
          await s?.quit();
          return s !== undefined;
        },
        { what: "a new session greeted with 220 after the disk has room", timeoutMs: 15_000 },
      );
      assert.equal(await petrel.stop(), 0);

      const { ids, integrity } = await inspect(dataDir);
      assert.equal(integrity, "ok");
      assert.deepEqual(ids, [queueIdOf(first.text)!, queueIdOf(again.text)!].sort());
      assert.ok(!ids.includes(failedId), "nothing of the failed commit was kept");
    } finally {
      await petrel?.stop();
      await fs.unmount();
    }
  });
});

describe("a full data disk during delivery", () => {
  it("keeps a message whose delivery could not be recorded, and delivers it again once there is space", async (t) => {
    const fs = await mountTmpfs(32 * 1024 * 1024);
    if (typeof fs === "string") return t.skip(fs);
    const mx = await startTestMx({ address: "127.0.0.2" });
    const dns = await startDnsServer({
      "example.com": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
      "mx.example.com": { A: ["127.0.0.2"] },
    });
    let petrel: PetrelProcess | undefined;
    try {
      const dataDir = join(fs.path, "data");
      mkdirSync(dataDir);
      await petrelOk(dataDir, ["senders", "add", SENDER]);
      petrel = await startPetrel(dataDir, {
        config: {
          ...trusted,
          // A short lease: a recipient whose outcome was lost is due again soon.
          delivery: { enabled: true, port: mx.port, pollIntervalMs: 20, leaseMs: 3000, idleTimeoutMs: 500 },
          dns: { servers: [dns.server], timeoutMs: 5000, tries: 2 },
        },
      });
      mx.holdAll = true;
      const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
      const accepted = await session.send(message(1, 1000));
      assert.equal(accepted.code, 250, accepted.text);
      await session.quit();
      const id = queueIdOf(accepted.text)!;
      // The MX has the message and holds its reply; meanwhile the disk fills up.
      await mx.waitForHeld(1);
      // Small commits only so far: SQLite has never reset its WAL, so any write must grow it.
      const filler = fillDisk(fs.path);
      mx.holdAll = false;
      mx.release();
      await mx.waitForMessages(1);
      const failure = await waitFor(
        () => petrel!.logRecords().find((r) => r.msg === "could not record delivery outcomes"),
        { what: "the outcome commit failure in the log" },
      );
      assert.match(JSON.stringify(failure.err), /full|SQLITE_FULL|ENOSPC/i);
      filler.free();
      // The lease runs out, the recipient is due again, and this time the outcome is recorded.
      await mx.waitForMessages(2, 60_000);
      assert.equal(await petrel.stop(), 0);
      const store = openSqliteStore({ file: join(dataDir, "petrel.db") });
      try {
        const detail = (await store.getMessage(id))!;
        assert.deepEqual(detail.states, { delivered: 1 });
      } finally {
        await store.close();
      }
      const subjects = mx.messages.map((m) => /\r\nSubject: (fault \d+)\r\n/.exec(m.content.toString())?.[1]);
      assert.deepEqual(subjects, ["fault 1", "fault 1"], "delivered again: a duplicate, nothing lost");
    } finally {
      await petrel?.stop();
      await mx.close();
      await dns.close();
      await fs.unmount();
    }
  });
});

describe("SIGTERM during DATA", () => {
  /** A session in DATA with half a message sent; resolves once serve is shutting down. */
  async function inData(petrel: PetrelProcess): Promise<SmtpTestClient> {
    const client = await SmtpTestClient.connect(petrel.ports.submission!, { timeoutMs: 60_000 });
    await client.expect(/^220 /);
    for (const [line, reply] of [
      ["EHLO client.test", /^250 /m],
      [`MAIL FROM:<${SENDER}>`, /^250 /],
      ["RCPT TO:<late@example.com>", /^250 /],
      ["DATA", /^354 /],
    ] as const) {
      client.send(line);
      await client.expect(reply);
    }
    client.sendRaw(`From: ${SENDER}\r\nTo: late@example.com\r\nSubject: late\r\n\r\nfirst half\r\n`);
    petrel.child.kill("SIGTERM");
    // Shutdown has begun once the listener refuses new connections.
    await waitFor(
      () =>
        SmtpTestClient.connect(petrel.ports.submission!).then(
          async (c) => {
            await c.close();
            return false;
          },
          (err: Error) => /ECONNREFUSED/.test(err.message),
        ),
      { what: "serve to stop listening after SIGTERM" },
    );
    return client;
  }

  it("lets a transaction in DATA finish within the grace period (250, kept), then answers 421 4.3.2", async () => {
    const dataDir = tempDataDir();
    await petrelOk(dataDir, ["senders", "add", SENDER]);
    // A grace period far longer than the test: it must not be what ends the session.
    const petrel = await startPetrel(dataDir, { config: { ...trusted, smtp: { shutdownGraceMs: 120_000 } } });
    try {
      const client = await inData(petrel);
      client.sendRaw("second half\r\n.\r\n");
      const accepted = await client.expect(/^250 2\.0\.0 Ok: queued as [0-9A-Z]{26}$/);
      await client.expect("421 4.3.2 Service shutting down");
      await client.expectClosed();
      assert.equal(await petrel.exited, 0, "serve ends on the one SIGTERM, exit code 0");
      const { ids, integrity } = await inspect(dataDir);
      assert.equal(integrity, "ok");
      assert.deepEqual(ids, [queueIdOf(accepted.text)!]);
    } finally {
      await petrel.stop();
      removeDataDir(dataDir);
    }
  });

  it("answers 421 4.3.2 to a transaction still in DATA when the grace period ends, and keeps none of it", async () => {
    const dataDir = tempDataDir();
    await petrelOk(dataDir, ["senders", "add", SENDER]);
    const petrel = await startPetrel(dataDir, { config: { ...trusted, smtp: { shutdownGraceMs: 500 } } });
    try {
      const client = await inData(petrel);
      await client.expect("421 4.3.2 Service shutting down");
      await client.expectClosed();
      assert.equal(await petrel.exited, 0, "serve ends on the one SIGTERM, exit code 0");
      const { ids, integrity } = await inspect(dataDir);
      assert.equal(integrity, "ok");
      assert.deepEqual(ids, [], "nothing half-written");
    } finally {
      await petrel.stop();
      removeDataDir(dataDir);
    }
  });
});

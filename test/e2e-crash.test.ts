/**
 * Crash durability: every message acknowledged with 250 survives a SIGKILL of the server that
 * comes the moment the last 250 arrives, byte for byte. 20 concurrent sessions submit 25
 * messages each (500 in all) from a trusted network, so the test exercises group commit too.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { petrelOk, startPetrel, tempDataDir } from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";

const SESSIONS = 20;
const PER_SESSION = 25;

function message(session: number, n: number): Buffer {
  const id = `${session}-${n}`;
  // Date and Message-ID present, so the server adds only its Received field in front.
  return Buffer.from(
    `From: app@crash.example\r\nTo: r${id}@example.com\r\nSubject: crash test ${id}\r\n` +
      `Date: Fri, 27 Nov 2026 12:00:00 +0000\r\nMessage-ID: <${id}@crash.example>\r\n\r\n` +
      `Body of ${id}\r\n.leading dot\r\n${"x".repeat((session * 37 + n * 11) % 700)}\r\n`,
  );
}

describe("crash durability", () => {
  it("keeps every acknowledged message through kill -9, byte-identical", async () => {
    const dataDir = tempDataDir();
    const config = { auth: { trustedNetworks: [{ network: "127.0.0.1/32", account: "default" }] } };
    let petrel = await startPetrel(dataDir, { config });
    await petrelOk(dataDir, ["senders", "add", "app@crash.example"]);

    const acknowledged = new Map<string, Buffer>();
    let outstanding = SESSIONS * PER_SESSION;
    let killed = false;
    const submitter = async (s: number) => {
      const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
      for (let n = 0; n < PER_SESSION; n++) {
        const content = message(s, n);
        const reply = await session.send({
          from: "app@crash.example",
          to: [`r${s}-${n}@example.com`],
          content,
        });
        const match = /queued as ([0-9A-Z]{26})/.exec(reply.text);
        assert.equal(reply.code, 250, reply.text);
        acknowledged.set(match![1]!, content);
        if (--outstanding === 0) {
          // The moment the last 250 arrives.
          petrel.child.kill("SIGKILL");
          killed = true;
        }
      }
      session.destroy();
    };
    try {
      await Promise.all(Array.from({ length: SESSIONS }, (_, s) => submitter(s)));
    } finally {
      if (!killed) await petrel.stop("SIGKILL");
    }
    assert.ok(killed);
    assert.equal(await petrel.stop(), "SIGKILL");
    assert.equal(acknowledged.size, SESSIONS * PER_SESSION);

    // Restart on the crashed data directory, then read the queue.
    petrel = await startPetrel(dataDir, { config });
    const store = openSqliteStore({ file: join(dataDir, "petrel.db") });
    try {
      const listed = await store.listMessages({ limit: 10_000 });
      assert.equal(listed.length, acknowledged.size);
      for (const [queueId, sent] of acknowledged) {
        const stored = await store.getMessageContent(queueId);
        assert.ok(stored, `message ${queueId} survived`);
        assert.ok(
          stored.subarray(stored.length - sent.length).equals(sent),
          `message ${queueId} is byte-identical`,
        );
        const added = stored.subarray(0, stored.length - sent.length).toString();
        assert.match(added, new RegExp(`^Received: [^]*id ${queueId};[^]*\\r\\n$`));
        assert.doesNotMatch(added, /Message-ID|Date:/);
      }
    } finally {
      await store.close();
      await petrel.stop();
    }
  });
});

/**
 * Bounces and the suppression list end to end, through the real `petrel serve` delivering to a
 * test MX on loopback (issue 5's tests):
 * - the MX answers `550 5.1.1` → a `bounce` event, class invalid-recipient, hard; the recipient is
 *   suppressed citing that event; the next message to them is accepted and `dropped` (reason
 *   suppressed, never attempted) while its other recipient is delivered;
 * - `550 5.7.1` blocklist reply → policy-or-spam, soft, not suppressed;
 * - with suppression.mode: reject the same recipient is refused at RCPT with
 *   `550 5.1.1 Recipient is on the suppression list` (per account: see the store conformance suite).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PetrelEvent } from "../src/store/types.js";
import type { TestDnsServer } from "./support/dns-server.js";
import { eventsConfig, readEvents, startZone, waitUntil } from "./support/events-rig.js";
import {
  type PetrelProcess,
  petrelOk,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";

const FROM = "app@suppress.example";

function message(to: readonly string[], subject: string) {
  return {
    from: FROM,
    to,
    content: Buffer.from(`From: ${FROM}\r\nTo: ${to.join(", ")}\r\nSubject: ${subject}\r\n\r\nHello\r\n`),
  };
}

async function submit(petrel: PetrelProcess, to: readonly string[], subject: string): Promise<string> {
  const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
  try {
    const reply = await session.send(message(to, subject));
    const id = /queued as ([0-9A-Z]{26})/.exec(reply.text)?.[1];
    assert.ok(reply.code === 250 && id, `${reply.code} ${reply.text}`);
    return id;
  } finally {
    await session.quit();
  }
}

async function eventsOf(dataDir: string, messageId: string, count: number): Promise<PetrelEvent[]> {
  let events: PetrelEvent[] = [];
  await waitUntil(async () => {
    events = await readEvents(dataDir, { messageId });
    return events.length >= count;
  }, `${count} events of ${messageId}`);
  return events;
}

describe("bounces and suppressions through petrel serve", () => {
  let mx: TestMx;
  let dns: TestDnsServer;
  let dataDir: string;
  let petrel: PetrelProcess;

  before(async () => {
    mx = await startTestMx({ address: "127.0.0.2" });
    dns = await startZone("127.0.0.2");
    dataDir = tempDataDir("petrel-suppress-");
    await petrelOk(dataDir, ["senders", "add", FROM]);
    petrel = await startPetrel(dataDir, { config: eventsConfig(dns, mx.port) });
  });

  after(async () => {
    await petrel?.stop();
    await mx.close();
    await dns.close();
    removeDataDir(dataDir);
  });

  it("suppresses a recipient whose MX answers 550 5.1.1, and drops the next message to them", async () => {
    const first = await submit(petrel, ["permfail@example.com"], "first");
    const events = await eventsOf(dataDir, first, 2);
    assert.deepEqual(
      events.map((e) => e.type),
      ["processed", "bounce"],
    );
    const bounce = events[1]!;
    assert.equal(bounce.recipient, "permfail@example.com");
    assert.equal(bounce.bounceClass, "invalid-recipient");
    assert.equal(bounce.bounceHard, true);
    assert.equal(bounce.enhancedCode, "5.1.1");
    assert.match(bounce.reply ?? "", /^550 5\.1\.1 /);

    const list = JSON.parse(await petrelOk(dataDir, ["suppressions", "list", "--json"])) as Array<
      Record<string, unknown>
    >;
    assert.equal(list.length, 1);
    assert.equal(list[0]!.address, "permfail@example.com");
    assert.equal(list[0]!.reason, "invalid-recipient");
    assert.equal(list[0]!.eventId, bounce.id, "the suppression cites the bounce event");

    // Default mode: accepted, the suppressed recipient dropped, the other one delivered.
    const before = mx.messages.length;
    const second = await submit(petrel, ["Permfail@Example.com", "ok@example.com"], "second");
    const next = await eventsOf(dataDir, second, 4);
    const dropped = next.find((e) => e.type === "dropped");
    assert.equal(dropped?.recipient, "Permfail@Example.com");
    assert.equal(dropped?.reason, "suppressed");
    assert.ok(next.some((e) => e.type === "delivered" && e.recipient === "ok@example.com"));
    assert.equal(next.filter((e) => e.type === "processed").length, 2);
    await mx.waitForMessages(before + 1);
    assert.deepEqual(mx.messages[before]!.to, ["ok@example.com"], "only the other recipient reached the MX");
    const show = JSON.parse(await petrelOk(dataDir, ["queue", "show", second, "--json"])) as {
      attempts: Array<{ recipient: string; status: string }>;
    };
    assert.deepEqual(
      show.attempts.filter((a) => a.recipient === "Permfail@Example.com").map((a) => a.status),
      ["dropped"],
      "never attempted",
    );
  });

  it("classifies a 550 5.7.1 blocklist reply as policy-or-spam, soft, and does not suppress", async () => {
    const id = await submit(petrel, ["blocked@example.com"], "blocked");
    const events = await eventsOf(dataDir, id, 2);
    const bounce = events.find((e) => e.type === "bounce");
    assert.equal(bounce?.bounceClass, "policy-or-spam");
    assert.equal(bounce?.bounceHard, false);
    const list = await petrelOk(dataDir, ["suppressions", "list"]);
    assert.doesNotMatch(list, /blocked@example\.com/);
  });

  it("refuses a suppressed recipient at RCPT with suppression.mode: reject", async () => {
    await petrel.stop();
    petrel = await startPetrel(dataDir, {
      config: { ...eventsConfig(dns, mx.port), suppression: { mode: "reject" } },
    });
    const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
    try {
      assert.equal((await session.command(`MAIL FROM:<${FROM}>`)).code, 250);
      const refused = await session.command("RCPT TO:<permfail@example.com>");
      assert.equal(`${refused.code} ${refused.text}`, "550 5.1.1 Recipient is on the suppression list");
      assert.equal((await session.command("RCPT TO:<ok@example.com>")).code, 250);
    } finally {
      await session.quit();
    }
  });
});

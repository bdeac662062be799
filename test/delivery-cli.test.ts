/**
 * `petrel queue` against a store that a running delivery engine works on: counts by state and
 * destination, --domain, the attempt history in `queue show`, and retry/hold/release/delete.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Rig, startRig } from "./support/delivery-rig.js";
import { petrelCli, petrelOk } from "./support/petrel-process.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";

describe("petrel queue with delivery", () => {
  let mx: TestMx;
  let rig: Rig;
  let deferredId: string;

  before(async () => {
    mx = await startTestMx({ address: "127.0.0.2" });
    rig = await startRig(
      {
        "ops.test": { MX: [{ preference: 10, exchange: "mx.ops.test" }] },
        "mx.ops.test": { A: ["127.0.0.2"] },
      },
      { port: mx.port },
      { realClock: true },
    );
    const delivered = await rig.enqueue(["ann@ops.test"]);
    deferredId = await rig.enqueue(["tempfail@ops.test", "bob@other.test"]);
    await rig.settled(delivered);
    await rig.settled(deferredId, ["deferred", "bounced"]);
  });

  after(async () => {
    await rig.close();
    await mx.close();
  });

  it("lists counts by state and destination, then the messages, filtered by domain", async () => {
    const text = await petrelOk(rig.dataDir, ["queue", "list"]);
    assert.match(text, /Recipients by state: .*delivered 1/);
    assert.match(text, /DESTINATION\s+PENDING/);
    assert.match(text, /ops\.test\s+deferred:1/);
    const json = JSON.parse(
      await petrelOk(rig.dataDir, ["queue", "list", "--domain", "other.test", "--json"]),
    );
    assert.deepEqual(
      json.messages.map((m: { id: string }) => m.id),
      [deferredId],
    );
    assert.deepEqual(json.counts.byState, { bounced: 1 });
  });

  it("shows each recipient and every attempt", async () => {
    const text = await petrelOk(rig.dataDir, ["queue", "show", deferredId]);
    assert.match(text, /tempfail@ops\.test\s+deferred\s+1/);
    assert.match(text, /Attempts:/);
    assert.match(text, /tempfail@ops\.test\s+deferred\s+mx\.ops\.test\[127\.0\.0\.2\]:\d+\s+-\s+451 4\.2\.1/);
    const json = JSON.parse(await petrelOk(rig.dataDir, ["queue", "show", deferredId, "--json"]));
    assert.equal(json.attempts.length, 2);
  });

  it("holds, releases, retries and deletes", async () => {
    assert.match(await petrelOk(rig.dataDir, ["queue", "hold", deferredId]), /1 recipient\(s\) held/);
    assert.deepEqual((await rig.store.getMessage(deferredId))!.states, { held: 1, bounced: 1 });
    assert.match(await petrelOk(rig.dataDir, ["queue", "release", deferredId]), /1 recipient\(s\) released/);
    // Released mail is due at once: the engine tries it again (and it is deferred again).
    await rig.attempts(deferredId, 3);
    assert.match(await petrelOk(rig.dataDir, ["queue", "retry", "--all"]), /recipient\(s\) due now/);
    await rig.attempts(deferredId, 4);
    const dropped = JSON.parse(await petrelOk(rig.dataDir, ["queue", "delete", deferredId, "--json"]));
    assert.equal(dropped.recipients, 1);
    const detail = (await rig.store.getMessage(deferredId))!;
    assert.deepEqual(detail.states, { dropped: 1, bounced: 1 });
    const attempts = await rig.store.listAttempts(deferredId);
    assert.equal(attempts.at(-1)!.reply, "dropped by operator");
    const missing = await petrelCli(rig.dataDir, ["queue", "hold", "01NOSUCHMESSAGE0000000000"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no message/);
  });
});

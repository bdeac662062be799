/**
 * The spool's group commit delay (queue.groupCommitDelayMs, issue 12): a lone submitter's
 * messages commit at once; under concurrency (the last commit held more than one message) a small
 * next batch waits the delay for more to join it. Over a real SQLite store; the commit is held at
 * a gate so arrivals can be placed during it, and setTimeout is faked so a wait is visible.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Spool } from "../src/queue/spool.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import type { NewMessage } from "../src/store/types.js";
import { messageMaker } from "./support/new-messages.js";
import { tempDataDir } from "./support/petrel-process.js";

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

async function rig(delayMs: number) {
  const store = openSqliteStore({ file: join(tempDataDir("petrel-spool-"), "petrel.db") });
  const account = (await store.getAccount("default"))!;
  let gate: Promise<void> = Promise.resolve();
  const batches: number[] = [];
  const gated = {
    ...store,
    enqueueMessages: async (messages: readonly NewMessage[]) => {
      await gate;
      batches.push(messages.length);
      return store.enqueueMessages(messages);
    },
  };
  const message = messageMaker(account.id);
  const hold = () => {
    let open = () => {};
    gate = new Promise<void>((resolve) => (open = resolve));
    return () => open();
  };
  return { store, spool: new Spool(gated, { maxBatch: 512, delayMs }), message, hold, batches };
}

/** A, B together; C during their commit; D a moment after it ended. */
async function concurrentRound(r: Awaited<ReturnType<typeof rig>>) {
  const release = r.hold();
  const ab = Promise.all([r.spool.enqueue(r.message()), r.spool.enqueue(r.message())]);
  await turns(2);
  let cDone = false;
  const c = r.spool.enqueue(r.message()).then(() => (cDone = true));
  release();
  await ab;
  await turns(3);
  const cBeforeD = cDone;
  const d = r.spool.enqueue(r.message());
  return { cBeforeD, rest: Promise.all([c, d]) };
}

describe("spool group commit delay", () => {
  it("commits a lone submitter's messages at once, and under concurrency lets a small batch wait for more", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const r = await rig(5);
    try {
      // One at a time: batches of one, never delayed (setTimeout is frozen: a wait would hang).
      for (let i = 0; i < 3; i++) await r.spool.enqueue(r.message());
      assert.deepEqual(r.batches, [1, 1, 1]);

      const round = await concurrentRound(r);
      assert.equal(round.cBeforeD, false, "C waits after a batch of two");
      t.mock.timers.tick(5);
      await round.rest;
      assert.deepEqual(r.batches, [1, 1, 1, 2, 2], "C and D share a commit");
    } finally {
      await r.store.close();
    }
  });

  it("with the delay 0, commits what is pending as soon as the last commit ends", async () => {
    const r = await rig(0);
    try {
      const round = await concurrentRound(r);
      await round.rest;
      assert.equal(round.cBeforeD, true, "C committed before D arrived");
      assert.deepEqual(r.batches, [2, 1, 1]);
    } finally {
      await r.store.close();
    }
  });
});

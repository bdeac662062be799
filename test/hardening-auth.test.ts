/**
 * The AUTH lockout reaches sessions that were open before it (issue 13 item 8), against a real
 * `petrel serve`: three sessions from one address, already past STARTTLS; the first guesses until
 * it is locked out; the other two are refused at their very next AUTH — even with the right key —
 * instead of each getting maxFailures guesses of their own.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  openAuthReadySession,
  type PetrelProcess,
  petrelOk,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";

const plain = (key: string) => `AUTH PLAIN ${Buffer.from(`\0apikey\0${key}`).toString("base64")}`;
const LOCKED = "421 4.7.0 Too many failed authentication attempts, try again later";

// Issue 12: with smtp.workers > 1 the sessions run in several processes; the lockout must hold.
for (const workers of [1, 2])
  describe(`AUTH lockout and open sessions (smtp.workers ${workers})`, () => {
    const dataDir = tempDataDir();
    let petrel: PetrelProcess;
    let key: string;

    before(async () => {
      key = (await petrelOk(dataDir, ["keys", "create", "--name", "lockout"])).trim();
      petrel = await startPetrel(dataDir, {
        config: { smtp: { workers }, auth: { maxFailures: 3, lockoutMs: 60_000 } },
      });
    });
    after(async () => {
      await petrel?.stop();
      removeDataDir(dataDir);
    });

    const ready = () => openAuthReadySession(petrel, "127.0.0.9");

    it("refuses every open session of the locked-out address at its next AUTH", async () => {
      const [guesser, second, third] = [await ready(), await ready(), await ready()];
      guesser.send(plain("pt_wrong1"));
      await guesser.expect("535 5.7.8 Authentication credentials invalid");
      guesser.send(plain("pt_wrong2"));
      await guesser.expect("535 5.7.8 Authentication credentials invalid");
      guesser.send(plain("pt_wrong3"));
      await guesser.expect(LOCKED);
      await guesser.expectClosed();
      // Opened before the lockout: no fresh guesses, not even the right key gets through now.
      second.send(plain(key));
      await second.expect(LOCKED);
      await second.expectClosed();
      third.send(plain("pt_wrong4"));
      await third.expect(LOCKED);
      await third.expectClosed();
      const refusedLines = () =>
        petrel.logRecords().filter((r) => r.msg === "auth refused: address locked out");
      const deadline = Date.now() + 5000;
      while (refusedLines().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const refused = refusedLines();
      assert.equal(refused.length, 2);
      assert.ok(refused.every((r) => r.ip === "127.0.0.9"));
    });
  });

/**
 * TLS policies against real STARTTLS servers on loopback (opportunistic, required, verify with a
 * good and a bad certificate) and a relay route with AUTH to an upstream smart host.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Rig, startRig, statesOf } from "./support/delivery-rig.js";
import { tempDataDir } from "./support/petrel-process.js";
import { makeCertificate, mxPorts, startTestMx, type TestMx } from "./support/test-mx.js";

describe("delivery: TLS policies and relay routes", () => {
  let tlsMx: TestMx;
  let plainMx: TestMx;
  let wrongNameMx: TestMx;
  let relay: TestMx;
  let caFile: string;
  const zone = {
    "tls.test": { MX: [{ preference: 10, exchange: "mx.tls.test" }] },
    "mx.tls.test": { A: ["127.0.0.2"] },
    "plain.test": { MX: [{ preference: 10, exchange: "mx.plain.test" }] },
    "mx.plain.test": { A: ["127.0.0.3"] },
    "wrong.test": { MX: [{ preference: 10, exchange: "mx.wrong.test" }] },
    "mx.wrong.test": { A: ["127.0.0.4"] },
    "relay.test": { A: ["127.0.0.5"] },
  };

  before(async () => {
    const good = await makeCertificate(["mx.tls.test"]);
    const bad = await makeCertificate(["someone-else.test"]);
    tlsMx = await startTestMx({ address: "127.0.0.2", tls: good });
    plainMx = await startTestMx({ address: "127.0.0.3" });
    wrongNameMx = await startTestMx({ address: "127.0.0.4", tls: bad });
    relay = await startTestMx({ address: "127.0.0.5", tls: good, auth: { user: "petrel", pass: "s3cret" } });
    caFile = join(tempDataDir("petrel-ca-"), "ca.pem");
    // Both certificates are trusted: the bad one fails on its name alone.
    writeFileSync(caFile, `${good.cert.trim()}\n${bad.cert.trim()}\n`);
  });

  after(async () => {
    await Promise.all([tlsMx.close(), plainMx.close(), wrongNameMx.close(), relay.close()]);
  });

  async function withRig(delivery: Record<string, unknown>, fn: (rig: Rig) => Promise<void>) {
    const mxPortMap = mxPorts(tlsMx, plainMx, wrongNameMx);
    const rig = await startRig(zone, {
      port: tlsMx.port,
      mxPorts: mxPortMap,
      tlsCaFile: caFile,
      ...delivery,
    });
    try {
      await fn(rig);
    } finally {
      await rig.close();
    }
  }

  it("uses STARTTLS when offered and plaintext otherwise (opportunistic)", async () => {
    await withRig({}, async (rig) => {
      const secure = await rig.enqueue(["ann@tls.test"]);
      const plain = await rig.enqueue(["bob@plain.test"]);
      await rig.settled(secure);
      await rig.settled(plain);
      const [a] = await rig.store.listAttempts(secure);
      assert.match(a!.tls!, /^TLSv1\.[23] \S+/);
      assert.equal(tlsMx.messages.at(-1)!.secure, true);
      assert.equal((await rig.store.listAttempts(plain))[0]!.tls, null);
      assert.equal(plainMx.messages.at(-1)!.secure, false);
      assert.ok(
        rig.logs.some((l) => /to=<ann@tls\.test>.*tls=TLSv1\.[23] .*status=sent/.test(String(l.msg))),
      );
    });
  });

  it("defers when TLS is required and the server has none", async () => {
    await withRig({ tlsPolicy: "required" }, async (rig) => {
      const before = plainMx.messages.length;
      const id = await rig.enqueue(["cy@plain.test"]);
      const detail = await rig.settled(id, ["deferred"]);
      assert.match(detail.recipientDetails[0]!.lastReply!, /^451 4\.7\.5 TLS with mx\.plain\.test/);
      assert.equal(plainMx.messages.length, before, "nothing was sent in plaintext");
      const ok = await rig.enqueue(["dee@tls.test"]);
      assert.deepEqual(statesOf(await rig.settled(ok)), { "dee@tls.test": "delivered" });
    });
  });

  it("verifies the certificate against the MX name under `verify`", async () => {
    await withRig({ routes: [{ match: "*.test", transport: "mx", tlsPolicy: "verify" }] }, async (rig) => {
      const good = await rig.enqueue(["eve@tls.test"]);
      const bad = await rig.enqueue(["fay@wrong.test"]);
      assert.deepEqual(statesOf(await rig.settled(good)), { "eve@tls.test": "delivered" });
      const detail = await rig.settled(bad, ["deferred"]);
      assert.match(
        detail.recipientDetails[0]!.lastReply!,
        /^451 4\.7\.5 TLS with mx\.wrong\.test.*(altnames|name)/i,
      );
      assert.equal(wrongNameMx.messages.length, 0);
    });
  });

  it("relays everything to an upstream smart host with STARTTLS and AUTH", async () => {
    const routes = [
      {
        match: "*",
        transport: "relay",
        host: "relay.test",
        port: relay.port,
        security: "starttls",
        auth: { user: "petrel", pass: "s3cret" },
      },
    ];
    await withRig({ routes }, async (rig) => {
      const id = await rig.enqueue(["gus@anywhere.example", "hal@elsewhere.example"]);
      const detail = await rig.settled(id);
      assert.deepEqual(statesOf(detail), {
        "gus@anywhere.example": "delivered",
        "hal@elsewhere.example": "delivered",
      });
      const received = relay.messages.filter((m) => m.to.some((t) => t.endsWith(".example")));
      assert.equal(received.length, 2, "one transaction per recipient domain");
      assert.ok(received.every((m) => m.user === "petrel" && m.secure));
      const [a] = await rig.store.listAttempts(id);
      assert.equal(a!.mxHost, "relay.test");
      assert.equal(a!.port, relay.port);
    });
  });

  it("relays over implicit TLS (security: tls) to a port-465 style upstream", async () => {
    const upstream = await startTestMx({
      address: "127.0.0.6",
      tls: await makeCertificate(["smtps.relay.test"]),
      implicitTls: true,
      auth: { user: "petrel", pass: "s3cret" },
    });
    try {
      const routes = [
        {
          match: "*.example",
          transport: "relay",
          host: "127.0.0.6",
          port: upstream.port,
          security: "tls",
          auth: { user: "petrel", pass: "s3cret" },
        },
      ];
      await withRig({ routes }, async (rig) => {
        const id = await rig.enqueue(["jon@anywhere.example"]);
        assert.deepEqual(statesOf(await rig.settled(id)), { "jon@anywhere.example": "delivered" });
        assert.equal(upstream.messages.length, 1);
        assert.ok(upstream.messages[0]!.secure);
        assert.match((await rig.store.listAttempts(id))[0]!.tls!, /^TLSv1\.[23] /);
      });
    } finally {
      await upstream.close();
    }
  });

  it("defers when the relay refuses the credentials", async () => {
    const routes = [
      {
        match: "*",
        transport: "relay",
        host: "127.0.0.5",
        port: relay.port,
        auth: { user: "petrel", pass: "wrong" },
      },
    ];
    await withRig({ routes }, async (rig) => {
      const id = await rig.enqueue(["ivy@anywhere.example"]);
      const detail = await rig.settled(id, ["deferred"]);
      assert.match(detail.recipientDetails[0]!.lastReply!, /^451 4\.7\.8 authentication with 127\.0\.0\.5/);
    });
  });
});

/**
 * SSRF guard (issue 9): webhook URLs created through the HTTP API may not point at loopback,
 * link-local, private or unique-local addresses (literal, or a name resolving to one through the
 * test's DNS server) unless events.webhooks.allowPrivateTargets is on. Real app on a real socket,
 * real SQLite store, real DNS server on loopback.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pino from "pino";
import { loadConfig } from "../src/config/load.js";
import { HttpMetrics } from "../src/http/metrics.js";
import { type RunningHttp, startHttp } from "../src/http/server.js";
import { AuthThrottle } from "../src/policy/auth-throttle.js";
import { Spool } from "../src/queue/spool.js";
import { createKey } from "../src/services/keys.js";
import { isPrivateAddress } from "../src/services/webhook-targets.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import type { Store } from "../src/store/types.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { removeDataDir, tempDataDir } from "./support/petrel-process.js";

describe("webhook SSRF guard", () => {
  let dataDir: string;
  let store: Store;
  let dns: TestDnsServer;
  let http: RunningHttp;
  let key: string;

  before(async () => {
    dataDir = tempDataDir("petrel-ssrf-");
    store = openSqliteStore({ file: join(dataDir, "petrel.db") });
    dns = await startDnsServer({
      "inside.example": { A: ["10.0.0.7"] },
      "metadata.example": { AAAA: ["fe80::1"] },
      "public.example": { A: ["93.184.215.14"] },
    });
    const config = loadConfig({
      env: {},
      overrides: { dataDir, "http.port": 0, "dns.servers": [dns.server], "dns.timeoutMs": 1000 },
    });
    key = (
      await createKey({ store, config }, { name: "hooks", account: "default", scopes: ["webhooks.write"] })
    ).secret;
    const logger = pino({ level: "silent" });
    http = await startHttp(
      {
        config,
        store,
        spool: new Spool(store, { maxBatch: 8 }),
        logger,
        throttle: new AuthThrottle({ maxFailures: 5, windowMs: 60_000, lockoutMs: 60_000 }),
        onKeyUsed: () => {},
        metrics: new HttpMetrics({ store }),
        ctx: { store, config },
        notReady: () => null,
      },
      logger,
    );
  });

  after(async () => {
    await http?.close();
    await store?.close();
    await dns?.close();
    removeDataDir(dataDir);
  });

  const add = async (url: string) => {
    const response = await fetch(`http://127.0.0.1:${http.port}/v1/webhooks`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ url }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it("refuses non-public targets", async () => {
    for (const url of [
      "http://127.0.0.1:8080/hook",
      "http://localhost/hook",
      "http://10.1.2.3/hook",
      "http://169.254.169.254/latest/meta-data",
      "http://[::1]/hook",
      "http://[::ffff:192.168.1.1]/hook",
      "http://[fd00::5]/hook",
      "http://inside.example/hook",
      "http://metadata.example/hook",
    ]) {
      const answer = await add(url);
      assert.equal(answer.status, 400, url);
      assert.equal(answer.body.type, "urn:petrel:problem:invalid-input");
    }
  });

  it("accepts public targets, by address and by name", async () => {
    assert.equal((await add("https://93.184.215.14/hook")).status, 201);
    assert.equal((await add("https://public.example/hook")).status, 201);
  });

  it("classifies addresses", () => {
    for (const ip of [
      "127.0.0.1",
      "10.0.0.1",
      "172.31.255.255",
      "192.168.0.1",
      "100.64.0.1",
      "::1",
      "fe80::1",
    ])
      assert.equal(isPrivateAddress(ip), true, ip);
    for (const ip of ["8.8.8.8", "172.32.0.1", "2606:4700::1111"])
      assert.equal(isPrivateAddress(ip), false, ip);
  });
});

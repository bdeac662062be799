/**
 * The OpenAPI document (issue 9): /v1/openapi.json, served over a real socket by the real app on
 * a real SQLite store, validates with @readme/openapi-parser as OpenAPI 3.1, lists exactly the
 * routes Fastify registered (method and path), marks every /v1 route but the document itself as
 * needing a bearer key, and every problem type of src/errors.ts is listed in the README.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { validate } from "@readme/openapi-parser";
import pino from "pino";
import { loadConfig } from "../src/config/load.js";
import { PROBLEM_TYPES } from "../src/errors.js";
import { HttpMetrics } from "../src/http/metrics.js";
import { type RunningHttp, registeredRoutes, startHttp } from "../src/http/server.js";
import { AuthThrottle } from "../src/policy/auth-throttle.js";
import { Spool } from "../src/queue/spool.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import type { Store } from "../src/store/types.js";
import { removeDataDir, tempDataDir } from "./support/petrel-process.js";

describe("OpenAPI document", () => {
  let dataDir: string;
  let store: Store;
  let http: RunningHttp;
  let doc: Record<string, unknown>;

  before(async () => {
    dataDir = tempDataDir("petrel-openapi-");
    store = openSqliteStore({ file: join(dataDir, "petrel.db") });
    const config = loadConfig({ env: {}, overrides: { dataDir, "http.port": 0, "http.host": "127.0.0.1" } });
    const logger = pino({ level: "silent" });
    const metrics = new HttpMetrics({ store });
    http = await startHttp(
      {
        config,
        store,
        spool: new Spool(store, { maxBatch: 64 }),
        logger,
        throttle: new AuthThrottle({ maxFailures: 5, windowMs: 60_000, lockoutMs: 60_000 }),
        onKeyUsed: () => {},
        metrics,
        ctx: { store, config },
        notReady: () => null,
      },
      logger,
    );
    const response = await fetch(`http://127.0.0.1:${http.port}/v1/openapi.json`);
    assert.equal(response.status, 200);
    doc = (await response.json()) as Record<string, unknown>;
  });

  after(async () => {
    await http?.close();
    await store?.close();
    removeDataDir(dataDir);
  });

  it("is a valid OpenAPI 3.1 document", async () => {
    assert.equal(doc.openapi, "3.1.0");
    const result = await validate(structuredClone(doc) as never);
    assert.equal(result.valid, true, JSON.stringify(result, null, 2).slice(0, 2000));
  });

  it("lists exactly the routes the server registered", () => {
    const paths = doc.paths as Record<string, Record<string, { security?: unknown[] }>>;
    const documented = new Set(
      Object.entries(paths).flatMap(([path, ops]) =>
        Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
      ),
    );
    const registered = new Set(
      registeredRoutes(http.app)
        .filter((r) => r.url !== "/v1/openapi.json")
        .map((r) => `${r.method} ${r.url.replace(/:([A-Za-z]+)/g, "{$1}")}`),
    );
    assert.ok(registered.size >= 40, `only ${registered.size} routes`);
    assert.deepEqual([...documented].sort(), [...registered].sort());
    for (const [path, ops] of Object.entries(paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (path.startsWith("/v1/")) assert.deepEqual(op.security, [{ bearer: [] }], `${method} ${path}`);
      }
    }
  });

  it("documents request bodies from the same zod schemas that validate them", () => {
    const paths = doc.paths as Record<string, Record<string, Record<string, unknown>>>;
    const send = paths["/v1/messages"]!.post!.requestBody as {
      content: Record<string, { schema: { properties: Record<string, unknown>; required: string[] } }>;
    };
    const schema = send.content["application/json"]!.schema;
    for (const field of [
      "from",
      "to",
      "cc",
      "bcc",
      "subject",
      "text",
      "html",
      "attachments",
      "headers",
      "metadata",
    ])
      assert.ok(field in schema.properties, field);
    assert.deepEqual(schema.required, ["from"]);
  });

  it("lists every problem type in the README", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    for (const type of Object.keys(PROBLEM_TYPES)) assert.match(readme, new RegExp(`\`${type}\``), type);
  });
});

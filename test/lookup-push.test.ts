/**
 * The pushed lookup version (src/store/postgres/lookup-push.ts) on a fresh PostgreSQL database:
 * a serving node answers lookups without reading the version, and still never from an older
 * version than the last write that has returned, whoever wrote it; a silent or dead node cannot
 * make it stale nor hold writers for longer than the confirmation timeout.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import pg from "pg";
import { withLookupCache } from "../src/store/lookup-cache.js";
import { openPostgresStore, type PostgresStore } from "../src/store/postgres/postgres-store.js";
import { type FreshDatabase, freshPostgresDatabase } from "./support/postgres.js";
import { waitFor } from "./support/wait.js";

const databases: FreshDatabase[] = [];
after(async () => {
  for (const db of databases) await db.drop();
});

async function nodeAndWriter(
  writerTimeoutMs?: number,
): Promise<{ node: PostgresStore; writer: PostgresStore; url: string; close: () => Promise<void> }> {
  const db = await freshPostgresDatabase("petrel_push");
  databases.push(db);
  const node = await openPostgresStore({ url: db.url, poolSize: 4, pushLookupVersion: true });
  const writer = await openPostgresStore({
    url: db.url,
    poolSize: 2,
    lookupConfirmTimeoutMs: writerTimeoutMs,
  });
  await waitFor(() => node.lookupPush?.current() !== undefined, { what: "the node's pushed version" });
  return {
    node,
    writer,
    url: db.url,
    close: async () => {
      await Promise.all([node.close(), writer.close()]);
    },
  };
}

async function databaseVersion(store: PostgresStore): Promise<number> {
  const { rows } = await store.pool.query("SELECT version FROM lookup_version WHERE id = 1");
  return Number(rows[0].version);
}

describe("PostgreSQL pushed lookup version", () => {
  it("is the database's version on the node as soon as another process's write returns", async () => {
    const { node, writer, close } = await nodeAndWriter();
    try {
      const cached = withLookupCache(node);
      const account = (await writer.getAccount("default"))!;
      await cached.getSenderIdentities(account.id); // cached under the current version
      for (let i = 0; i < 25; i++) {
        await writer.addSender(account.id, `sender${i}@push.test`);
        // No await in between: the node has already taken the change.
        const pushed = node.lookupPush?.current();
        assert.equal(pushed, await databaseVersion(writer), `write ${i}`);
        const identities = await cached.getSenderIdentities(account.id);
        assert.ok(identities.addresses.has(`sender${i}@push.test`), `write ${i} seen through the cache`);
      }
      await writer.revokeApiKey("none-such"); // a write that changes nothing returns too
      const { rows } = await writer.pool.query("SELECT seen_version FROM lookup_watchers");
      assert.deepEqual(
        rows.map((r) => Number(r.seen_version)),
        [await databaseVersion(writer)],
      );
    } finally {
      await close();
    }
  });

  it("waits for a silent watcher only up to the timeout, then removes it", async () => {
    const { node, writer, url, close } = await nodeAndWriter(600);
    const silent = new pg.Client({ connectionString: url });
    await silent.connect();
    try {
      // A watcher whose backend is alive but which never confirms (a hung node).
      await silent.query(
        `INSERT INTO lookup_watchers (listener_pid, label, seen_version, registered_at)
         VALUES (pg_backend_pid(), 'hung', -1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)`,
      );
      // A row left by a dead backend whose pid a later backend took (here: the writer's own
      // connection, started after the row's time): not alive, so not waited for nor evicted.
      await silent.query(
        `INSERT INTO lookup_watchers (listener_pid, label, seen_version, registered_at)
         SELECT pid, 'reused', -1, 0 FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND pid NOT IN (SELECT listener_pid FROM lookup_watchers) LIMIT 1`,
      );
      const account = (await writer.getAccount("default"))!;
      const start = performance.now();
      await writer.addSender(account.id, "slow@push.test");
      const waited = performance.now() - start;
      assert.ok(waited >= 600, `the write waited ${waited.toFixed(0)} ms for the silent watcher`);
      const { rows } = await writer.pool.query("SELECT label FROM lookup_watchers ORDER BY label");
      assert.deepEqual(
        rows.map((r) => r.label).filter((l) => l === "hung" || l === "reused"),
        ["reused"],
        "the silent watcher's row is gone; the reused pid's row was neither waited for nor evicted",
      );
      assert.equal(rows.length, 2, "the live node's row stays");
      assert.equal(node.lookupPush?.current(), await databaseVersion(writer));
    } finally {
      await silent.end();
      await close();
    }
  });

  it("ignores a dead node's row, and the node reads until it has registered again", async () => {
    const { node, writer, close } = await nodeAndWriter(20_000);
    try {
      const before = await writer.pool.query("SELECT listener_pid FROM lookup_watchers");
      const pid = Number(before.rows[0].listener_pid);
      await writer.pool.query("SELECT pg_terminate_backend($1)", [pid]);
      await waitFor(() => node.lookupPush?.current() === undefined, {
        what: "the node to stop using its version",
      });
      const account = (await writer.getAccount("default"))!;
      const start = performance.now();
      await writer.addSender(account.id, "after-kill@push.test");
      const waited = performance.now() - start;
      assert.ok(waited < 10_000, `a dead backend's row held the write ${waited.toFixed(0)} ms`);
      // While it is not registered the node's lookups read the version themselves.
      const cached = withLookupCache(node);
      const identities = await cached.getSenderIdentities(account.id);
      assert.ok(identities.addresses.has("after-kill@push.test"));
      const version = await waitFor(() => node.lookupPush?.current(), {
        what: "the node to register again",
        timeoutMs: 15_000,
      });
      assert.equal(version, await databaseVersion(writer));
      const after = await writer.pool.query("SELECT listener_pid FROM lookup_watchers");
      assert.equal(after.rows.length, 1, "registering again removed the dead backend's row");
      assert.notEqual(Number(after.rows[0].listener_pid), pid);
    } finally {
      await close();
    }
  });
});

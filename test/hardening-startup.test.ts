/**
 * Start-up hardening (issue 13 items 5 and 6), with the real `petrel` binary: one serve per
 * database (a second exits with one line naming the first's pid; the lock dies with its process,
 * kill -9 included), a damaged or unopenable database is one line and exit 1, and `petrel backup`
 * takes a consistent copy while serve accepts mail, which restores as docs/operations.md says.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import {
  type PetrelProcess,
  petrelCli,
  petrelOk,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";

const TRUSTED = { auth: { trustedNetworks: [{ network: "127.0.0.1/32", account: "default" }] } };
const dirs: string[] = [];
const running: PetrelProcess[] = [];
after(async () => {
  for (const p of running) await p.stop("SIGKILL");
  for (const d of dirs) removeDataDir(d);
});

function freshDir(): string {
  const d = tempDataDir();
  dirs.push(d);
  return d;
}

async function serve(dataDir: string): Promise<PetrelProcess> {
  const p = await startPetrel(dataDir, { config: TRUSTED });
  running.push(p);
  return p;
}

/** One line on stderr, no stack trace. */
function assertOneLine(stderr: string): void {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, stderr);
  assert.doesNotMatch(stderr, /^\s+at /m);
}

describe("one serve per database", () => {
  it("refuses a second serve with one line naming the first's pid; kill -9 frees the lock", async () => {
    const dataDir = freshDir();
    const first = await serve(dataDir);
    const second = await petrelCli(dataDir, ["serve", "--config", join(dataDir, "petrel-test.yaml")]);
    assert.equal(second.code, 1);
    assertOneLine(second.stderr);
    assert.match(
      second.stderr,
      new RegExp(`another petrel serve \\(pid ${first.child.pid}\\) is already running`),
    );
    assert.match(second.stderr, /petrel\.db/);
    // Admin commands still share the database while serve runs.
    await petrelOk(dataDir, ["accounts", "list"]);
    assert.equal(await first.stop("SIGKILL"), "SIGKILL");
    const third = await serve(dataDir);
    assert.ok(third.ports.submission);
    await third.stop();
  });
});

describe("a database that cannot be opened", () => {
  it("garbage in place of petrel.db: one line with the path and what to do, exit 1", async () => {
    const dataDir = freshDir();
    writeFileSync(join(dataDir, "petrel.db"), Buffer.alloc(8192, "not a database "));
    for (const args of [["serve"], ["accounts", "list"]]) {
      const result = await petrelCli(dataDir, args);
      assert.equal(result.code, 1, args.join(" "));
      assertOneLine(result.stderr);
      assert.match(
        result.stderr,
        new RegExp(`database ${join(dataDir, "petrel.db")} is not a SQLite database`),
      );
      assert.match(result.stderr, /restore it from a backup \(docs\/operations\.md\)/);
    }
  });

  it("a directory in place of petrel.db: one line, exit 1", async () => {
    const dataDir = freshDir();
    mkdirSync(join(dataDir, "petrel.db"));
    const result = await petrelCli(dataDir, ["serve"]);
    assert.equal(result.code, 1);
    assertOneLine(result.stderr);
    assert.match(result.stderr, /petrel\.db cannot be opened/);
  });
});

describe("petrel backup", () => {
  it("copies the store consistently while serve accepts mail; the copy restores", async () => {
    const dataDir = freshDir();
    await petrelOk(dataDir, ["senders", "add", "app@backup.example"]);
    const petrel = await serve(dataDir);
    const session = await RawSmtpSession.open({ port: petrel.ports.submission! });
    const acked: string[] = [];
    let sending = true;
    const load = (async () => {
      for (let i = 0; sending; i++) {
        const reply = await session.send({
          from: "app@backup.example",
          to: ["user@example.com"],
          content: Buffer.from(`From: app@backup.example\r\nSubject: ${i}\r\n\r\n${"body\r\n".repeat(200)}`),
        });
        assert.equal(reply.code, 250, reply.text);
        acked.push(/queued as (\S+)/.exec(reply.text)![1]!);
      }
    })();
    while (acked.length < 50) await new Promise((r) => setTimeout(r, 20));
    const ackedBefore = acked.length;
    const copy = join(dataDir, "copy.db");
    const out = JSON.parse(await petrelOk(dataDir, ["backup", copy, "--json"])) as { bytes: number };
    assert.ok(out.bytes > 0);
    sending = false;
    await load;
    await session.quit();
    const ackedTotal = acked.length;

    const db = new Database(copy, { readonly: true });
    try {
      assert.equal(db.pragma("integrity_check", { simple: true }), "ok");
      const ids = new Set(db.prepare("SELECT id FROM messages").pluck().all() as string[]);
      for (const id of acked.slice(0, ackedBefore))
        assert.ok(ids.has(id), `${id} acknowledged before the backup`);
      console.log(
        `# backup under load: ${ids.size} messages in the copy, ${ackedBefore} acknowledged before it started, ${ackedTotal} in all`,
      );
    } finally {
      db.close();
    }
    // A second backup to the same name is refused, nothing overwritten.
    const again = await petrelCli(dataDir, ["backup", copy]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists/);

    // Restore (docs/operations.md): stop serve, replace the database and drop its WAL files.
    assert.equal(await petrel.stop(), 0);
    for (const suffix of ["", "-wal", "-shm"]) rmSync(join(dataDir, `petrel.db${suffix}`), { force: true });
    copyFileSync(copy, join(dataDir, "petrel.db"));
    const restored = await serve(dataDir);
    const listed = JSON.parse(await petrelOk(dataDir, ["queue", "list", "--json", "--limit", "10000"])) as {
      messages: Array<{ id: string }>;
    };
    const restoredIds = new Set(listed.messages.map((m) => m.id));
    for (const id of acked.slice(0, ackedBefore)) assert.ok(restoredIds.has(id), `${id} restored`);
    await restored.stop();
  });
});

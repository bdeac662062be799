/**
 * The CLI against a running serve (issue 11): serve writes the addresses it actually listens on
 * (ephemeral ports here) to dataDir/listening.json, and `petrel send` with no --port reaches it;
 * `queue show` prints Subject, From, Message-ID and size and aligns its columns by display width;
 * queue and event IDs match in lower case; after serve stops the file is gone and `send` says
 * where it tried.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  type PetrelProcess,
  petrelCli,
  petrelOk,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";

/** Terminal columns, counted independently of the code: CJK ideographs are two columns wide. */
function columns(text: string): number {
  let n = 0;
  for (const ch of text) n += /[\u3000-\u9fff\uff00-\uffef]/.test(ch) ? 2 : 1;
  return n;
}

describe("petrel send and queue show against a running serve", () => {
  let dataDir: string;
  let petrel: PetrelProcess;
  let key: string;

  before(async () => {
    dataDir = tempDataDir("petrel-cli-serve-");
    await petrelOk(dataDir, ["senders", "add", "noreply@your-app.com"]);
    key = (await petrelOk(dataDir, ["keys", "create", "--name", "cli"])).trim();
    petrel = await startPetrel(dataDir);
  });

  after(async () => {
    await petrel?.stop();
  });

  it("writes the addresses serve listens on; petrel send uses them with no port flag", async () => {
    const file = JSON.parse(readFileSync(join(dataDir, "listening.json"), "utf8"));
    assert.equal(file.pid, petrel.child.pid);
    const byName = Object.fromEntries(
      (file.listeners as Array<{ name: string; host: string; port: number; tls: string }>).map((l) => [
        l.name,
        l,
      ]),
    );
    assert.deepEqual(byName.submission, {
      name: "submission",
      host: "127.0.0.1",
      port: petrel.ports.submission,
      tls: "starttls",
    });
    assert.deepEqual(byName.submissions, {
      name: "submissions",
      host: "127.0.0.1",
      port: petrel.ports.submissions,
      tls: "implicit",
    });
    assert.equal(byName.bounces?.port, petrel.ports.bounces);
    assert.notEqual(petrel.ports.submission, 587);
    const sent = await petrelCli(
      dataDir,
      [
        "send",
        "--from",
        "noreply@your-app.com",
        "--to",
        "user@example.com",
        "用户@例子.测试",
        "--subject",
        "Grüße 你好",
      ],
      { PETREL_API_KEY: key },
    );
    assert.equal(sent.code, 0, sent.stderr);
    assert.match(sent.stdout, /^250 2\.0\.0 Ok: queued as [0-9A-Z]{26}\n$/);
  });

  it("shows Subject, From, Message-ID, size and aligned recipients; takes a lower-case ID", async () => {
    const id = String(
      petrel
        .logRecords()
        .filter((r) => r.msg === "queued")
        .at(-1)!.queueId,
    );
    const lower = id.toLowerCase();
    const text = await petrelOk(dataDir, ["queue", "show", lower]);
    assert.match(text, new RegExp(`^ID: +${id}\\n`));
    assert.match(text, /\nSubject: +Grüße 你好\n/);
    assert.match(text, /\nFrom: +noreply@your-app\.com\n/);
    assert.match(text, /\nMessage-ID: +<[^>]+>\n/);
    assert.match(text, /\nSize: +\d+ bytes\n/);
    // Every label's value starts in the same column.
    const labelled = text.split("\n\n")[0]!.split("\n");
    const starts = new Set(labelled.map((line) => /^[A-Za-z][A-Za-z -]*?: +/.exec(line)![0].length));
    assert.equal(starts.size, 1, labelled.join("\n"));
    // Recipients: the STATE column starts at the same terminal column on every row, wide
    // characters included (shown with U-labels, stored with A-labels).
    const table = text
      .split("\n\n")[1]!
      .split("\n")
      .filter((l) => l !== "");
    assert.match(table[0]!, /^RECIPIENT +STATE +ATTEMPTS/);
    const rows = table.slice(1);
    assert.equal(rows.length, 2);
    assert.ok(rows.some((r) => r.startsWith("用户@例子.测试 ")));
    const stateColumns = [table[0]!, ...rows].map((row) => {
      const at = row.search(/ (STATE|queued)/);
      return columns(row.slice(0, at)) + /^ +/.exec(row.slice(at))![0].length;
    });
    assert.equal(new Set(stateColumns).size, 1, [table[0], ...rows].join("\n"));
    const json = JSON.parse(await petrelOk(dataDir, ["queue", "show", lower, "--json"]));
    assert.equal(json.id, id);
    assert.equal(json.headers.subject, "Grüße 你好");
    assert.deepEqual([...json.recipients].sort(), ["user@example.com", "用户@xn--fsqu00a.xn--0zwm56d"]);
    // The other commands that take an ID match it in lower case too.
    assert.match(await petrelOk(dataDir, ["queue", "hold", lower]), /2 recipient\(s\) held/);
    assert.match(await petrelOk(dataDir, ["queue", "release", lower]), /2 recipient\(s\) released/);
    const events = await petrelOk(dataDir, ["events", "tail", "--message", lower, "--json"]);
    assert.ok(events.trim().split("\n").length >= 2);
    assert.ok(events.includes(id));
  });

  it("removes the file when serve stops; send then says where it tried", async () => {
    await petrel.stop();
    assert.equal(existsSync(join(dataDir, "listening.json")), false);
    const sent = await petrelCli(
      dataDir,
      ["send", "--from", "noreply@your-app.com", "--to", "user@example.com"],
      {
        PETREL_API_KEY: key,
        PETREL_SMTP__SUBMISSION__PORT: "1",
      },
    );
    assert.equal(sent.code, 1);
    assert.match(
      sent.stderr,
      /cannot connect to 127\.0\.0\.1:1, from the configuration \(no running petrel serve found for this data directory\)/,
    );
  });
});

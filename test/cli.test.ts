/**
 * The petrel command as an operator uses it: --help everywhere, keys, accounts, domains and
 * senders, config printing, and the one-line bind failure.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { petrelCli, petrelOk, tempDataDir } from "./support/petrel-process.js";

const COMMANDS = [
  ["serve"],
  ["keys"],
  ["keys", "create"],
  ["keys", "list"],
  ["keys", "revoke"],
  ["accounts", "create"],
  ["accounts", "list"],
  ["domains", "add"],
  ["domains", "list"],
  ["domains", "remove"],
  ["senders", "add"],
  ["senders", "list"],
  ["senders", "remove"],
  ["queue", "list"],
  ["queue", "show"],
  ["send"],
  ["config"],
];

describe("petrel CLI", () => {
  it("has --help on every command, each listing --config and --data-dir", async () => {
    const dataDir = tempDataDir();
    // Four at a time: seventeen node processes at once can outlast the CLI timeout on a busy host.
    const results: Awaited<ReturnType<typeof petrelCli>>[] = [];
    for (let i = 0; i < COMMANDS.length; i += 4)
      results.push(
        ...(await Promise.all(COMMANDS.slice(i, i + 4).map((cmd) => petrelCli(dataDir, [...cmd, "--help"])))),
      );
    for (const [i, result] of results.entries()) {
      const cmd = COMMANDS[i]!.join(" ");
      assert.equal(result.code, 0, `${cmd} --help: ${result.stderr}`);
      assert.match(result.stdout, new RegExp(`Usage: petrel ${cmd}`), cmd);
      if (COMMANDS[i]!.length > 1 || ["serve", "send", "config"].includes(cmd)) {
        assert.match(result.stdout, /--data-dir/, cmd);
        assert.match(result.stdout, /--config/, cmd);
      }
    }
  });

  it("creates a key once, lists it without the key, and revokes it", async () => {
    const dataDir = tempDataDir();
    const created = await petrelCli(dataDir, ["keys", "create", "--name", "app"]);
    assert.equal(created.code, 0, created.stderr);
    const key = created.stdout.trim();
    assert.match(key, /^pt_[A-Za-z0-9_-]{43}$/);
    assert.match(created.stderr, /shown only this once/);
    const list = await petrelOk(dataDir, ["keys", "list"]);
    assert.match(list, /^NAME\s+ACCOUNT\s+PREFIX\s+CREATED\s+LAST USED\s+STATUS/);
    assert.match(list, /app\s+default\s+pt_\S{7}…\s/);
    assert.ok(!list.includes(key.slice(10)), "the key itself is never listed");
    const duplicate = await petrelCli(dataDir, ["keys", "create", "--name", "app"]);
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /^petrel: an active key named app already exists\n$/);
    await petrelOk(dataDir, ["keys", "revoke", "app"]);
    assert.match(await petrelOk(dataDir, ["keys", "list"]), /revoked/);
    const again = await petrelCli(dataDir, ["keys", "revoke", "app"]);
    assert.equal(again.code, 1);
  });

  it("keeps domains and senders with one account", async () => {
    const dataDir = tempDataDir();
    await petrelOk(dataDir, ["accounts", "create", "other"]);
    await petrelOk(dataDir, ["domains", "add", "Your-App.com"]);
    const taken = await petrelCli(dataDir, ["domains", "add", "your-app.com", "--account", "other"]);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /already registered/);
    const crossing = await petrelCli(dataDir, ["senders", "add", "x@your-app.com", "--account", "other"]);
    assert.equal(crossing.code, 1);
    const bad = await petrelCli(dataDir, ["domains", "add", "not a domain"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a valid domain name/);
    const missing = await petrelCli(dataDir, ["senders", "add", "a@b.example", "--account", "nobody"]);
    assert.match(missing.stderr, /no account named nobody/);
    await petrelOk(dataDir, ["senders", "add", "solo@elsewhere.example", "--account", "other"]);
    const domains = JSON.parse(await petrelOk(dataDir, ["domains", "list", "--json"]));
    assert.deepEqual(
      domains.map((d: { domain: string; accountName: string; status: string }) => [
        d.domain,
        d.accountName,
        d.status,
      ]),
      [["your-app.com", "default", "unverified"]],
    );
    assert.match(
      await petrelOk(dataDir, ["senders", "list", "--account", "other"]),
      /solo@elsewhere\.example\s+other/,
    );
  });

  it("prints the effective configuration, with environment overrides", async () => {
    const dataDir = tempDataDir();
    const result = await petrelCli(dataDir, ["config", "--json"], { PETREL_SMTP__SUBMISSION__PORT: "2587" });
    assert.equal(result.code, 0, result.stderr);
    const config = JSON.parse(result.stdout);
    assert.equal(config.smtp.submission.port, 2587);
    assert.equal(config.dataDir, dataDir);
    const bad = await petrelCli(dataDir, ["config"], { PETREL_SMTP__SUBMISION__PORT: "1" });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /\n {2}PETREL_SMTP__SUBMISION__PORT: unknown key submision\n/);
  });

  it("shows an empty queue and refuses unknown messages", async () => {
    const dataDir = tempDataDir();
    assert.match(await petrelOk(dataDir, ["queue", "list"]), /The queue is empty\./);
    assert.deepEqual(JSON.parse(await petrelOk(dataDir, ["queue", "list", "--json"])).messages, []);
    const show = await petrelCli(dataDir, ["queue", "show", "01NOPE"]);
    assert.equal(show.code, 1);
    assert.match(show.stderr, /no message 01NOPE/);
  });

  it("exits with one clear line when a port is taken", async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const dataDir = tempDataDir();
      const result = await petrelCli(
        dataDir,
        ["serve", "--host", "127.0.0.1", "--submission-port", String(port), "--tls-port", "0"],
        {
          PETREL_LOG__FORMAT: "json",
        },
      );
      assert.equal(result.code, 1);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.equal(
        lines[0],
        `petrel: cannot listen on 127.0.0.1:${port} for submission: the port is already in use; change it with --submission-port, smtp.submission.port or PETREL_SMTP__SUBMISSION__PORT`,
      );
    } finally {
      blocker.close();
    }
  });
});

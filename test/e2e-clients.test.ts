/**
 * End to end with the clients users already have: the Python smtplib snippet from the README
 * (unchanged but for host, port, key and the test CA), Nodemailer over STARTTLS and implicit
 * TLS, swaks, and `petrel send` — each against a real `petrel serve` process.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import nodemailer from "nodemailer";
import {
  type PetrelProcess,
  petrelCli,
  petrelOk,
  readCa,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { openTestStore } from "./support/test-store.js";
import { waitFor } from "./support/wait.js";

const QUEUED = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]{26})$/;

function run(
  cmd: string,
  args: string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** The README's snippet, byte for byte except the four marked values. */
function pythonSnippet(port: number, key: string, caFile: string): string {
  return `import smtplib
from email.mime.text import MIMEText
message = MIMEText("This is the content of your daily update.")
message['Subject'] = "Your Daily Update"; message['From'] = "noreply@your-app.com"; message['To'] = "user@example.com"
context = smtplib.ssl.create_default_context(cafile=${JSON.stringify(caFile)})
with smtplib.SMTP("127.0.0.1", ${port}) as server:
    server.starttls(context=context)
    server.login("apikey", ${JSON.stringify(key)})
    server.sendmail("noreply@your-app.com", "user@example.com", message.as_string())
print(message.as_string(), end="")
`;
}

describe("end to end with real clients", () => {
  let dataDir: string;
  let petrel: PetrelProcess;
  let key: string;

  before(async () => {
    dataDir = tempDataDir();
    await petrelOk(dataDir, ["senders", "add", "noreply@your-app.com"]);
    await petrelOk(dataDir, ["senders", "add", "hello@app2.example"]);
    key = (await petrelOk(dataDir, ["keys", "create", "--name", "e2e"])).trim();
    petrel = await startPetrel(dataDir);
  });

  after(async () => {
    await petrel?.stop();
    removeDataDir(dataDir);
  });

  async function storedContent(queueId: string): Promise<Buffer> {
    const store = await openTestStore(dataDir);
    try {
      const content = await store.getMessageContent(queueId);
      assert.ok(content, `message ${queueId} is in the queue`);
      return content;
    } finally {
      await store.close();
    }
  }

  async function queueIdFromLogs(before: number): Promise<string> {
    // The server's log comes through a pipe and may trail the client's exit: wait for the line.
    const queuedNow = () => petrel.logRecords().filter((r) => r.msg === "queued");
    await waitFor(() => queuedNow().length > before, { what: "the queued log line", timeoutMs: 10_000 });
    const queued = queuedNow();
    assert.equal(queued.length, before + 1, "exactly one message queued");
    return String(queued[queued.length - 1]!.queueId);
  }

  it("accepts the Python smtplib snippet and stores exactly what was sent plus trace headers", async () => {
    const before = petrel.logRecords().filter((r) => r.msg === "queued").length;
    const script = join(dataDir, "snippet.py");
    writeFileSync(script, pythonSnippet(petrel.ports.submission!, key, petrel.caFile));
    const result = await run("python3", [script]);
    assert.equal(result.code, 0, result.stderr);
    const queueId = await queueIdFromLogs(before);
    const stored = (await storedContent(queueId)).toString("latin1");
    let sent = result.stdout.replace(/\r?\n/g, "\r\n");
    if (!sent.endsWith("\r\n")) sent += "\r\n";
    assert.ok(stored.endsWith(sent), "the stored message ends with the sent message, unchanged");
    const added = stored.slice(0, stored.length - sent.length);
    assert.match(added, /^Received: from client|^Received: from /);
    assert.match(added, new RegExp(`with ESMTPSA id ${queueId}`));
    assert.match(added, /\r\nMessage-ID: <[0-9A-Z]{26}@petrel\.test>\r\n/);
    assert.match(added, /\r\nDate: .+ \+0000\r\n$/);
    const detail = JSON.parse(await petrelOk(dataDir, ["queue", "show", queueId, "--json"]));
    assert.equal(detail.mailFrom, "noreply@your-app.com");
    assert.deepEqual(detail.recipients, ["user@example.com"]);
    assert.equal(detail.apiKeyName, "e2e");
  });

  for (const mode of ["starttls", "implicit"] as const) {
    it(`accepts Nodemailer over ${mode === "starttls" ? "STARTTLS on the submission port" : "implicit TLS"}`, async () => {
      const transport = nodemailer.createTransport({
        host: "127.0.0.1",
        port: mode === "starttls" ? petrel.ports.submission : petrel.ports.submissions,
        secure: mode === "implicit",
        requireTLS: mode === "starttls",
        tls: { ca: readCa(petrel), servername: "localhost" },
        auth: { user: "apikey", pass: key },
      });
      const info = await transport.sendMail({
        from: '"App" <hello@app2.example>',
        to: ["a@example.com", "b@example.org"],
        subject: `via ${mode}`,
        text: "Hello from Nodemailer\n.\nwith a lone dot line",
      });
      transport.close();
      const match = QUEUED.exec(info.response);
      assert.ok(match, info.response);
      const stored = (await storedContent(match[1]!)).toString();
      assert.match(stored, new RegExp(`Subject: via ${mode}`));
      assert.match(stored, /\r\n\.\r\nwith a lone dot line/, "dot-stuffing was undone");
      const detail = JSON.parse(await petrelOk(dataDir, ["queue", "show", match[1]!, "--json"]));
      assert.deepEqual(detail.recipients, ["a@example.com", "b@example.org"]);
    });
  }

  it("accepts swaks with STARTTLS and AUTH PLAIN", async () => {
    const result = await run("swaks", [
      "--server",
      `127.0.0.1:${petrel.ports.submission}`,
      "--tls",
      "--auth",
      "PLAIN",
      "--auth-user",
      "apikey",
      "--auth-password",
      key,
      "--from",
      "noreply@your-app.com",
      "--to",
      "user@example.com",
      "--header",
      "Subject: swaks test",
      "--header",
      "From: noreply@your-app.com",
    ]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /<~\s+250 2\.0\.0 Ok: queued as [0-9A-Z]{26}/);
  });

  it("sends with petrel send", async () => {
    const result = await petrelCli(
      dataDir,
      [
        "send",
        "--from",
        "noreply@your-app.com",
        "--to",
        "user@example.com",
        "--port",
        String(petrel.ports.submission),
      ],
      { PETREL_API_KEY: key },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout.trim(), QUEUED);
  });

  it("stops accepting a revoked key at the next AUTH, without a restart", async () => {
    const second = (await petrelOk(dataDir, ["keys", "create", "--name", "short-lived"])).trim();
    const send = () =>
      nodemailer
        .createTransport({
          host: "127.0.0.1",
          port: petrel.ports.submissions,
          secure: true,
          tls: { ca: readCa(petrel), servername: "localhost" },
          auth: { user: "apikey", pass: second },
        })
        .sendMail({ from: "noreply@your-app.com", to: "x@example.com", text: "x" });
    assert.match((await send()).response, QUEUED);
    await petrelOk(dataDir, ["keys", "revoke", "short-lived"]);
    await assert.rejects(send(), (err: { responseCode?: number; response?: string }) => {
      assert.equal(err.responseCode, 535);
      assert.match(err.response ?? "", /^535 5\.7\.8 /);
      return true;
    });
  });

  it("exits cleanly on SIGTERM and has recorded when each key was last used", async () => {
    assert.equal(await petrel.stop("SIGTERM"), 0);
    const keys = JSON.parse(await petrelOk(dataDir, ["keys", "list", "--json"])) as Array<{
      name: string;
      lastUsedAt: number | null;
    }>;
    const used = keys.find((k) => k.name === "e2e");
    assert.ok(
      used?.lastUsedAt && Date.now() - used.lastUsedAt < 120_000,
      "last use of the e2e key is recorded",
    );
  });
});

/**
 * Content normalisation end to end (issue 11), with Python's smtplib through a real `petrel
 * serve`, a real DNS server and a test MX that does not offer SMTPUTF8:
 * - MIMEText(html, "html") with one 5,000-character line → 250; delivered with no line over 998
 *   octets, the decoded HTML identical, the DKIM signature verified by dkimpy;
 * - the same for a long header (folded) and a long line in an attachment;
 * - a UTF-8 Subject sent with SMTPUTF8 to ASCII addresses is delivered, its Subject decoding to
 *   the original; a non-ASCII recipient to that MX still fails with 5.6.7, as a permanent bounce;
 * - a header line that cannot be folded → 550 5.6.0; with smtp.limits.longLines: reject a long
 *   line is refused as before.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import PostalMime from "postal-mime";
import { stringify } from "yaml";
import { dkimpyVerify } from "./support/dkim-verifiers.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { publishRecords } from "./support/domain-zone.js";
import {
  type PetrelProcess,
  petrelCli,
  startPetrel,
  tempDataDir,
  testConfig,
} from "./support/petrel-process.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";
import { waitFor } from "./support/wait.js";

let dns: TestDnsServer;
let mx: TestMx;

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function longestLine(buf: Buffer): number {
  return Math.max(
    ...buf
      .toString("latin1")
      .split("\r\n")
      .map((l) => l.length),
  );
}

function serveConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    dns: { servers: [dns.server], timeoutMs: 500, tries: 1 },
    domains: { spf: { ips: ["127.0.0.1"] }, recheckIntervalMs: 0 },
    delivery: { enabled: true, port: mx.port, pollIntervalMs: 20, idleTimeoutMs: 500 },
    ...extra,
  };
}

before(async () => {
  // An MX that does not offer SMTPUTF8, as many still do not.
  mx = await startTestMx({ address: "127.0.0.2", smtputf8: false });
  dns = await startDnsServer({
    "example.com": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
    "mx.example.com": { A: ["127.0.0.2"] },
  });
});

after(async () => {
  await mx.close();
  await dns.close();
});

describe("content normalisation through petrel serve", () => {
  let dataDir: string;
  let petrel: PetrelProcess;
  let key: string;

  async function cliOk(args: string[]): Promise<string> {
    const result = await petrelCli(dataDir, [...args, "--config", join(dataDir, "cli.yaml")]);
    assert.equal(result.code, 0, `petrel ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  }

  before(async () => {
    dataDir = tempDataDir("petrel-content-");
    writeFileSync(join(dataDir, "cli.yaml"), stringify(testConfig(dataDir, serveConfig())));
    key = (await cliOk(["keys", "create", "--name", "content"])).trim();
    publishRecords(dns, JSON.parse(await cliOk(["domains", "add", "app.example", "--format", "json"])));
    await cliOk(["domains", "verify", "app.example"]);
    petrel = await startPetrel(dataDir, { config: serveConfig() });
  });

  after(async () => {
    await petrel?.stop();
  });

  /**
   * Runs a Python snippet that builds `message` (Python code) and sends it with smtplib; prints the
   * reply to DATA. `mailOptions` e.g. ["SMTPUTF8"].
   */
  async function python(build: string, to = "user@example.com", mailOptions: string[] = []): Promise<string> {
    const script = join(dataDir, `send-${Date.now()}.py`);
    writeFileSync(
      script,
      `import smtplib, sys
from email.mime.text import MIMEText
from email.mime.multipart import MIMEMultipart
from email.mime.application import MIMEApplication
from email.encoders import encode_7or8bit
from email.message import EmailMessage
from email import policy
${build}
context = smtplib.ssl.create_default_context(cafile=${JSON.stringify(petrel.caFile)})
with smtplib.SMTP("127.0.0.1", ${petrel.ports.submission}) as server:
    server.starttls(context=context)
    server.login("apikey", ${JSON.stringify(key)})
    data = message if isinstance(message, (bytes, str)) else message.as_bytes() if isinstance(message, EmailMessage) else message.as_string()
    try:
        server.sendmail("noreply@app.example", ${JSON.stringify(to)}, data, mail_options=${JSON.stringify(mailOptions)})
        print("250")
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
`,
    );
    const result = await run("/usr/bin/python3", [script]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.trim();
  }

  /** The message the MX received after `count` messages, with its queue ID. */
  async function delivered(count: number): Promise<{ content: Buffer; queueId: string }> {
    await mx.waitForMessages(count + 1);
    const content = mx.messages[count]!.content;
    return { content, queueId: /id ([0-9A-Z]{26})/.exec(content.toString("latin1"))![1]! };
  }

  async function dkimpyPasses(content: Buffer): Promise<void> {
    const [results] = await dkimpyVerify(dns.port, [content]);
    assert.deepEqual(results, [{ result: "pass", domain: "app.example", selector: "petrel1" }]);
  }

  it("delivers MIMEText(html, 'html') with a 5,000-character line: re-encoded, same HTML, DKIM valid", async () => {
    const html = `<html><body>${'<td style="padding:0">Hello &amp; welcome</td>'.repeat(110)}</body></html>`;
    assert.ok(html.length > 5000);
    const count = mx.messages.length;
    const reply = await python(
      `html = ${JSON.stringify(html)}
message = MIMEText(html, "html")
message["Subject"] = "Welcome"; message["From"] = "noreply@app.example"; message["To"] = "user@example.com"`,
    );
    assert.equal(reply, "250");
    const { content } = await delivered(count);
    assert.ok(longestLine(content) <= 998, `longest line ${longestLine(content)}`);
    assert.match(content.toString("latin1"), /\r\nContent-Transfer-Encoding: quoted-printable\r\n/);
    assert.equal((await PostalMime.parse(content)).html?.replace(/\r?\n$/, ""), html);
    await dkimpyPasses(content);
  });

  it("folds a long header and re-encodes an attachment with a long line; DKIM valid", async () => {
    const references = Array.from({ length: 40 }, (_, i) => `<thread-${i}.0123456789@app.example>`).join(" ");
    const csv = Array.from({ length: 300 }, (_, i) => `${i};value-${i}`).join(",");
    const count = mx.messages.length;
    const reply = await python(
      `message = MIMEMultipart()
message["Subject"] = "Report"; message["From"] = "noreply@app.example"; message["To"] = "user@example.com"
message.attach(MIMEText("The report is attached."))
part = MIMEApplication(${JSON.stringify(csv)}.encode(), "octet-stream", _encoder=encode_7or8bit)
part.add_header("Content-Disposition", "attachment", filename="report.csv")
message.attach(part)
message = message.as_string().replace("Subject: Report", "References: " + ${JSON.stringify(references)} + "\\nSubject: Report", 1)`,
    );
    assert.equal(reply, "250");
    const { content } = await delivered(count);
    assert.ok(longestLine(content) <= 998, `longest line ${longestLine(content)}`);
    const parsed = await PostalMime.parse(content);
    const refs = parsed.headers.find((h) => h.key === "references")!.value;
    assert.equal(refs.replace(/\s+/g, " "), references, "the folded header unfolds to the original");
    assert.equal(parsed.text?.trim(), "The report is attached.");
    assert.equal(Buffer.from(parsed.attachments[0]!.content as ArrayBuffer).toString(), csv);
    await dkimpyPasses(content);
  });

  it("delivers a UTF-8 Subject with ASCII addresses to an MX without SMTPUTF8", async () => {
    const subject = "Grüße — 你好, your order has shipped";
    const count = mx.messages.length;
    const reply = await python(
      `message = EmailMessage(policy=policy.SMTPUTF8)
message["Subject"] = ${JSON.stringify(subject)}; message["From"] = "Zoë <noreply@app.example>"; message["To"] = "user@example.com"
message.set_content("Hällo")
message = message.as_bytes()
assert b"\\xc3\\xbc" in message.split(b"\\n\\n")[0], "raw UTF-8 in the header section"`,
      "user@example.com",
      ["SMTPUTF8"],
    );
    assert.equal(reply, "250");
    const { content } = await delivered(count);
    const header = content.subarray(0, content.indexOf("\r\n\r\n"));
    assert.ok(!header.some((b) => b > 0x7f), "no raw UTF-8 left in the header");
    const parsed = await PostalMime.parse(content);
    assert.equal(parsed.subject, subject);
    assert.equal(parsed.from?.name, "Zoë");
    assert.equal(parsed.text?.trim(), "Hällo");
    await dkimpyPasses(content);
  });

  it("still bounces a non-ASCII recipient at such an MX with 5.6.7, as a permanent failure", async () => {
    const queuedBefore = petrel.logRecords().filter((r) => r.msg === "queued");
    const reply = await python(
      `message = EmailMessage(policy=policy.SMTPUTF8)
message["Subject"] = "Grüße"; message["From"] = "noreply@app.example"; message["To"] = "用户@example.com"
message.set_content("x")`,
      "用户@example.com",
      ["SMTPUTF8"],
    );
    assert.equal(reply, "250");
    // The server's log comes through a pipe and may trail the reply: wait for this message's line.
    const queueId = String(
      (
        await waitFor(
          () =>
            petrel
              .logRecords()
              .filter((r) => r.msg === "queued" && queuedBefore.every((q) => q.queueId !== r.queueId))
              .at(-1),
          { what: "the queued log line", timeoutMs: 10_000 },
        )
      ).queueId,
    );
    let detail: { recipientDetails: Array<{ state: string; lastReply: string | null }> };
    for (;;) {
      detail = JSON.parse(await cliOk(["queue", "show", queueId, "--json"]));
      if (
        detail.recipientDetails[0]!.state !== "queued" &&
        detail.recipientDetails[0]!.state !== "delivering"
      )
        break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(detail.recipientDetails[0]!.state, "bounced");
    assert.match(detail.recipientDetails[0]!.lastReply ?? "", /^553 5\.6\.7 /);
    const events = (await cliOk(["events", "tail", "--message", queueId, "--json"]))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { type: string; bounceClass?: string | null });
    const bounce = events.find((e) => e.type === "bounce");
    assert.ok(bounce, JSON.stringify(events));
  });

  it("refuses a header line that cannot be folded with 550 5.6.0", async () => {
    const reply = await python(
      `message = "From: noreply@app.example\\nTo: user@example.com\\nX-Token: " + "A" * 1200 + "\\nSubject: t\\n\\nbody\\n"`,
    );
    assert.equal(reply, "550 5.6.0 Message contains a line longer than 998 characters");
  });
});

describe("smtp.limits.longLines: reject", () => {
  it("refuses a long body line with 550 5.6.0, as before", async () => {
    const dataDir = tempDataDir("petrel-content-reject-");
    await petrelCli(dataDir, ["senders", "add", "noreply@app.example"]);
    const key = (await petrelCli(dataDir, ["keys", "create", "--name", "r"])).stdout.trim();
    const petrel = await startPetrel(dataDir, {
      config: serveConfig({ smtp: { limits: { longLines: "reject" } } }),
    });
    try {
      const script = join(dataDir, "send.py");
      writeFileSync(
        script,
        `import smtplib
from email.mime.text import MIMEText
message = MIMEText("x" * 5000, "html")
message["From"] = "noreply@app.example"
context = smtplib.ssl.create_default_context(cafile=${JSON.stringify(petrel.caFile)})
with smtplib.SMTP("127.0.0.1", ${petrel.ports.submission}) as server:
    server.starttls(context=context)
    server.login("apikey", ${JSON.stringify(key)})
    try:
        server.sendmail("noreply@app.example", "user@example.com", message.as_string())
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
`,
      );
      const result = await run("/usr/bin/python3", [script]);
      assert.equal(result.stdout.trim(), "550 5.6.0 Message contains a line longer than 998 characters");
    } finally {
      await petrel.stop();
    }
  });
});

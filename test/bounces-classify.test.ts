/**
 * The bounce classifier over real remote replies (Gmail, Outlook/Microsoft 365, Yahoo/AOL,
 * iCloud, Proofpoint, Mimecast, Postfix, Exim, Sendmail, and Petrel's own local replies), each
 * with the class a careful postmaster would give it; the real DSN samples in
 * ../shared/samples/dsn (INDEX.tsv gives each one's expected class) through the parser and the
 * classifier; and operator rules from config taking precedence over the table.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { classifyBounce, createClassifier } from "../src/bounces/classify.js";
import { interpret } from "../src/bounces/interpret.js";
import { parseReport } from "../src/bounces/report.js";
import type { BounceClass } from "../src/bounces/rules.js";
import { configSchema } from "../src/config/schema.js";
import { parseReply } from "../src/delivery/smtp-client.js";
import { SAMPLES } from "./support/bounce-samples.js";

type Case = readonly [source: string, reply: string, expected: BounceClass];

// Each reply as its server sends it (continuation lines joined, as smtp-client.ts stores them).
const REPLIES: readonly Case[] = [
  // ── Gmail / Google Workspace ──
  [
    "gmail",
    "550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser z2si1584129pfn.61 - gsmtp",
    "invalid-recipient",
  ],
  [
    "gmail",
    "552-5.2.2 The email account that you tried to reach is over quota. Please direct the recipient to 552 5.2.2 https://support.google.com/mail/?p=OverQuotaPerm a1si123 - gsmtp",
    "mailbox-full",
  ],
  [
    "gmail",
    "452-4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to 452 4.2.2 https://support.google.com/mail/?p=OverQuotaTemp a1si123 - gsmtp",
    "mailbox-full",
  ],
  [
    "gmail",
    "550-5.2.1 The email account that you tried to reach is disabled. Learn more at 550 5.2.1 https://support.google.com/mail/?p=DisabledUser a1si123 - gsmtp",
    "invalid-recipient",
  ],
  [
    "gmail",
    "552-5.3.4 Your message exceeded Google's message size limits. Please visit 552 5.3.4 https://support.google.com/mail/?p=MaxSizeError to view our size guidelines. a1si - gsmtp",
    "message-too-large",
  ],
  [
    "gmail",
    "550-5.7.26 This mail has been blocked because the sender is unauthenticated. 550-5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM. 550 5.7.26 a1si - gsmtp",
    "auth-failure",
  ],
  [
    "gmail",
    "550-5.7.25 The IP address sending this message does not have a PTR record setup, or the 550-5.7.25 corresponding forward DNS entry does not point to the sending IP. a1si - gsmtp",
    "auth-failure",
  ],
  [
    "gmail",
    "421-4.7.0 This message is suspicious due to the very low reputation of the sending IP address. 421-4.7.0 To protect our users from spam, mail sent from your IP address has been temporarily 421 4.7.0 rate limited. a1si - gsmtp",
    "reputation",
  ],
  [
    "gmail",
    "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your DKIM domain [example.com 30]. To protect our users from spam, mail sent from your domain has been temporarily rate limited. a1si - gsmtp",
    "reputation",
  ],
  [
    "gmail",
    "550-5.7.1 Our system has detected that this message is likely unsolicited mail. To reduce the 550-5.7.1 amount of spam sent to Gmail, this message has been blocked. a1si - gsmtp",
    "policy-or-spam",
  ],
  [
    "gmail",
    "450-4.2.1 The user you are trying to contact is receiving mail too quickly. Please resend your 450 4.2.1 message at a later time. a1si - gsmtp",
    "transient",
  ],
  [
    "google workspace",
    "550 5.7.1 Unauthenticated email is not accepted from this domain. DMARC policy reject a1si - gsmtp",
    "auth-failure",
  ],
  // ── Outlook.com / Microsoft 365 ──
  [
    "outlook",
    "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]",
    "invalid-recipient",
  ],
  [
    "microsoft 365",
    "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient user@contoso.com not found by SMTP address lookup",
    "invalid-recipient",
  ],
  [
    "microsoft 365",
    "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [AM0PR01MB1234.eurprd01.prod.exchangelabs.com]",
    "invalid-recipient",
  ],
  [
    "outlook",
    "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S3113)",
    "reputation",
  ],
  [
    "outlook",
    "550 5.7.1 Unfortunately, messages from [192.0.2.25] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).",
    "policy-or-spam",
  ],
  [
    "microsoft 365",
    "550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification and has a DMARC policy of reject.",
    "auth-failure",
  ],
  [
    "outlook",
    "550 5.7.515 Access denied, sending domain [example.com] doesn't meet the required authentication level.",
    "auth-failure",
  ],
  [
    "outlook",
    "451 4.7.500 Server busy. Please try again later from [192.0.2.25]. (S77714) [BL02EPF0001A0FA.namprd09.prod.outlook.com]",
    "reputation",
  ],
  [
    "outlook",
    "550 5.7.606 Access denied, banned sending IP [192.0.2.25]. To request removal from this list please visit https://sender.office.com/",
    "policy-or-spam",
  ],
  [
    "exchange",
    "554 5.2.0 STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
    "mailbox-full",
  ],
  // ── Yahoo / AOL ──
  [
    "yahoo",
    "554 delivery error: dd This user doesn't have a yahoo.com account (user@yahoo.com) [0] - mta1234.mail.ne1.yahoo.com",
    "invalid-recipient",
  ],
  [
    "yahoo",
    "421 4.7.0 [TSS04] Messages from 192.0.2.192 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.verizonmedia.com/error-codes",
    "reputation",
  ],
  [
    "yahoo",
    "553 5.7.2 [TSS09] All messages from 192.0.2.25 will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
    "policy-or-spam",
  ],
  [
    "yahoo",
    "554 5.7.9 Message not accepted for policy reasons.  See https://help.yahoo.com/kb/postmaster/SLN7253.html",
    "policy-or-spam",
  ],
  [
    "yahoo",
    "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM.",
    "auth-failure",
  ],
  ["aol", "552 1 Requested mail action aborted, mailbox not found", "invalid-recipient"],
  // ── iCloud, Comcast ──
  ["icloud", "550 5.1.1 <user@icloud.com>: user does not exist", "invalid-recipient"],
  ["icloud", "552 5.2.2 <user@icloud.com>: user is over quota", "mailbox-full"],
  ["comcast", "550 5.1.1 Not our Customer", "invalid-recipient"],
  // ── Proofpoint ──
  ["proofpoint", "554 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.25", "policy-or-spam"],
  ["proofpoint", "550 5.1.1 User Unknown", "invalid-recipient"],
  [
    "proofpoint",
    "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using Proofpoint Dynamic Reputation",
    "policy-or-spam",
  ],
  // ── Mimecast ──
  [
    "mimecast",
    "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 [AbCdEfGh.uk81]",
    "invalid-recipient",
  ],
  [
    "mimecast",
    "554 Email rejected due to security policies - https://community.mimecast.com/docs/DOC-1369#554 [AbCdEfGh.us292]",
    "policy-or-spam",
  ],
  [
    "mimecast",
    "550 Rejected by header based Anti-Spoofing policy: sender@example.com - https://community.mimecast.com/docs/DOC-1369#550",
    "auth-failure",
  ],
  [
    "mimecast",
    "550 DMARC Policy Rejection - https://community.mimecast.com/docs/DOC-1369#550 [AbCd.uk1]",
    "auth-failure",
  ],
  [
    "mimecast",
    "451 Open relay not allowed - https://community.mimecast.com/docs/DOC-1369#451 [AbCd.uk1]",
    "policy-or-spam",
  ],
  // ── Postfix ──
  [
    "postfix",
    "550 5.1.1 <user@example.com>: Recipient address rejected: User unknown in local recipient table",
    "invalid-recipient",
  ],
  ["postfix", "450 4.1.2 <user@nx.example>: Recipient address rejected: Domain not found", "transient"],
  [
    "postfix",
    "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.25",
    "policy-or-spam",
  ],
  [
    "postfix",
    "450 4.7.1 <user@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html",
    "transient",
  ],
  ["postfix", "552 5.3.4 Message size exceeds fixed limit", "message-too-large"],
  ["postfix", "454 4.7.1 <user@example.com>: Relay access denied", "policy-or-spam"],
  ["postfix", "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.25]", "auth-failure"],
  [
    "postfix",
    "550 5.7.23 <user@example.com>: Recipient address rejected: Message rejected due to: SPF fail - not authorized.",
    "auth-failure",
  ],
  ["postfix", "452 4.2.2 <user@example.com>: Recipient address rejected: Mailbox full", "mailbox-full"],
  // ── Exim / cPanel ──
  ["exim", "550 Unrouteable address", "invalid-domain"],
  ["exim", "550 No Such User Here", "invalid-recipient"],
  [
    "exim",
    "550-Verification failed for <b+x@bounces.example.com> 550-No Such User Here 550 Sender verify failed",
    "auth-failure",
  ],
  ["exim", "552 Message size exceeds maximum permitted", "message-too-large"],
  ["exim", "550 rejected because 192.0.2.25 is in a black list at zen.spamhaus.org", "policy-or-spam"],
  ["exim", "550 Administrative prohibition", "policy-or-spam"],
  ["exim", "451 Temporary local problem - please try later", "transient"],
  ["exim", "552 Mailbox quota exceeded", "mailbox-full"],
  // ── Sendmail ──
  [
    "sendmail",
    "550 5.1.2 <neko@xn--cesupi09d.jp>... Host unknown (Name server: xn--cesupi09d.jp.: host not found)",
    "invalid-domain",
  ],
  ["sendmail", "552 5.2.3 Message size exceeds fixed maximum message size (10485760)", "message-too-large"],
  ["sendmail", "550 5.7.1 <user@example.com>... Relaying denied", "policy-or-spam"],
  // ── Petrel's own replies (src/delivery) ──
  ["petrel", "550 5.1.2 Host or domain name not found: nx.example", "invalid-domain"],
  ["petrel", "556 5.1.10 Recipient domain example.com accepts no mail (null MX)", "invalid-domain"],
  ["petrel", "550 5.4.4 No usable address for example.com (no A/AAAA)", "invalid-domain"],
  [
    "petrel",
    "451 4.4.1 connect to mx.example.com[192.0.2.1]:25: connect ECONNREFUSED 192.0.2.1:25",
    "transient",
  ],
  ["petrel", "451 4.4.3 DNS lookup failed: SERVFAIL", "transient"],
  [
    "petrel",
    "552 5.3.4 message size 40000000 exceeds the limit 35882577 of mx.example.com",
    "message-too-large",
  ],
  // ── Nothing to go by ──
  ["unknown", "554 Transaction failed", "unknown"],
  ["unknown", "421 Service not available", "transient"],
];

describe("bounce classification table", () => {
  it(`has at least 40 real-world replies (${REPLIES.length})`, () => {
    assert.ok(REPLIES.length >= 40);
  });

  for (const [source, reply, expected] of REPLIES) {
    it(`${source}: ${reply.slice(0, 70)} → ${expected}`, () => {
      const parsed = parseReply(reply);
      const got = classifyBounce({ code: parsed.code, enhanced: parsed.enhanced, text: parsed.text });
      assert.equal(got.class, expected, `decided by ${got.rule}`);
      assert.equal(got.hard, expected === "invalid-recipient" || expected === "invalid-domain");
    });
  }

  it("lets wording that names its cause beat the code, the code beat weak wording; never calls a temporary reply hard", () => {
    // Providers reuse 5.1.1 for a full mailbox (Orange, Comcast) and for a throttle (GoDaddy).
    const full = classifyBounce({ code: 552, enhanced: "5.1.1", text: "552 5.1.1 mailbox full" });
    assert.deepEqual([full.class, full.hard], ["mailbox-full", false]);
    const throttle = classifyBounce({
      text: "550 5.1.1 <a@b.example> - 192.0.2.1 has sent to too many recipients this hour",
    });
    assert.deepEqual([throttle.class, throttle.hard], ["reputation", false]);
    // "access denied" is weaker evidence than 5.1.1.
    const code = classifyBounce({
      code: 550,
      enhanced: "5.1.1",
      text: "550 5.1.1 <a@b.example>: access denied",
    });
    assert.deepEqual([code.class, code.hard], ["invalid-recipient", true]);
    // Enhanced codes in the notations MTAs use inside the text.
    assert.equal(
      classifyBounce({ text: "550 sorry, no mailbox here by that name (#5.1.1 - chkusr)" }).class,
      "invalid-recipient",
    );
    assert.equal(
      classifyBounce({ text: "553 #5.1.8 Domain of sender address b@nx.example does not exist" }).class,
      "auth-failure",
    );
    const temporary = classifyBounce({ code: 450, enhanced: "4.1.1", text: "450 4.1.1 user unknown" });
    assert.deepEqual([temporary.class, temporary.hard], ["transient", false]);
    // A generic status defers to a specific code inside the diagnostic.
    const generic = classifyBounce({ enhanced: "5.0.0", text: "550 5.1.1 <a@b.example>: no" });
    assert.equal(generic.class, "invalid-recipient");
    // An IP address in the text is not an enhanced code.
    assert.equal(classifyBounce({ code: 554, text: "554 rejected from 10.5.1.1" }).class, "unknown");
  });

  it("checks operator rules first: by code, by basic code, by regular expression", () => {
    const classify = createClassifier([
      { match: "5.7.1", class: "reputation" },
      { match: "x.2.x", class: "transient" },
      { match: "554", class: "invalid-recipient" },
      { match: "frobnicated mailbox", class: "invalid-recipient" },
    ]);
    assert.equal(
      classify({ code: 550, enhanced: "5.7.1", text: "550 5.7.1 blocked using zen" }).class,
      "reputation",
    );
    assert.equal(classify({ code: 452, enhanced: "4.2.2", text: "452 4.2.2 full" }).class, "transient");
    const basic = classify({ code: 554, enhanced: "5.0.0", text: "554 Transaction failed" });
    assert.deepEqual([basic.class, basic.hard, basic.rule], ["invalid-recipient", true, "operator:554"]);
    const regex = classify({ code: 550, text: "550 Frobnicated Mailbox here" });
    assert.deepEqual([regex.class, regex.rule], ["invalid-recipient", "operator:frobnicated mailbox"]);
    // Without a matching operator rule, the table decides as before.
    assert.equal(classify({ code: 550, enhanced: "5.1.1", text: "550 5.1.1 no" }).class, "invalid-recipient");
  });

  it("validates bounces.rules at start: a bad pattern or class stops the configuration", () => {
    const parsed = configSchema.parse({ bounces: { rules: [{ match: "x.2.x", class: "mailbox-full" }] } });
    assert.equal(parsed.bounces.rules[0]!.class, "mailbox-full");
    assert.throws(
      () => configSchema.parse({ bounces: { rules: [{ match: "(unclosed", class: "unknown" }] } }),
      /regular expression/,
    );
    assert.throws(() => configSchema.parse({ bounces: { rules: [{ match: "554", class: "hard" }] } }));
    assert.equal(configSchema.parse({}).suppression.mode, "drop");
    assert.equal(configSchema.parse({}).bounces.listener.port, 25);
  });
});

describe("real DSN samples (../shared/samples/dsn/INDEX.tsv)", () => {
  const index = readFileSync(resolve(SAMPLES, "dsn/INDEX.tsv"), "utf8")
    .split("\n")
    .slice(1)
    .filter((line) => line.trim() !== "")
    .map((line) => line.split("\t") as [string, string, string, string, BounceClass]);

  it("lists every sample", () => assert.ok(index.length >= 12));

  for (const [file, recipient, action, status, expected] of index) {
    it(`${file} (${recipient}): ${action} ${status} → ${expected}`, async () => {
      const report = await parseReport(readFileSync(resolve(SAMPLES, "dsn", file)));
      assert.equal(report.kind, "dsn");
      if (report.kind !== "dsn") return;
      const address = recipient.split(" ")[0]!;
      const entry = report.recipients.find((r) => r.finalRecipient === address);
      assert.ok(entry, `an entry for ${address}`);
      assert.equal(entry.action, action);
      assert.equal(entry.status, status);
      // A DSN of only this recipient, as a VERP return path receives it.
      const only = { ...report, recipients: report.recipients.length === 1 ? report.recipients : [entry] };
      const finding = interpret(
        { ...only, recipients: [{ ...entry, action: "failed" }] },
        address,
        classifyBounce,
      );
      assert.equal(finding.kind, "bounce");
      if (finding.kind === "bounce")
        assert.equal(finding.classification.class, expected, finding.classification.rule);
    });
  }
});

describe("petrel bounces classify", () => {
  const cli = resolve(dirname(fileURLToPath(import.meta.url)), "../src/cli/main.js");
  const run = (...args: string[]) =>
    execFileSync(process.execPath, [cli, "bounces", "classify", ...args], {
      encoding: "utf8",
      env: { ...process.env, PETREL_CONFIG: "" },
    });

  it("prints the class, hard or soft, and the rule that decided", () => {
    const out = run("552 5.1.1 <example@comcast.net> recipient rejected - extended quota violation");
    assert.match(out, /^class: mailbox-full$/m);
    assert.match(out, /^hard: +no/m);
    assert.match(out, /^rule: +text:"quota violation"$/m);
  });

  it("--json prints only JSON", () => {
    const out = run("--json", "550-5.1.1 The email account that you tried to reach does not exist.");
    assert.deepEqual(JSON.parse(out), {
      reply: "550-5.1.1 The email account that you tried to reach does not exist.",
      code: 550,
      class: "invalid-recipient",
      hard: true,
      rule: "code:x.1.1",
    });
  });

  it("applies the operator's bounces.rules from the configuration first", () => {
    const dir = mkdtempSync(join(tmpdir(), "petrel-bounces-"));
    try {
      const file = join(dir, "petrel.yaml");
      writeFileSync(
        file,
        'bounces:\n  rules:\n    - { match: "extended quota", class: invalid-recipient }\n',
      );
      const got = JSON.parse(
        run("--json", "-c", file, "552 5.1.1 <a@comcast.net> recipient rejected - extended quota violation"),
      );
      assert.deepEqual(
        [got.class, got.hard, got.rule],
        ["invalid-recipient", true, "operator:extended quota"],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

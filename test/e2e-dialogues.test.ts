/**
 * Every rejection of the submission service, as readable dialogues against a real `petrel serve`
 * (client line / expected reply). Limits are set small in this server's configuration so that
 * each one is quick to reach; the rules are the same at the defaults.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { type DialogueStep, runDialogue, SmtpTestClient } from "./support/dialogue.js";
import { type PetrelProcess, petrelOk, startPetrel, tempDataDir } from "./support/petrel-process.js";
import { waitFor } from "./support/wait.js";

const plain = (key: string) => `AUTH PLAIN ${Buffer.from(`\0apikey\0${key}`).toString("base64")}`;

describe("submission rejections, end to end", () => {
  let dataDir: string;
  let petrel: PetrelProcess;
  let key: string;
  let otherKey: string;
  let ca: Buffer;

  before(async () => {
    dataDir = tempDataDir();
    await petrelOk(dataDir, ["senders", "add", "noreply@your-app.com"]);
    await petrelOk(dataDir, ["accounts", "create", "other"]);
    await petrelOk(dataDir, ["senders", "add", "billing@other-app.example", "--account", "other"]);
    key = (await petrelOk(dataDir, ["keys", "create", "--name", "main"])).trim();
    otherKey = (await petrelOk(dataDir, ["keys", "create", "--name", "other", "--account", "other"])).trim();
    petrel = await startPetrel(dataDir, {
      config: {
        smtp: {
          alternate: { enabled: true, port: 0 },
          limits: {
            maxMessageSize: 4096,
            maxRecipients: 3,
            maxConnections: 12,
            maxConnectionsPerIp: 4,
            // Idle timeout 3 s (its own test waits for it); no session cap that a long dialogue on
            // a busy machine could reach (the slowloris test below runs its own server for that).
            idleTimeoutMs: 3000,
            sessionTimeoutMs: 600_000,
            maxInvalidCommands: 3,
          },
        },
        auth: {
          maxFailures: 3,
          lockoutMs: 2500,
          trustedNetworks: [{ network: "127.0.0.6/32", account: "default" }],
        },
      },
    });
    ca = readFileSync(petrel.caFile);
  });

  after(async () => {
    await petrel?.stop();
  });

  /** EHLO, STARTTLS, EHLO again and AUTH with the key: the start of every authenticated dialogue. */
  const authenticated = (withKey: string): DialogueStep[] => [
    ["C", "EHLO client.test"],
    ["S", /^250 STARTTLS$/m],
    ["C", "STARTTLS"],
    ["S", "220 2.0.0 Ready to start TLS"],
    ["STARTTLS"],
    ["C", "EHLO client.test"],
    ["S", /^250 AUTH PLAIN LOGIN$/m],
    ["C", plain(withKey)],
    ["S", "235 2.7.0 Authentication successful"],
  ];
  const dialogue = (steps: DialogueStep[], opts: Parameters<typeof runDialogue>[2] = {}) =>
    runDialogue(petrel.ports.submission!, steps, { tls: { ca }, ...opts });

  const queued = async () =>
    (
      JSON.parse(await petrelOk(dataDir, ["queue", "list", "--json"])) as {
        messages: Array<{ recipients: string[] }>;
      }
    ).messages;
  const queuedCount = async () => (await queued()).length;

  it("advertises AUTH only after STARTTLS and refuses it before", async () => {
    const client = await dialogue([
      ["C", "EHLO client.test"],
      [
        "S",
        /^250-SIZE 4096\n250-PIPELINING\n250-8BITMIME\n250-SMTPUTF8\n250-ENHANCEDSTATUSCODES\n250 STARTTLS$/m,
      ],
      ["C", plain(key)],
      ["S", "530 5.7.0 Must issue a STARTTLS command first"],
    ]);
    assert.ok(!client.transcript.join("\n").includes("AUTH PLAIN LOGIN"));
  });

  it("never relays without AUTH: 530 5.7.0 before and after TLS", async () => {
    await dialogue([
      ["C", "EHLO client.test"],
      ["S", /^250 /m],
      ["C", "MAIL FROM:<noreply@your-app.com>"],
      ["S", "530 5.7.0 Authentication required"],
      ["C", "STARTTLS"],
      ["S", /^220 /],
      ["STARTTLS"],
      ["C", "EHLO client.test"],
      ["S", /^250 /m],
      ["C", "MAIL FROM:<noreply@your-app.com>"],
      ["S", "530 5.7.0 Authentication required"],
    ]);
  });

  it("answers a wrong key with 535 5.7.8, also through AUTH LOGIN", async () => {
    await dialogue(
      [
        ...authenticated(key).slice(0, 7),
        ["C", plain("pt_wrong")],
        ["S", "535 5.7.8 Authentication credentials invalid"],
        ["C", "AUTH LOGIN"],
        ["S", "334 VXNlcm5hbWU6"],
        ["C", Buffer.from("apikey").toString("base64")],
        ["S", "334 UGFzc3dvcmQ6"],
        ["C", Buffer.from(key).toString("base64")],
        ["S", "235 2.7.0 Authentication successful"],
      ],
      { localAddress: "127.0.0.7" },
    );
  });

  it("locks out an IP after repeated failures, with 421 4.7.0, until the lockout passes", async () => {
    const opts = { localAddress: "127.0.0.5" };
    await dialogue(
      [
        ...authenticated(key).slice(0, 7),
        ["C", plain("pt_bad1")],
        ["S", "535 5.7.8 Authentication credentials invalid"],
        ["C", plain("pt_bad2")],
        ["S", "535 5.7.8 Authentication credentials invalid"],
        ["C", plain("pt_bad3")],
        ["S", "421 4.7.0 Too many failed authentication attempts, try again later"],
        ["CLOSED"],
      ],
      opts,
    );
    await dialogue([["CLOSED"]], {
      ...opts,
      greeting: "421 4.7.0 Too many failed authentication attempts, try again later",
    });
    await dialogue(
      [
        ["C", "QUIT"],
        ["S", /^221 /],
      ],
      { localAddress: "127.0.0.8" },
    ); // another address is not affected
    await new Promise((r) => setTimeout(r, 2600));
    await dialogue([...authenticated(key), ["C", "QUIT"], ["S", /^221 /]], opts);
  });

  it("lets a key send only as its own account's senders", async () => {
    await dialogue([
      ...authenticated(key),
      ["C", "MAIL FROM:<someone@unverified.example>"],
      ["S", "550 5.7.1 Sender address not verified"],
      ["C", "MAIL FROM:<billing@other-app.example>"],
      ["S", "550 5.7.1 Sender address not verified"],
      ["C", "MAIL FROM:<>"],
      ["S", "550 5.7.1 Sender address not verified"],
      ["C", "MAIL FROM:<noreply@your-app.com>"],
      ["S", "250 2.1.0 Ok"],
    ]);
    await dialogue([
      ...authenticated(otherKey),
      ["C", "MAIL FROM:<noreply@your-app.com>"],
      ["S", "550 5.7.1 Sender address not verified"],
      ["C", "MAIL FROM:<billing@other-app.example>"],
      ["S", "250 2.1.0 Ok"],
    ]);
  });

  it("checks From and Sender header fields at the end of DATA", async () => {
    const before = await queuedCount();
    const transaction = (headers: string, expected: string | RegExp): DialogueStep[] => [
      ["C", "MAIL FROM:<noreply@your-app.com>"],
      ["S", "250 2.1.0 Ok"],
      ["C", "RCPT TO:<user@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "DATA"],
      ["S", /^354 /],
      ["RAW", `${headers}\r\nSubject: t\r\n\r\nbody\r\n.\r\n`],
      ["S", expected],
    ];
    await dialogue([
      ...authenticated(key),
      ...transaction("From: billing@other-app.example", "550 5.7.1 Sender address not verified"),
      ...transaction(
        "From: noreply@your-app.com\r\nSender: x@evil.example",
        "550 5.7.1 Sender address not verified",
      ),
      ...transaction("From: noreply@your-app.com, ceo@evil.example", "550 5.7.1 Sender address not verified"),
      ...transaction("To: user@example.com", "550 5.6.0 Message has no From address"),
      ...transaction("From: App <noreply@your-app.com>", /^250 2\.0\.0 Ok: queued as [0-9A-Z]{26}$/),
    ]);
    assert.equal(await queuedCount(), before + 1);
  });

  it("enforces size, recipient, address and line limits with precise replies", async () => {
    await dialogue([
      ...authenticated(key),
      ["C", "MAIL FROM:<noreply@your-app.com> SIZE=5000"],
      ["S", "552 5.3.4 Message size exceeds fixed maximum message size"],
      ["C", "MAIL FROM:<noreply@@your-app.com>"],
      ["S", "553 5.1.3 Bad sender address syntax"],
      ["C", "MAIL FROM:<noreply@your-app.com>"],
      ["S", "250 2.1.0 Ok"],
      ["C", "RCPT TO:<not an address>"],
      ["S", "501 5.1.3 Bad recipient address syntax"],
      ["C", "RCPT TO:<a@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "RCPT TO:<b@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "RCPT TO:<c@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "RCPT TO:<d@example.com>"],
      ["S", "452 4.5.3 Too many recipients"],
      ["C", "DATA"],
      ["S", /^354 /],
      ["RAW", `From: noreply@your-app.com\r\n\r\n${"x".repeat(80)}\r\n`.repeat(60) + ".\r\n"],
      ["S", "552 5.3.4 Message size exceeds fixed maximum message size"],
      ["C", "MAIL FROM:<noreply@your-app.com>"],
      ["S", "250 2.1.0 Ok"],
      ["C", "RCPT TO:<a@example.com>"],
      ["S", "250 2.1.5 Ok"],
      ["C", "DATA"],
      ["S", /^354 /],
      ["RAW", `From: noreply@your-app.com\r\nX-Token: ${"y".repeat(999)}\r\n\r\nbody\r\n.\r\n`],
      ["S", "550 5.6.0 Message contains a line longer than 998 characters"],
      ["C", `NOOP ${"z".repeat(600)}`],
      ["S", "500 5.5.2 Line too long"],
      ["C", "QUIT"],
      ["S", /^221 2\.0\.0/],
    ]);
  });

  it("closes after too many invalid commands in a row", async () => {
    await dialogue([
      ["C", "EHLO client.test"],
      ["S", /^250 /m],
      ["C", "FOO"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["C", "RCPT TO:<a@example.com>"],
      ["S", /^503 5\.5\.1 /],
      ["C", "BAR"],
      ["S", "500 5.5.1 Command unrecognized"],
      ["S", "421 4.7.0 Too many errors, closing connection"],
      ["CLOSED"],
    ]);
  });

  it("limits connections per IP and in total with 421 4.7.0", async () => {
    const held: SmtpTestClient[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const c = await SmtpTestClient.connect(petrel.ports.submission!, { localAddress: "127.0.0.9" });
        await c.expect(/^220 /);
        held.push(c);
      }
      await dialogue([["CLOSED"]], { localAddress: "127.0.0.9", greeting: /^421 4\.7\.0 / });
      // 12 in total: 4 held on .9, then 4 each from .10 and .11, and the 13th is refused.
      for (const address of ["127.0.0.10", "127.0.0.11"]) {
        for (let i = 0; i < 4; i++) {
          const c = await SmtpTestClient.connect(petrel.ports.submission!, { localAddress: address });
          await c.expect(/^220 /);
          held.push(c);
        }
      }
      await dialogue([["CLOSED"]], { localAddress: "127.0.0.12", greeting: /^421 4\.7\.0 / });
    } finally {
      await Promise.all(held.map((c) => c.close()));
      // The server counts a connection until it has seen it close: wait until it has logged the
      // end of the 12 it admitted from .9-.11 (the refused ones never became sessions) before the
      // next test needs a slot.
      const ours = new Set(["127.0.0.9", "127.0.0.10", "127.0.0.11"]);
      await waitFor(
        () =>
          petrel.logRecords().filter((r) => r.msg === "smtp session closed" && ours.has(String(r.remote)))
            .length >= 12,
        { what: "the server to see the 12 held test connections closed" },
      );
    }
  });

  it("closes idle sessions with 421 4.4.2", async () => {
    const opened = Date.now();
    await dialogue(
      [
        ["C", "EHLO client.test"],
        ["S", /^250 /m],
        ["S", "421 4.4.2 Idle timeout, closing connection"],
        ["CLOSED"],
      ],
      // Waits for the reply (a bound on a hang, not a measure of the timeout).
      { localAddress: "127.0.0.13", timeoutMs: 30_000 },
    );
    const elapsed = Date.now() - opened;
    assert.ok(elapsed >= 2900, `closed after ${elapsed} ms, not before the 3 s idle timeout`);
  });

  it("lets a trusted network submit without AUTH, still only as verified senders", async () => {
    // Twice from each address: the second connection gets the remembered answer, which must be
    // the same (the trusted address trusted, its neighbour not).
    for (let round = 0; round < 2; round++) {
      await dialogue(
        [
          ["C", "EHLO printer.lan"],
          ["S", /^250 /m],
          ["C", "MAIL FROM:<anyone@unverified.example>"],
          ["S", "550 5.7.1 Sender address not verified"],
          ["C", "MAIL FROM:<noreply@your-app.com>"],
          ["S", "250 2.1.0 Ok"],
          ["C", "RCPT TO:<user@example.com>"],
          ["S", "250 2.1.5 Ok"],
        ],
        { localAddress: "127.0.0.6" },
      );
      await dialogue(
        [
          ["C", "EHLO printer.lan"],
          ["S", /^250 /m],
          ["C", "MAIL FROM:<noreply@your-app.com>"],
          ["S", "530 5.7.0 Authentication required"],
        ],
        { localAddress: "127.0.0.16" },
      );
    }
  });

  it("serves the alternate STARTTLS listener like the submission port", async () => {
    await runDialogue(petrel.ports.alternate!, [...authenticated(key), ["C", "QUIT"], ["S", /^221 /]], {
      tls: { ca },
    });
  });

  it("never turns one smuggling payload into two messages", async () => {
    const payloads = ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r", "\n.\r"];
    for (const payload of payloads) {
      const before = await queuedCount();
      await dialogue([
        ...authenticated(key),
        ["C", "MAIL FROM:<noreply@your-app.com>"],
        ["S", "250 2.1.0 Ok"],
        ["C", "RCPT TO:<user@example.com>"],
        ["S", "250 2.1.5 Ok"],
        ["C", "DATA"],
        ["S", /^354 /],
        [
          "RAW",
          `From: noreply@your-app.com\r\nSubject: smuggle\r\n\r\nfirst${payload}MAIL FROM:<noreply@your-app.com>\r\n` +
            `RCPT TO:<victim@example.com>\r\nDATA\r\nFrom: noreply@your-app.com\r\n\r\nsmuggled\r\n.\r\n`,
        ],
        ["S", /^250 2\.0\.0 Ok: queued as /],
        ["C", "QUIT"],
        ["S", /^221 /],
      ]);
      const list = await queued();
      assert.equal(list.length, before + 1, `payload ${JSON.stringify(payload)} made one message`);
      assert.ok(!list.some((m) => m.recipients.includes("victim@example.com")), "no smuggled recipient");
    }
  });
});

describe("the session cap, end to end", () => {
  let petrel: PetrelProcess;

  before(async () => {
    // The idle timeout far above the session cap: only the cap can end the session below.
    petrel = await startPetrel(tempDataDir(), {
      config: { smtp: { limits: { idleTimeoutMs: 600_000, sessionTimeoutMs: 2000 } } },
    });
  });

  after(async () => {
    await petrel?.stop();
  });

  it("closes a session that trickles commands past the session timeout (slowloris)", async () => {
    const client = await SmtpTestClient.connect(petrel.ports.submission!, { localAddress: "127.0.0.14" });
    const opened = Date.now();
    try {
      await client.expect(/^220 /);
      let reply = { code: 0, text: "" };
      for (let i = 0; i < 1000 && reply.code !== 421; i++) {
        client.send("NOOP");
        reply = await client.readReply(30_000);
        if (reply.code === 250) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(reply.text, "421 4.4.2 Session timeout, closing connection");
      const elapsed = Date.now() - opened;
      assert.ok(elapsed >= 1900, `closed after ${elapsed} ms, not before the 2 s session cap`);
      await client.expectClosed(30_000);
    } finally {
      await client.close();
    }
  });
});

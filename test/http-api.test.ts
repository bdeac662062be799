/**
 * The HTTP API of a real `petrel serve` (issue 9), over real sockets with Node's fetch and curl,
 * on a real SQLite store: authentication and scopes (401/403 naming the scope), the shared
 * failed-auth throttle (locks SMTP too), sending (JSON, MIME, batch) through the SMTP accept
 * path, header-injection refusals, 413, reading (cursor pages, a message with its explanation,
 * raw), events, account isolation (404 for another account's things on every kind of route), and
 * managing keys, senders, domains, suppressions and webhooks.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import {
  type PetrelProcess,
  petrelOk,
  readCa,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";

const PROBLEM = "urn:petrel:problem:";

interface Answer {
  readonly status: number;
  readonly type: string;
  readonly body: Record<string, unknown>;
  readonly text: string;
}

describe("HTTP API", () => {
  let dataDir: string;
  let petrel: PetrelProcess;
  let base: string;
  /** admin key of account default; a send-only key; a read-only key; a key of account other. */
  let admin: string;
  let sender: string;
  let reader: string;
  let otherKey: string;

  async function call(
    method: string,
    path: string,
    options: { key?: string; body?: unknown; headers?: Record<string, string>; raw?: string } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const response = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
    });
    const text = await response.text();
    const type = response.headers.get("content-type") ?? "";
    let parsed: Record<string, unknown> = {};
    if (type.includes("json") && text) parsed = JSON.parse(text) as Record<string, unknown>;
    return { status: response.status, type, body: parsed, text };
  }

  function isProblem(answer: Answer, status: number, type: string): void {
    assert.equal(answer.status, status, answer.text);
    assert.match(answer.type, /^application\/problem\+json/);
    assert.equal(answer.body.type, PROBLEM + type, answer.text);
    assert.equal(answer.body.status, status);
    assert.equal(typeof answer.body.title, "string");
  }

  const message = (extra: Record<string, unknown> = {}) => ({
    from: "App <app@api.example>",
    to: ["ann@dest.example"],
    subject: "Hello",
    text: "Hello from the API",
    ...extra,
  });

  before(async () => {
    dataDir = tempDataDir("petrel-http-");
    await petrelOk(dataDir, ["accounts", "create", "other"]);
    await petrelOk(dataDir, ["senders", "add", "app@api.example"]);
    await petrelOk(dataDir, ["senders", "add", "b@other.example", "--account", "other"]);
    admin = (await petrelOk(dataDir, ["keys", "create", "-n", "admin", "--scopes", "admin"])).trim();
    sender = (await petrelOk(dataDir, ["keys", "create", "-n", "sender"])).trim();
    reader = (
      await petrelOk(dataDir, ["keys", "create", "-n", "reader", "--scopes", "messages.read,events.read"])
    ).trim();
    otherKey = (
      await petrelOk(dataDir, ["keys", "create", "-n", "other", "--account", "other", "--scopes", "admin"])
    ).trim();
    petrel = await startPetrel(dataDir, {
      config: {
        auth: { maxFailures: 3, lockoutMs: 600_000 },
        smtp: { limits: { maxMessageSize: 40_000 } },
        events: { webhooks: { allowPrivateTargets: true } },
      },
    });
    assert.ok(petrel.ports.http, "serve logs its HTTP port");
    base = `http://127.0.0.1:${petrel.ports.http}`;
  });

  after(async () => {
    await petrel?.stop();
    removeDataDir(dataDir);
  });

  it("answers health checks without a key, and every /v1 route wants one", async () => {
    assert.deepEqual((await call("GET", "/healthz")).body, { status: "ok" });
    assert.deepEqual((await call("GET", "/readyz")).body, { status: "ready" });
    isProblem(await call("GET", "/v1/messages"), 401, "unauthorized");
    isProblem(await call("GET", "/v1/nothing-here", { key: admin }), 404, "not-found");
  });

  it("sends a JSON message through the accept path: 202, stored with trace fields, listed, explained", async () => {
    const sent = await call("POST", "/v1/messages", {
      key: sender,
      body: message({
        subject: "Grüße – a long subject ".repeat(6),
        cc: ["Bob Example <bob@dest.example>"],
        bcc: ["hidden@dest.example"],
        metadata: { order: "A-17" },
        categories: ["receipts"],
        attachments: [{ filename: "a.txt", content: Buffer.from("attached").toString("base64") }],
      }),
    });
    assert.equal(sent.status, 202, sent.text);
    const id = String(sent.body.id);
    assert.match(id, /^[0-9A-Z]{26}$/);
    assert.deepEqual(sent.body.recipients, [
      { address: "ann@dest.example", state: "queued" },
      { address: "bob@dest.example", state: "queued" },
      { address: "hidden@dest.example", state: "queued" },
    ]);

    const shown = await call("GET", `/v1/messages/${id}`, { key: reader });
    assert.equal(shown.status, 200, shown.text);
    assert.equal(shown.body.from, "app@api.example");
    assert.deepEqual(shown.body.categories, ["receipts"]);
    assert.deepEqual(shown.body.metadata, { order: "A-17" });
    assert.equal((shown.body.headers as Record<string, string>).from, "App <app@api.example>");
    const recipients = shown.body.recipients as Array<Record<string, unknown>>;
    assert.equal(recipients.length, 3);
    for (const r of recipients) assert.equal(r.explanation, "queued: first attempt due now");

    const raw = await call("GET", `/v1/messages/${id}/raw`, { key: reader });
    assert.equal(raw.status, 200);
    assert.match(raw.type, /^message\/rfc822/);
    assert.match(
      raw.text,
      /^Received: from api \(\[127\.0\.0\.1\]\)\r\n\tby petrel\.test \(Petrel\) with HTTP id /,
    );
    assert.match(raw.text, /\r\nSubject: =\?UTF-8\?/, "MailComposer encodes the non-ASCII subject");
    assert.doesNotMatch(raw.text, /hidden@dest\.example/, "Bcc is in the envelope only");
    assert.doesNotMatch(raw.text, /X-Petrel-Metadata/i, "metadata is stored, not delivered");
    for (const line of raw.text.split("\r\n")) assert.ok(line.length <= 998);

    // The same sentence in `petrel queue show`.
    const cli = await petrelOk(dataDir, ["queue", "show", id]);
    assert.match(cli, /ann@dest\.example: queued: first attempt due now/);
  });

  it("pages through messages newest first with a cursor, filtered by recipient", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const sent = await call("POST", "/v1/messages", {
        key: sender,
        body: message({ to: ["page@dest.example"], subject: `page ${i}` }),
      });
      ids.push(String(sent.body.id));
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `to=page@dest.example&limit=2${cursor ? `&cursor=${cursor}` : ""}`;
      const page = await call("GET", `/v1/messages?${query}`, { key: reader });
      assert.equal(page.status, 200, page.text);
      for (const m of page.body.messages as Array<{ id: string }>) seen.push(m.id);
      cursor = page.body.next_cursor as string | null;
    } while (cursor);
    assert.deepEqual(seen, [...ids].reverse());
    isProblem(await call("GET", "/v1/messages?limit=0", { key: reader }), 400, "invalid-input");
    isProblem(await call("GET", "/v1/messages?state=lost", { key: reader }), 400, "invalid-input");
  });

  it("needs the scope of each operation and names it (403)", async () => {
    const denied = await call("GET", "/v1/messages", { key: sender });
    isProblem(denied, 403, "missing-scope");
    assert.equal(denied.body.scope, "messages.read");
    assert.match(String(denied.body.detail), /messages\.read/);
    isProblem(await call("POST", "/v1/messages", { key: reader, body: message() }), 403, "missing-scope");
    isProblem(await call("GET", "/v1/suppressions", { key: reader }), 403, "missing-scope");
    // A key cannot grant what it does not hold.
    const keysOnly = (
      await petrelOk(dataDir, ["keys", "create", "-n", "keysonly", "--scopes", "keys.write"])
    ).trim();
    const grant = await call("POST", "/v1/keys", {
      key: keysOnly,
      body: { name: "sneaky", scopes: ["admin"] },
    });
    isProblem(grant, 403, "missing-scope");
  });

  it("refuses header injection and forbidden headers with 400 problems", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ subject: "Hi\r\nBcc: victim@evil.example" }, "header-injection"],
      [{ subject: "Hi\nX: y" }, "header-injection"],
      [{ from: "App\r\nBcc: v@evil.example <app@api.example>" }, "header-injection"],
      [{ to: ["ann@dest.example\r\nBcc: v@evil.example"] }, "header-injection"],
      [{ headers: { "X-Custom": "ok\r\nBcc: v@evil.example" } }, "header-injection"],
      [{ headers: { "X Bad Name": "v" } }, "header-injection"],
      [{ headers: { Received: "from evil" } }, "header-injection"],
      [{ headers: { "DKIM-Signature": "v=1" } }, "header-injection"],
      [{ headers: { "Return-Path": "<x@y.example>" } }, "header-injection"],
      [{ attachments: [{ filename: "x\r\n.txt", content: "AAAA" }] }, "header-injection"],
      [{ attachments: [{ filename: "x.txt", content: "not base64!" }] }, "invalid-input"],
      [{ to: ["not-an-address"] }, "invalid-input"],
      [{ to: [] }, "invalid-input"],
      [{ unknownField: 1 }, "invalid-input"],
    ];
    for (const [extra, type] of cases) {
      const answer = await call("POST", "/v1/messages", { key: sender, body: message(extra) });
      isProblem(answer, 400, type);
    }
    isProblem(
      await call("POST", "/v1/messages", {
        key: sender,
        raw: "{not json",
        headers: { "content-type": "application/json" },
      }),
      400,
      "invalid-input",
    );
  });

  it("applies the SMTP rules: sender identities (403), size (413)", async () => {
    const foreign = await call("POST", "/v1/messages", {
      key: sender,
      body: message({ from: "b@other.example" }),
    });
    isProblem(foreign, 403, "sender-not-allowed");
    const big = await call("POST", "/v1/messages", {
      key: sender,
      body: message({ text: "x".repeat(50_000) }),
    });
    isProblem(big, 413, "payload-too-large");
  });

  it("sends raw MIME and batches with one result per item", async () => {
    const raw = "From: app@api.example\r\nTo: ann@dest.example\r\nSubject: raw\r\n\r\nRaw body\r\n";
    const sent = await call("POST", "/v1/messages/mime", {
      key: sender,
      body: { from: "app@api.example", to: ["ann@dest.example"], raw },
    });
    assert.equal(sent.status, 202, sent.text);
    const batch = await call("POST", "/v1/messages/batch", {
      key: sender,
      body: {
        messages: [
          message({ subject: "one" }),
          message({ from: "b@other.example" }),
          message({ subject: "three" }),
        ],
      },
    });
    assert.equal(batch.status, 200, batch.text);
    const results = batch.body.results as Array<Record<string, unknown>>;
    assert.deepEqual(
      results.map((r) => r.ok),
      [true, false, true],
    );
    assert.equal((results[1]!.problem as Record<string, unknown>).type, `${PROBLEM}sender-not-allowed`);
    for (const r of [results[0]!, results[2]!]) {
      const shown = await call("GET", `/v1/messages/${r.id}`, { key: reader });
      assert.equal(shown.status, 200);
    }
  });

  it("serves the account's events after a cursor", async () => {
    const sent = await call("POST", "/v1/messages", {
      key: sender,
      body: message({ to: ["ev@dest.example"] }),
    });
    const id = String(sent.body.id);
    const first = await call("GET", `/v1/events?message=${id}`, { key: reader });
    assert.equal(first.status, 200, first.text);
    const events = first.body.events as Array<Record<string, unknown>>;
    assert.deepEqual(
      events.map((e) => [e.type, e.recipient]),
      [["processed", "ev@dest.example"]],
    );
    const next = await call("GET", `/v1/events?cursor=${first.body.next_cursor}&message=${id}`, {
      key: reader,
    });
    assert.deepEqual(next.body.events, []);
    isProblem(await call("GET", "/v1/events?type=nonsense", { key: reader }), 400, "invalid-input");
  });

  it("isolates accounts: another account's things are 404, never 403", async () => {
    const mine = await call("POST", "/v1/messages", { key: sender, body: message() });
    const id = String(mine.body.id);
    await call("POST", "/v1/suppressions", { key: admin, body: { addresses: ["gone@dest.example"] } });
    const hook = await call("POST", "/v1/webhooks", { key: admin, body: { url: "http://127.0.0.1:9/hook" } });
    assert.equal(hook.status, 201, hook.text);
    const domain = await call("POST", "/v1/domains", { key: admin, body: { domain: "mine.example" } });
    assert.equal(domain.status, 201, domain.text);
    for (const [method, path] of [
      ["GET", `/v1/messages/${id}`],
      ["GET", `/v1/messages/${id}/raw`],
      ["POST", `/v1/messages/${id}/hold`],
      ["POST", `/v1/messages/${id}/delete`],
      ["GET", "/v1/suppressions/gone@dest.example"],
      ["DELETE", "/v1/suppressions/gone@dest.example"],
      ["GET", `/v1/webhooks/${hook.body.id}`],
      ["DELETE", `/v1/webhooks/${hook.body.id}`],
      ["GET", "/v1/domains/mine.example"],
      ["POST", "/v1/domains/mine.example/rotate"],
      ["DELETE", "/v1/domains/mine.example"],
      ["DELETE", "/v1/keys/sender"],
      ["DELETE", "/v1/senders/app@api.example"],
    ] as const) {
      isProblem(await call(method, path, { key: otherKey }), 404, "not-found");
    }
    const otherMessages = await call("GET", "/v1/messages", { key: otherKey });
    assert.deepEqual(otherMessages.body.messages, []);
    const otherEvents = await call("GET", `/v1/events?message=${id}`, { key: otherKey });
    assert.deepEqual(otherEvents.body.events, []);
    // Still there for their owner.
    assert.equal((await call("GET", `/v1/messages/${id}`, { key: admin })).status, 200);
    assert.equal((await call("GET", "/v1/suppressions/gone@dest.example", { key: admin })).status, 200);
  });

  it("manages keys, suppressions (CSV), webhooks and queue actions", async () => {
    const created = await call("POST", "/v1/keys", {
      key: admin,
      body: { name: "made-by-api", scopes: ["mail.send"] },
    });
    assert.equal(created.status, 201, created.text);
    const newKey = String(created.body.key);
    assert.match(newKey, /^pt_/);
    const listed = await call("GET", "/v1/keys", { key: admin });
    assert.ok(!listed.text.includes(newKey), "listings never show a key");
    assert.equal((await call("POST", "/v1/messages", { key: newKey, body: message() })).status, 202);
    assert.equal((await call("DELETE", "/v1/keys/made-by-api", { key: admin })).status, 204);
    isProblem(await call("POST", "/v1/messages", { key: newKey, body: message() }), 401, "unauthorized");

    const csv = "address,reason\r\nx1@dest.example,import\r\nx2@dest.example,\r\n";
    const imported = await call("POST", "/v1/suppressions/import", {
      key: admin,
      raw: csv,
      headers: { "content-type": "text/csv" },
    });
    assert.equal(imported.status, 200, imported.text);
    assert.equal(imported.body.added, 2);
    const bad = await call("POST", "/v1/suppressions/import", {
      key: admin,
      raw: "address\r\nok@dest.example\r\nnot an address\r\n",
      headers: { "content-type": "text/csv" },
    });
    isProblem(bad, 400, "invalid-input");
    assert.match(String(bad.body.detail), /line 3/);
    const found = await call("GET", "/v1/suppressions?search=x1", { key: admin });
    assert.deepEqual(
      (found.body.suppressions as Array<{ address: string }>).map((s) => s.address),
      ["x1@dest.example"],
    );
    const exported = await call("GET", "/v1/suppressions/export", { key: admin });
    assert.match(exported.type, /^text\/csv/);
    assert.match(exported.text, /^address,reason,created_at,event_id,message_id,detail\r\n/);
    assert.equal((await call("DELETE", "/v1/suppressions/x1@dest.example", { key: admin })).status, 204);
    isProblem(await call("DELETE", "/v1/suppressions/x1@dest.example", { key: admin }), 404, "not-found");

    // A suppressed recipient is dropped, as over SMTP.
    const toSuppressed = await call("POST", "/v1/messages", {
      key: sender,
      body: message({ to: ["x2@dest.example"] }),
    });
    assert.equal(toSuppressed.status, 202);
    assert.deepEqual(toSuppressed.body.recipients, [{ address: "x2@dest.example", state: "dropped" }]);

    isProblem(
      await call("POST", "/v1/webhooks", { key: admin, body: { url: "ftp://x.example/" } }),
      400,
      "invalid-input",
    );
    const hook = await call("POST", "/v1/webhooks", {
      key: admin,
      body: { url: "http://127.0.0.1:9/h2", events: ["bounce"] },
    });
    assert.equal(hook.status, 201);
    assert.match(String(hook.body.secret), /.{20,}/);
    const hooks = await call("GET", "/v1/webhooks", { key: admin });
    assert.ok(!hooks.text.includes(String(hook.body.secret)), "listings mask the secret");
    isProblem(
      await call("POST", "/v1/webhooks", { key: admin, body: { url: "http://127.0.0.1:9/h2" } }),
      409,
      "conflict",
    );

    const sent = await call("POST", "/v1/messages", {
      key: sender,
      body: message({ to: ["held@dest.example"] }),
    });
    const id = String(sent.body.id);
    isProblem(await call("POST", `/v1/messages/${id}/hold`, { key: reader }), 403, "missing-scope");
    assert.deepEqual((await call("POST", `/v1/messages/${id}/hold`, { key: admin })).body, {
      id,
      recipients: 1,
    });
    const held = await call("GET", `/v1/messages/${id}`, { key: admin });
    assert.equal(
      (held.body.recipients as Array<Record<string, unknown>>)[0]!.explanation,
      "held by an operator",
    );
    assert.deepEqual((await call("POST", `/v1/messages/${id}/delete`, { key: admin })).body, {
      id,
      recipients: 1,
    });
  });

  it("repeats the first answer for a retried Idempotency-Key; 409 for another body", async () => {
    const headers = { "idempotency-key": "order-17-receipt" };
    const body = message({ to: ["idem@dest.example"], subject: "once" });
    const first = await call("POST", "/v1/messages", { key: sender, body, headers });
    assert.equal(first.status, 202, first.text);
    const again = await call("POST", "/v1/messages", { key: sender, body, headers });
    assert.equal(again.status, 202);
    assert.deepEqual(again.body, first.body);
    const list = await call("GET", "/v1/messages?to=idem@dest.example", { key: reader });
    assert.deepEqual(
      (list.body.messages as Array<{ id: string }>).map((m) => m.id),
      [first.body.id],
      "one message queued",
    );
    const other = await call("POST", "/v1/messages", {
      key: sender,
      body: { ...body, subject: "twice" },
      headers,
    });
    isProblem(other, 409, "idempotency-conflict");
    // Keys are per account.
    const foreign = await call("POST", "/v1/messages", {
      key: otherKey,
      body: { ...body, from: "b@other.example" },
      headers,
    });
    assert.equal(foreign.status, 202);
    assert.notEqual(foreign.body.id, first.body.id);
    const tooLong = await call("POST", "/v1/messages", {
      key: sender,
      body,
      headers: { "idempotency-key": "k".repeat(257) },
    });
    isProblem(tooLong, 400, "invalid-input");
  });

  it("answers an SMTP resubmission with X-Petrel-Idempotency-Key with the first queue ID, queueing nothing", async () => {
    const content = Buffer.from(
      "From: app@api.example\r\nTo: smtp-idem@dest.example\r\nSubject: lost 250\r\n" +
        "X-Petrel-Idempotency-Key: batch-9-item-3\r\n\r\nBody\r\n",
    );
    const replies: string[] = [];
    for (let i = 0; i < 2; i++) {
      const session = await RawSmtpSession.open({
        port: petrel.ports.submission!,
        starttls: true,
        ca: readCa(petrel),
        apiKey: sender,
      });
      const reply = await session.send({ from: "app@api.example", to: ["smtp-idem@dest.example"], content });
      await session.quit();
      assert.equal(reply.code, 250, reply.text);
      replies.push(reply.text);
    }
    assert.equal(replies[0], replies[1]);
    const id = /queued as ([0-9A-Z]{26})/.exec(replies[0]!)![1]!;
    const list = await call("GET", "/v1/messages?to=smtp-idem@dest.example", { key: reader });
    assert.deepEqual(
      (list.body.messages as Array<{ id: string }>).map((m) => m.id),
      [id],
    );
    const raw = await call("GET", `/v1/messages/${id}/raw`, { key: reader });
    assert.doesNotMatch(raw.text, /X-Petrel-Idempotency-Key/i, "removed before signing and storing");
  });

  it("works with curl", async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        "curl",
        [
          "-sS",
          "-H",
          `Authorization: Bearer ${sender}`,
          "-H",
          "Content-Type: application/json",
          "-d",
          JSON.stringify(message({ subject: "from curl" })),
          `${base}/v1/messages`,
        ],
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      ),
    );
    assert.match(
      out,
      /^\{"id":"[0-9A-Z]{26}","recipients":\[\{"address":"ann@dest\.example","state":"queued"\}\]\}$/,
    );
  });

  it("counts accepted and refused messages in /metrics", async () => {
    const metrics = await call("GET", "/metrics");
    assert.equal(metrics.status, 200);
    const accepted = /^petrel_messages_accepted_total\{via="http"\} (\d+)$/m.exec(metrics.text);
    assert.ok(accepted && Number(accepted[1]) >= 10, metrics.text.slice(0, 500));
    assert.match(
      metrics.text,
      /^petrel_messages_rejected_total\{via="http",reason="header-injection"\} 10$/m,
    );
    assert.match(
      metrics.text,
      /^petrel_messages_rejected_total\{via="http",reason="payload-too-large"\} 1$/m,
    );
    assert.match(metrics.text, /^petrel_recipients_total\{outcome="dropped"\} [1-9]/m);
    assert.match(metrics.text, /^petrel_queue_recipients\{state="queued"\} \d+$/m);
  });

  // Last: it locks 127.0.0.1 out.
  it("throttles failed authentication per IP, through the same throttle as SMTP AUTH", async () => {
    // auth.maxFailures is 3; the revoked key above already failed once.
    let failures = 0;
    for (;;) {
      const answer = await call("GET", "/v1/messages", { key: "pt_wrong" });
      if (answer.status === 429) break;
      isProblem(answer, 401, "unauthorized");
      failures++;
      assert.ok(failures <= 3, "locked out after at most auth.maxFailures failures");
    }
    assert.equal(failures, 2);
    // Locked out now, even with a good key, over HTTP and over SMTP.
    isProblem(await call("GET", "/v1/messages", { key: reader }), 429, "rate-limited");
    const greeting = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port: petrel.ports.submission! });
      socket.once("data", (chunk) => {
        resolve(chunk.toString());
        socket.destroy();
      });
      socket.once("error", reject);
    });
    assert.match(greeting, /^421 4\.7\.0 /);
  });
});

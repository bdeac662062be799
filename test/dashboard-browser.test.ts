/**
 * The dashboard in a real browser (issue 9): Debian's /usr/bin/chromium driven by playwright-core
 * (never a downloaded browser) against a real `petrel serve` with delivery to a test MX, a test
 * DNS server and a webhook receiver, all on loopback. Signs in, sends through the API and sees the
 * message appear live (server-sent events) and turn delivered, opens its timeline, adds and
 * verifies a domain, creates and revokes a key, adds and removes a suppression, replays a
 * webhook; then a message full of <script>/<img onerror> payloads shows them as text and runs
 * nothing (no dialog, no request to the payload URL until "load remote images" is clicked).
 * Screenshots of every page go to test-artifacts/dashboard/ (gitignored).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Browser, chromium, type Page } from "playwright-core";
import type { DnsRecordSpec } from "../src/dkim/records.js";
import { immediateDeliveryTo } from "./support/delivery-config.js";
import { startDnsServer, type TestDnsServer } from "./support/dns-server.js";
import { publishRecords } from "./support/domain-zone.js";
import { waitUntil } from "./support/events-rig.js";
import {
  type PetrelProcess,
  petrelOk,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { startTestMx, type TestMx } from "./support/test-mx.js";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.js";

const CHROMIUM = "/usr/bin/chromium";
export const ARTIFACTS = join(process.cwd(), "test-artifacts", "dashboard");

describe("dashboard in a browser", { skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM}` }, () => {
  let mx: TestMx;
  let dns: TestDnsServer;
  let receiver: WebhookReceiver;
  let dataDir: string;
  let petrel: PetrelProcess;
  let key: string;
  let base: string;
  let browser: Browser;
  let page: Page;
  /** Requests the payload server saw (it stands for an attacker's server). */
  const payloadHits: string[] = [];
  let payloadServer: Server;
  let payloadUrl: string;
  const dialogs: string[] = [];
  const requested: string[] = [];

  async function api(method: string, path: string, body?: unknown) {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, text, body: text.startsWith("{") ? JSON.parse(text) : {} };
  }

  async function shot(name: string): Promise<void> {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    payloadServer = createServer((req, res) => {
      payloadHits.push(req.url ?? "");
      res.writeHead(404).end();
    });
    await new Promise<void>((res) => payloadServer.listen(0, "127.0.0.3", res));
    payloadUrl = `http://127.0.0.3:${(payloadServer.address() as AddressInfo).port}`;
    mx = await startTestMx({ address: "127.0.0.2" });
    dns = await startDnsServer({
      "example.com": { MX: [{ preference: 10, exchange: "mx.example.com" }] },
      "mx.example.com": { A: ["127.0.0.2"] },
    });
    receiver = await startWebhookReceiver();
    dataDir = tempDataDir("petrel-dash-");
    await petrelOk(dataDir, ["senders", "add", "app@app.example"]);
    key = (await petrelOk(dataDir, ["keys", "create", "-n", "operator", "--scopes", "admin"])).trim();
    petrel = await startPetrel(dataDir, {
      config: {
        dns: { servers: [dns.server], timeoutMs: 2000, tries: 2 },
        events: { webhooks: { allowPrivateTargets: true, batchWindowMs: 50, pollIntervalMs: 50 } },
        domains: { spf: { ips: ["127.0.0.1"] }, recheckIntervalMs: 0 },
        delivery: immediateDeliveryTo(mx.port),
      },
    });
    base = `http://127.0.0.1:${petrel.ports.http}`;
    const hook = await api("POST", "/v1/webhooks", { url: receiver.url });
    assert.equal(hook.status, 201, hook.text);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on("dialog", (dialog) => {
      dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      // Only the dashboard's own confirm() (revoke, delete) is expected; accept those.
      void (dialog.type() === "confirm" ? dialog.accept() : dialog.dismiss());
    });
    // Requests that got an answer (a request the CSP blocks is reported by "request" too, then fails).
    page.on("response", (response) => requested.push(response.url()));
  });

  after(async () => {
    await browser?.close();
    await petrel?.stop();
    await mx?.close();
    await dns?.close();
    await receiver?.close();
    await new Promise((res) => payloadServer?.close(res));
    if (dataDir) removeDataDir(dataDir);
  });

  it("signs in with an API key and shows the overview", async () => {
    await page.goto(`${base}/`);
    assert.match(page.url(), /\/login\?next=%2F$/);
    await page.getByLabel("API key").fill(key);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor();
    await page.getByRole("heading", { name: "Queue" }).waitFor();
  });

  it("shows a message sent through the API live, then its timeline", async () => {
    await page.getByRole("link", { name: "Messages" }).click();
    await page.locator("#live-status[data-connected='1']").waitFor();
    const sent = await api("POST", "/v1/messages", {
      from: "App <app@app.example>",
      to: ["user@example.com"],
      subject: "Live in the dashboard",
      text: "Hello",
      categories: ["welcome"],
    });
    assert.equal(sent.status, 202, sent.text);
    const id = sent.body.id as string;
    const row = page.locator(`tr[data-id="${id}"]`);
    await row.waitFor();
    // The delivery thread delivers it to the test MX; the row's state follows the event log.
    await row.locator(".state", { hasText: "delivered" }).waitFor({ timeout: 30_000 });
    await shot("messages");
    await row.getByRole("link", { name: id }).click();
    await page.getByRole("heading", { name: `Message ${id}` }).waitFor();
    const explanation = await page.locator(".explain").first().textContent();
    assert.match(explanation ?? "", /^delivered .* at mx\.example\.com: 250/);
    const timeline = await page.locator("table.timeline").first().textContent();
    assert.match(timeline ?? "", /accepted/);
    assert.match(timeline ?? "", /delivered/);
    assert.match(timeline ?? "", /250/);
    assert.match((await page.locator("pre.raw").textContent()) ?? "", /Subject: Live in the dashboard/);
    await shot("message");
  });

  it("adds a domain and verifies it against the test DNS server", async () => {
    await page.getByRole("link", { name: "Domains" }).click();
    await page.getByLabel("Add a sender domain").fill("app.example");
    await page.getByRole("button", { name: "Add domain" }).click();
    await page.locator(".flash.ok", { hasText: "Added app.example" }).waitFor();
    assert.ok((await page.locator("table.records button.copy").count()) >= 4, "copy buttons");
    const records = await api("GET", "/v1/domains/app.example/records");
    publishRecords(dns, JSON.parse(records.text) as DnsRecordSpec[]);
    await page.getByRole("button", { name: "Verify now" }).click();
    await page.locator(".flash.ok", { hasText: "app.example: pass" }).waitFor();
    await page.locator("h2 .state", { hasText: "verified" }).waitFor();
    await shot("domains");
  });

  it("creates a key (shown once) and revokes it", async () => {
    await page.getByRole("link", { name: "Keys" }).click();
    await page.getByLabel("Name").fill("reporting");
    await page.getByLabel("messages.read").check();
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = await page.locator("#secret").inputValue();
    assert.match(secret, /^pt_/);
    const check = (k: string) =>
      fetch(`${base}/v1/messages?limit=1`, { headers: { authorization: `Bearer ${k}` } }).then(
        (r) => r.status,
      );
    assert.equal(await check(secret), 200);
    await shot("keys");
    await page.reload();
    assert.equal(await page.locator("#secret").count(), 0, "the key is shown only once");
    await page.getByRole("button", { name: "Revoke reporting" }).click();
    await page.locator(".flash.ok", { hasText: "Revoked the key reporting" }).waitFor();
    assert.equal(await check(secret), 401);
  });

  it("adds and removes a suppression", async () => {
    await page.getByRole("link", { name: "Suppressions" }).click();
    await page.locator("#s-add").fill("blocked@example.com");
    await page.getByLabel("Note").fill("asked to stop");
    await page.getByRole("button", { name: "Add" }).click();
    await page.locator("td.addr", { hasText: "blocked@example.com" }).waitFor();
    const listed = await api("GET", "/v1/suppressions/blocked@example.com");
    assert.equal(listed.status, 200, listed.text);
    await shot("suppressions");
    await page.getByRole("button", { name: "Remove blocked@example.com" }).click();
    await page.locator(".flash.ok", { hasText: "Removed blocked@example.com" }).waitFor();
    assert.equal(await page.locator("td.addr", { hasText: "blocked@example.com" }).count(), 0);
    assert.equal((await api("GET", "/v1/suppressions/blocked@example.com")).status, 404);
  });

  it("shows webhook deliveries and replays the events", async () => {
    await receiver.waitFor(() => receiver.accepted().some((e) => e.type === "delivered"), 30_000, "events");
    const before = receiver.accepted().length;
    const firstId = receiver.accepted()[0]!.id;
    await page.getByRole("link", { name: "Webhooks" }).click();
    await page.locator("table.deliveries .state", { hasText: "200" }).first().waitFor();
    await page.getByRole("button", { name: "Replay" }).click();
    await page.locator(".flash.ok", { hasText: "Replaying to" }).waitFor();
    await receiver.waitFor(
      () => receiver.accepted().filter((e) => e.id === firstId).length >= 2,
      30_000,
      "the replayed events",
    );
    assert.ok(receiver.accepted().length > before);
    await page.reload();
    await shot("webhooks");
    // The overview counts what happened: the stats charts and the queue, from the same services.
    await page.getByRole("link", { name: "Overview" }).click();
    const chart = await page.locator("svg.chart").first().getAttribute("aria-label");
    assert.match(chart ?? "", /Last hour.*: [1-9]\d* accepted, [1-9]\d* delivered/);
    assert.equal(await page.locator("#queue-depth").textContent(), "0");
    await shot("overview");
  });

  it("shows hostile content as text and runs nothing", async () => {
    const script = "<script>window.__xss = 1; alert('xss')</script>";
    const img = (tag: string) => `<img src="${payloadUrl}/${tag}.png" onerror="alert('${tag}')">`;
    // A display name may not hold a double quote: the From name's image uses single quotes.
    const fromImg = `<img src='${payloadUrl}/from.png' onerror='alert(1)'>`;
    dialogs.length = 0;
    // Raw MIME (POST /v1/messages/mime): a From display name with <script> cannot come through
    // the JSON API's address parser, but any sender can write it in a header.
    const raw = [
      `From: "${script}${fromImg}" <app@app.example>`,
      "To: user@example.com",
      `Subject: Hi ${script}${img("subject")}`,
      "MIME-Version: 1.0",
      'Content-Type: multipart/mixed; boundary="b1"',
      "",
      "--b1",
      "Content-Type: text/html; charset=utf-8",
      "",
      `<p>body</p>${script}${img("body")}<iframe src="${payloadUrl}/frame"></iframe>`,
      "--b1",
      `Content-Type: text/plain; name="${img("attachment")}.txt"`,
      `Content-Disposition: attachment; filename="${img("attachment").replace(/"/g, "'")}.txt"`,
      "",
      "x",
      "--b1--",
      "",
    ].join("\r\n");
    const sent = await api("POST", "/v1/messages/mime", {
      from: "app@app.example",
      to: ["user@example.com"],
      raw,
    });
    assert.equal(sent.status, 202, sent.text);
    const id = sent.body.id as string;
    await page.goto(`${base}/messages`);
    await page.locator(`tr[data-id="${id}"]`).waitFor();
    await page.goto(`${base}/messages/${id}`);
    await page.frameLocator("#preview").locator("p", { hasText: "body" }).waitFor();
    const subject = (await page.locator(".subject").textContent()) ?? "";
    assert.ok(subject.includes(script), subject);
    assert.ok(subject.includes(img("subject")), subject);
    const from = (await page.locator(".facts dd").first().textContent()) ?? "";
    assert.ok(from.includes(script) && from.includes(fromImg), from);
    const attachment = (await page.locator(".attachments .file").textContent()) ?? "";
    assert.equal(attachment, `${img("attachment").replace(/"/g, "'")}.txt`);
    assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
    await shot("message-hostile");
    assert.deepEqual(dialogs, []);
    assert.equal(payloadHits.length, 0, `nothing loaded from the payload server: ${payloadHits.join()}`);
    assert.deepEqual(
      requested.filter((u) => u.startsWith(payloadUrl)),
      [],
      "no answer from the payload server reached the page",
    );
    // Remote images only when the viewer asks: then the image (and only it) loads, still no script.
    await page.getByRole("link", { name: "Load remote images" }).click();
    await waitUntil(() => payloadHits.includes("/body.png"), "the remote image after the click", 15_000);
    assert.ok(!payloadHits.includes("/frame"), "no nested frame from the message");
    assert.deepEqual(dialogs, []);
  });

  it("is readable at 360 px wide", async () => {
    await page.setViewportSize({ width: 360, height: 780 });
    await page.goto(`${base}/messages`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= 360, `the page is ${overflow} px wide`);
    await shot("messages-360");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.goto(`${base}/messages`);
    assert.match(page.url(), /\/login/);
  });
});

/**
 * The dashboard over plain HTTP (issue 9), against a real `petrel serve`: signed-out requests
 * redirect to the sign-in page (GET) or get 401 (POST, the live stream); sign-in refuses bad keys
 * (counted in the shared per-IP throttle, which then locks the API out too) and keys without a
 * read scope; the session cookie's flags (Secure under TLS); the Content-Security-Policy and
 * other headers; CSRF refusals (no token, a wrong token, another Origin); sign-out ends the
 * session; revoking the key ends its sessions; and account isolation: a session of account B
 * gets 404 for account A's message, preview, raw source and queue actions, and its lists show
 * nothing of A's.
 */
import assert from "node:assert/strict";
import { request as httpsRequest } from "node:https";
import { after, before, describe, it } from "node:test";
import {
  type PetrelProcess,
  petrelOk,
  readCa,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

async function request(
  base: string,
  path: string,
  options: { cookie?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.cookie) headers.cookie = options.cookie;
  let body: string | undefined;
  if (options.form) {
    headers["content-type"] = "application/x-www-form-urlencoded";
    body = new URLSearchParams(options.form).toString();
  }
  const response = await fetch(`${base}${path}`, {
    method: options.form ? "POST" : "GET",
    headers,
    redirect: "manual",
    ...(body === undefined ? {} : { body }),
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** Signs in; returns the cookie to send and the page's CSRF token. */
async function signIn(base: string, key: string): Promise<{ cookie: string; csrf: string }> {
  const answer = await request(base, "/login", { form: { key } });
  assert.equal(answer.status, 303, answer.text);
  const setCookie = answer.headers.get("set-cookie") ?? "";
  const cookie = setCookie.split(";")[0]!;
  const page = await request(base, "/messages", { cookie });
  const csrf = /name="_csrf" value="([^"]+)"/.exec(page.text)?.[1];
  assert.ok(csrf, "the page carries a CSRF token");
  return { cookie, csrf };
}

describe("dashboard over HTTP", () => {
  let dataDir: string;
  let petrel: PetrelProcess;
  let base: string;
  let adminA: string;
  let adminB: string;
  let sendOnly: string;
  let messageA: string;

  before(async () => {
    dataDir = tempDataDir("petrel-dash-http-");
    await petrelOk(dataDir, ["accounts", "create", "other"]);
    await petrelOk(dataDir, ["senders", "add", "app@a.example"]);
    adminA = (await petrelOk(dataDir, ["keys", "create", "-n", "a-admin", "--scopes", "admin"])).trim();
    sendOnly = (await petrelOk(dataDir, ["keys", "create", "-n", "a-send"])).trim();
    adminB = (
      await petrelOk(dataDir, ["keys", "create", "-n", "b-admin", "--account", "other", "--scopes", "admin"])
    ).trim();
    petrel = await startPetrel(dataDir, { config: { auth: { maxFailures: 3, lockoutMs: 600_000 } } });
    base = `http://127.0.0.1:${petrel.ports.http}`;
    const sent = await fetch(`${base}/v1/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminA}`, "content-type": "application/json" },
      body: JSON.stringify({
        from: "app@a.example",
        to: ["secret-recipient@dest.example"],
        subject: "A's business",
        html: "<p>A</p>",
      }),
    });
    assert.equal(sent.status, 202);
    messageA = ((await sent.json()) as { id: string }).id;
  });

  after(async () => {
    await petrel?.stop();
    removeDataDir(dataDir);
  });

  it("sends signed-out visitors to the sign-in page, and refuses their changes and the live stream", async () => {
    for (const path of ["/", "/messages", `/messages/${messageA}`, "/domains", "/keys", "/webhooks"]) {
      const answer = await request(base, path);
      assert.equal(answer.status, 303, path);
      assert.equal(answer.headers.get("location"), `/login?next=${encodeURIComponent(path)}`);
    }
    assert.equal((await request(base, "/live")).status, 401);
    assert.equal((await request(base, "/keys/revoke", { form: { name: "a-admin" } })).status, 401);
    assert.equal((await request(base, "/", { cookie: "petrel_session=forged" })).status, 303);
    const login = await request(base, "/login");
    assert.equal(login.status, 200);
    assert.match(login.text, /<label for="key">API key/);
  });

  it("serves every page with a strict Content-Security-Policy and no inline script or style", async () => {
    const { cookie } = await signIn(base, adminA);
    for (const path of [
      "/login",
      "/",
      "/messages",
      `/messages/${messageA}`,
      "/domains",
      "/keys",
      "/suppressions",
      "/webhooks",
    ]) {
      const answer = await request(base, path, { cookie });
      assert.equal(answer.status, 200, path);
      const csp = answer.headers.get("content-security-policy") ?? "";
      assert.match(csp, /default-src 'self'/, path);
      assert.match(csp, /script-src 'self'(;|$)/, path);
      assert.match(csp, /style-src 'self'(;|$)/, path);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, path);
      assert.equal(answer.headers.get("x-content-type-options"), "nosniff");
      assert.equal(answer.headers.get("x-frame-options"), "DENY");
      assert.doesNotMatch(answer.text, /<script(?![^>]*\ssrc=)[^>]*>/, `${path}: an inline script`);
      assert.doesNotMatch(answer.text, /\sstyle=|<style/, `${path}: inline style`);
      assert.doesNotMatch(answer.text, /\son[a-z]+=/, `${path}: an inline event handler`);
    }
    const preview = await request(base, `/messages/${messageA}/preview`, { cookie });
    assert.equal(preview.status, 200);
    const csp = preview.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /img-src data:(;|$)/, "no remote images by default");
    assert.match(csp, /(^|; )sandbox(;|$)/);
    assert.match(preview.headers.get("content-security-policy") ?? "", /frame-ancestors 'self'/);
    const remote = await request(base, `/messages/${messageA}/preview?remote=1`, { cookie });
    assert.match(remote.headers.get("content-security-policy") ?? "", /img-src data: https: http:/);
    const page = await request(base, `/messages/${messageA}`, { cookie });
    assert.match(page.text, /<iframe id="preview" class="preview" sandbox src=/);
  });

  it("sets an HttpOnly, SameSite=Strict session cookie and ends the session at sign-out", async () => {
    const answer = await request(base, "/login", { form: { key: adminA } });
    const setCookie = answer.headers.get("set-cookie") ?? "";
    assert.match(setCookie, /^petrel_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
    const cookie = setCookie.split(";")[0]!;
    const page = await request(base, "/", { cookie });
    assert.equal(page.status, 200);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
    const out = await request(base, "/logout", { cookie, form: { _csrf: csrf } });
    assert.equal(out.status, 303);
    assert.match(out.headers.get("set-cookie") ?? "", /^petrel_session=; .*Max-Age=0/);
    assert.equal((await request(base, "/", { cookie })).status, 303, "the old cookie no longer works");
  });

  it("refuses a change without the CSRF token, with a wrong one, or from another origin", async () => {
    const { cookie, csrf } = await signIn(base, adminA);
    const add = (form: Record<string, string>, headers: Record<string, string> = {}) =>
      request(base, "/suppressions", { cookie, form: { addresses: "x@dest.example", ...form }, headers });
    const none = await add({});
    assert.equal(none.status, 403);
    assert.match(none.text, /CSRF token/);
    assert.equal((await add({ _csrf: "x".repeat(43) })).status, 403);
    assert.equal((await add({ _csrf: csrf }, { origin: "http://evil.example" })).status, 403);
    assert.equal((await add({ _csrf: csrf }, { origin: "null" })).status, 403);
    // The other session's token is not this one's.
    const other = await signIn(base, adminA);
    assert.equal((await add({ _csrf: other.csrf })).status, 403);
    const list = await fetch(`${base}/v1/suppressions`, { headers: { authorization: `Bearer ${adminA}` } });
    assert.doesNotMatch(await list.text(), /x@dest\.example/, "nothing was added");
    const ok = await add({ _csrf: csrf }, { origin: base });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get("location"), "/suppressions");
  });

  it("shows account B nothing of account A's", async () => {
    const { cookie, csrf } = await signIn(base, adminB);
    for (const path of [
      `/messages/${messageA}`,
      `/messages/${messageA}/preview`,
      `/messages/${messageA}/raw`,
    ]) {
      const answer = await request(base, path, { cookie });
      assert.equal(answer.status, 404, path);
      assert.doesNotMatch(answer.text, /secret-recipient|A's business/, path);
    }
    for (const action of ["retry", "hold", "release", "delete"]) {
      const answer = await request(base, `/messages/${messageA}/${action}`, {
        cookie,
        form: { _csrf: csrf },
      });
      assert.equal(answer.status, 404, action);
    }
    // A search by A's message ID finds nothing; the lists hold nothing of A's.
    const byId = await request(base, `/messages?id=${messageA}`, { cookie });
    assert.equal(byId.status, 200);
    assert.match(byId.text, /No message .* in this account/);
    for (const path of ["/messages", "/", "/keys", "/suppressions", "/domains", "/webhooks"]) {
      const answer = await request(base, path, { cookie });
      assert.equal(answer.status, 200, path);
      assert.doesNotMatch(answer.text, new RegExp(`${messageA}|secret-recipient|a-admin|a-send`), path);
    }
    const revoke = await request(base, "/keys/revoke", { cookie, form: { _csrf: csrf, name: "a-send" } });
    assert.equal(revoke.status, 404);
    const stillThere = await fetch(`${base}/v1/keys`, { headers: { authorization: `Bearer ${adminA}` } });
    assert.match(
      await stillThere.text(),
      /"name":"a-send","prefix":"[^"]+","createdAt":\d+,"lastUsedAt":null,"revokedAt":null/,
    );
  });

  it("applies queue actions by filter and per message, within the session's account only", async () => {
    const state = async () => {
      const shown = await fetch(`${base}/v1/messages/${messageA}`, {
        headers: { authorization: `Bearer ${adminA}` },
      });
      return ((await shown.json()) as { recipients: Array<{ state: string }> }).recipients[0]!.state;
    };
    const b = await signIn(base, adminB);
    const none = await request(base, "/queue", {
      cookie: b.cookie,
      form: { _csrf: b.csrf, action: "hold", domain: "dest.example", state: "" },
    });
    assert.equal(none.status, 303);
    assert.equal(await state(), "queued", "account B's bulk hold does not reach A's message");
    const a = await signIn(base, adminA);
    const held = await request(base, "/queue", {
      cookie: a.cookie,
      form: { _csrf: a.csrf, action: "hold", domain: "dest.example", state: "queued" },
    });
    assert.equal(held.status, 303);
    assert.equal(await state(), "held");
    const page = await request(base, "/messages", { cookie: a.cookie });
    assert.match(page.text, /hold: 1 message matched, 1 recipient changed\./);
    const released = await request(base, `/messages/${messageA}/release`, {
      cookie: a.cookie,
      form: { _csrf: a.csrf },
    });
    assert.equal(released.status, 303);
    assert.equal(released.headers.get("location"), `/messages/${messageA}`);
    assert.equal(await state(), "queued");
    const bad = await request(base, "/queue", {
      cookie: a.cookie,
      form: { _csrf: a.csrf, action: "hold", domain: "", state: "" },
      headers: { referer: `${base}/messages` },
    });
    assert.equal(bad.status, 303, "a refused change goes back to its page with the reason");
    assert.match(
      (await request(base, "/messages", { cookie: a.cookie })).text,
      /class="flash error"[^>]*><p>give a domain, a state, or both/,
    );
  });

  it("refuses keys without a read scope, and ends sessions when their key is revoked", async () => {
    const refused = await request(base, "/login", { form: { key: sendOnly } });
    assert.equal(refused.status, 403);
    assert.equal(refused.headers.get("set-cookie"), null);
    const created = await fetch(`${base}/v1/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminA}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "short-lived", scopes: ["messages.read"] }),
    });
    const reader = ((await created.json()) as { key: string }).key;
    const { cookie } = await signIn(base, reader);
    assert.equal((await request(base, "/messages", { cookie })).status, 200);
    assert.equal((await request(base, "/keys", { cookie })).status, 403, "keys.write is needed there");
    await fetch(`${base}/v1/keys/short-lived`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${adminA}` },
    });
    assert.equal((await request(base, "/messages", { cookie })).status, 303);
  });

  it("counts failed sign-ins in the shared throttle: then the API is locked out too", async () => {
    for (let i = 0; i < 3; i++) {
      const answer = await request(base, "/login", { form: { key: `pt_wrong${i}` } });
      assert.equal(answer.status, 401);
      assert.doesNotMatch(answer.text, /pt_wrong/, "the key is not echoed");
    }
    assert.equal((await request(base, "/login", { form: { key: adminA } })).status, 429);
    const api = await fetch(`${base}/v1/messages`, { headers: { authorization: `Bearer ${adminA}` } });
    assert.equal(api.status, 429);
  });
});

describe("dashboard over HTTPS", () => {
  let dataDir: string;
  let petrel: PetrelProcess;

  before(async () => {
    dataDir = tempDataDir("petrel-dash-tls-");
    petrel = await startPetrel(dataDir, { config: { http: { tls: { enabled: true } } } });
  });

  after(async () => {
    await petrel?.stop();
    removeDataDir(dataDir);
  });

  it("marks the session cookie Secure", async () => {
    const key = (await petrelOk(dataDir, ["keys", "create", "-n", "admin", "--scopes", "admin"])).trim();
    const body = new URLSearchParams({ key }).toString();
    const setCookie = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: "127.0.0.1",
          port: petrel.ports.http,
          path: "/login",
          method: "POST",
          ca: readCa(petrel),
          servername: "localhost",
          headers: { "content-type": "application/x-www-form-urlencoded", "content-length": body.length },
        },
        (res) => {
          res.resume();
          assert.equal(res.statusCode, 303);
          resolve(String(res.headers["set-cookie"] ?? ""));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
    assert.match(setCookie, /; HttpOnly; SameSite=Strict; Secure$/);
  });
});

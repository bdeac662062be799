/**
 * One signed webhook POST with Node's built-in fetch: JSON body, `Petrel-Signature`, a timeout,
 * no redirects (a 3xx is a failure: a signed batch is not replayed to wherever a Location
 * points), and at most a few KB of the response read (for the delivery record).
 *
 * Security: the secret only signs; it is never part of a result or an error text. URLs may carry
 * credentials (userinfo, tokens in the query), so logs use displayUrl().
 */
import { performance } from "node:perf_hooks";
import { SIGNATURE_HEADER, signatureHeader } from "./signature.js";

export interface PostResult {
  readonly ok: boolean;
  readonly statusCode: number | null;
  /** Why it failed (HTTP status with the start of the response, or the network error). */
  readonly error: string | null;
  readonly durationMs: number;
}

const USER_AGENT = "Petrel-Webhooks/0.1";
const MAX_ERROR_BODY = 200;

export async function postSigned(
  url: string,
  secret: string,
  body: string,
  options: { readonly timeoutMs: number; readonly signal?: AbortSignal; readonly webhookId?: number },
): Promise<PostResult> {
  const started = performance.now();
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
  try {
    const response = await fetch(url, {
      method: "POST",
      body,
      redirect: "manual",
      signal,
      headers: {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        [SIGNATURE_HEADER.toLowerCase()]: signatureHeader(secret, Math.floor(Date.now() / 1000), body),
        ...(options.webhookId === undefined ? {} : { "petrel-webhook-id": String(options.webhookId) }),
      },
    });
    const text = await readSome(response, 4096);
    const ok = response.status >= 200 && response.status < 300;
    return {
      ok,
      statusCode: response.status,
      error: ok
        ? null
        : `HTTP ${response.status}${text ? `: ${printable(text).slice(0, MAX_ERROR_BODY)}` : ""}`,
      durationMs: performance.now() - started,
    };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why =
      e.name === "TimeoutError"
        ? `no response within ${options.timeoutMs} ms`
        : e.name === "AbortError"
          ? "aborted (shutting down)"
          : (e.cause?.code ?? e.cause?.message ?? e.message);
    return { ok: false, statusCode: null, error: why, durationMs: performance.now() - started };
  }
}

/** Reads at most `limit` bytes of the body and lets go of the rest (keeps the connection usable). */
async function readSome(response: Response, limit: number): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) return Buffer.concat(chunks).toString("utf8");
      chunks.push(value);
      size += value.length;
    }
    await reader.cancel();
  } catch {
    // A body cut short says nothing more about the status we already have.
  }
  return Buffer.concat(chunks).toString("utf8").slice(0, limit);
}

function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f]+/g, " ").trim();
}

/** The URL without userinfo and query, for logs. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}${u.search ? "?…" : ""}`;
  } catch {
    return "(invalid URL)";
  }
}

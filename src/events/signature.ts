/**
 * Webhook signatures, as Stripe does them: `Petrel-Signature: t=<unix seconds>,v1=<hex>` where
 * the hex is HMAC-SHA256 over `<t>.<raw body>` keyed with the endpoint's secret (the whole
 * `whsec_…` string as UTF-8). Receivers recompute it over the raw body, compare in constant
 * time, and reject a `t` too far from their clock (replays). The README has the recipe.
 *
 * Security: secrets are 32 random bytes; they are shown once by `petrel webhooks add` and never
 * logged. verifySignature() compares with timingSafeEqual and accepts several v1 values (a
 * receiver rotating secrets may be sent more than one in future).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "Petrel-Signature";

export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString("base64url")}`;
}

export function signatureHex(secret: string, timestamp: number, body: string): string {
  return createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
}

/** The header value for `body` signed at `timestamp` (unix seconds). */
export function signatureHeader(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${signatureHex(secret, timestamp, body)}`;
}

/** Checks a header value against the body; `toleranceSec` bounds the age (0 = no check). */
export function verifySignature(
  secret: string,
  header: string,
  body: string,
  toleranceSec = 300,
  nowSec = Math.floor(Date.now() / 1000),
): boolean {
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(",")) {
    const [key, value] = part.split("=", 2);
    if (key?.trim() === "t" && value && /^\d+$/.test(value)) timestamp = Number(value);
    else if (key?.trim() === "v1" && value) signatures.push(value.trim());
  }
  if (timestamp === undefined || signatures.length === 0) return false;
  if (toleranceSec > 0 && Math.abs(nowSec - timestamp) > toleranceSec) return false;
  const expected = Buffer.from(signatureHex(secret, timestamp, body), "hex");
  return signatures.some((s) => {
    const given = Buffer.from(s, "hex");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

/**
 * Decoding of SASL responses for AUTH PLAIN (RFC 4616) and AUTH LOGIN (draft-murchison-sasl-login),
 * as carried by SMTP AUTH (RFC 4954).
 *
 * Invariants: base64 is decoded strictly (a bad alphabet or length is an error, never silently
 * skipped); "=" is the empty initial response (RFC 4954 §4).
 * Security: the decoded values are credentials: they are returned to the caller only, never
 * logged or put in an error message.
 */

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 to UTF-8 text; null when the input is not base64. */
export function decodeBase64(s: string): string | null {
  if (s === "=") return "";
  if (!BASE64.test(s)) return null;
  return Buffer.from(s, "base64").toString("utf8");
}

export type PlainResult =
  | { kind: "ok"; username: string; password: string }
  /** Not authzid NUL authcid NUL passwd. */
  | { kind: "malformed" }
  /** An authzid naming someone else: proxy authorisation, which we do not offer. */
  | { kind: "foreign-authzid" };

/** Splits a decoded PLAIN message: [authzid] NUL authcid NUL passwd. */
export function parsePlain(message: string): PlainResult {
  const first = message.indexOf("\0");
  const second = first === -1 ? -1 : message.indexOf("\0", first + 1);
  if (second === -1 || message.indexOf("\0", second + 1) !== -1) return { kind: "malformed" };
  const authzid = message.slice(0, first);
  const username = message.slice(first + 1, second);
  const password = message.slice(second + 1);
  if (username === "") return { kind: "malformed" };
  if (authzid !== "" && authzid !== username) return { kind: "foreign-authzid" };
  return { kind: "ok", username, password };
}

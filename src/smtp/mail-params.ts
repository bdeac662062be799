/**
 * ESMTP parameters of MAIL FROM (RFC 5321 §4.1.2 Mail-parameters): SIZE (RFC 1870),
 * BODY (RFC 6152), SMTPUTF8 (RFC 6531) and AUTH (RFC 4954 §5, accepted and ignored).
 *
 * Invariants: keywords are case-insensitive; a repeated keyword or a malformed value is a
 * syntax error (501), a keyword we did not advertise is 555 (RFC 5321 §4.1.1.11).
 * Security: untrusted input; SIZE is bounded before conversion so it cannot lose precision.
 */

export type MailParams =
  | { kind: "ok"; size?: number; body8bit: boolean; smtpUtf8: boolean }
  | { kind: "syntax" }
  | { kind: "unknown" };

const DIGITS = /^[0-9]{1,15}$/;

export function parseMailParams(params: readonly string[]): MailParams {
  let size: number | undefined;
  let body: string | undefined;
  let smtpUtf8 = false;
  let auth = false;
  for (const p of params) {
    const eq = p.indexOf("=");
    const key = (eq === -1 ? p : p.slice(0, eq)).toUpperCase();
    const value = eq === -1 ? undefined : p.slice(eq + 1);
    switch (key) {
      case "SIZE":
        if (size !== undefined || value === undefined || !DIGITS.test(value)) return { kind: "syntax" };
        size = Number(value);
        break;
      case "BODY": {
        if (body !== undefined || value === undefined) return { kind: "syntax" };
        body = value.toUpperCase();
        // BINARYMIME needs CHUNKING (RFC 3030), which we do not offer.
        if (body !== "7BIT" && body !== "8BITMIME")
          return { kind: body === "BINARYMIME" ? "unknown" : "syntax" };
        break;
      }
      case "SMTPUTF8":
        if (smtpUtf8 || value !== undefined) return { kind: "syntax" };
        smtpUtf8 = true;
        break;
      case "AUTH":
        // RFC 4954 §5: a server offering AUTH must accept AUTH=<mailbox> on MAIL; we trust only our own AUTH.
        if (auth || value === undefined || value === "") return { kind: "syntax" };
        auth = true;
        break;
      default:
        return { kind: "unknown" };
    }
  }
  return { kind: "ok", size, body8bit: body === "8BITMIME", smtpUtf8 };
}

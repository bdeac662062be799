/**
 * A policy decision as plain data. The SMTP layer turns it into a reply; policy never writes to
 * a socket (design convention 1, after Haraka's DENY/DENYSOFT and smtp-server's hooks).
 */
export type Verdict =
  | { readonly kind: "accept" }
  | {
      readonly kind: "reject" | "tempfail";
      readonly smtpCode: number;
      readonly enhancedCode: string;
      readonly message: string;
      /** Detail for the log only; never shown to the client. */
      readonly reason: string;
    };

export const ACCEPT: Verdict = { kind: "accept" };

export function reject(smtpCode: number, enhancedCode: string, message: string, reason: string): Verdict {
  return { kind: smtpCode >= 500 ? "reject" : "tempfail", smtpCode, enhancedCode, message, reason };
}

/**
 * May mail for this recipient be attempted? A pure decision over the account's suppression entry
 * (looked up by the caller) and `suppression.mode`. The SMTP layer turns `reject` into a reply at
 * RCPT; `drop` means accept, store the recipient as `dropped` (reason `suppressed`) with its
 * events, and never attempt it — SendGrid's behaviour, and the default.
 *
 * Invariants: an address that is not suppressed is always accepted here (other policy decides
 * the rest); the reply never says why the address was suppressed (a bounce, a complaint): that is
 * the account's business, visible in `petrel suppressions list`, not the submitting client's.
 */
import { ACCEPT, reject, type Verdict } from "./verdict.js";

export type SuppressionMode = "drop" | "reject";

/** A recipient verdict: the usual accept/reject, or accept-and-drop. */
export type RecipientVerdict = Verdict | { readonly kind: "drop"; readonly reason: "suppressed" };

export function checkSuppression(
  suppressed: { readonly reason: string } | undefined,
  mode: SuppressionMode,
): RecipientVerdict {
  if (!suppressed) return ACCEPT;
  if (mode === "drop") return { kind: "drop", reason: "suppressed" };
  // 5.1.1 rather than 5.7.x: for the sending application this address is as good as nonexistent.
  return reject(550, "5.1.1", "Recipient is on the suppression list", `suppressed (${suppressed.reason})`);
}

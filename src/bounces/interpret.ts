/**
 * What a parsed report means for the one delivery its VERP token names: a bounce (with its
 * class), a complaint, or nothing to act on (a delay warning, a success notice, an auto-reply,
 * an authentication-failure report, something unreadable). Pure: the listener does the writing.
 *
 * Invariants: only an RFC 3464 `Action: failed` (or a prose bounce worded as a failure) is a
 * bounce; `delayed`, `delivered`, `relayed` and `expanded` never change anything. Only ARF
 * feedback types that are complaints (abuse, fraud, virus, other) are spam reports; `not-spam`
 * and `auth-failure` (DMARC failure reports) are not.
 * Security: every input is untrusted; recipient matching is a plain case-insensitive comparison.
 */
import type { Classification, Classifier } from "./classify.js";
import type { DsnRecipient, InboundReport } from "./report.js";

export type Finding =
  | {
      readonly kind: "bounce";
      /** The DSN's status, or the enhanced code of the reply found in prose. */
      readonly status: string | null;
      /** The remote diagnostic ("550 5.1.1 …"), or what the prose said. */
      readonly diagnostic: string;
      readonly remoteMta: string | null;
      readonly classification: Classification;
    }
  | { readonly kind: "complaint"; readonly feedbackType: string; readonly userAgent: string | null }
  | { readonly kind: "ignore"; readonly reason: string };

const COMPLAINTS = new Set(["abuse", "fraud", "virus", "other"]);
const RANK: Record<string, number> = { failed: 3, delayed: 2 };
const MAX_DIAGNOSTIC = 1000;

/** Interprets `report` for the recipient `address` (the one the VERP token names). */
export function interpret(report: InboundReport, address: string, classify: Classifier): Finding {
  switch (report.kind) {
    case "arf":
      if (COMPLAINTS.has(report.feedbackType)) {
        return { kind: "complaint", feedbackType: report.feedbackType, userAgent: report.userAgent };
      }
      return { kind: "ignore", reason: `feedback report of type "${report.feedbackType || "none"}"` };
    case "dsn":
      return fromDsn(report, address, classify);
    case "text": {
      if (report.action !== "failed") return { kind: "ignore", reason: "delay warning (prose)" };
      const diagnostic = report.diagnostic || report.humanText;
      return {
        kind: "bounce",
        status: /^[45]\d\d[ -]([245]\.\d{1,3}\.\d{1,3})/.exec(report.diagnostic)?.[1] ?? null,
        diagnostic: diagnostic.slice(0, MAX_DIAGNOSTIC),
        remoteMta: null,
        // Prose was worded as a failure: a missing code means permanent (5xx) rather than unknown.
        classification: classify({ code: report.diagnostic ? null : 550, text: diagnostic }),
      };
    }
    case "auto-reply":
      return { kind: "ignore", reason: `automatic reply: ${report.subject.slice(0, 100)}` };
    case "unknown":
      return { kind: "ignore", reason: report.reason };
  }
}

/** The DSN's entry about `address`: by Final- or Original-Recipient, else the most serious one. */
export function entryFor(recipients: readonly DsnRecipient[], address: string): DsnRecipient | undefined {
  const want = address.toLowerCase();
  const named = recipients.find(
    (r) => r.finalRecipient?.toLowerCase() === want || r.originalRecipient?.toLowerCase() === want,
  );
  if (named) return named;
  // Forwarding often changes the final recipient; with VERP the report is about our recipient anyway.
  let best: DsnRecipient | undefined;
  for (const r of recipients) {
    if ((RANK[actionOf(r)] ?? 0) > (best ? (RANK[actionOf(best)] ?? 0) : -1)) best = r;
  }
  return best;
}

/** The entry's action; a missing Action with a permanent status counts as failed. */
function actionOf(r: DsnRecipient): string {
  if (r.action !== "") return r.action;
  return r.status?.startsWith("5.") ? "failed" : "";
}

function fromDsn(
  report: Extract<InboundReport, { kind: "dsn" }>,
  address: string,
  classify: Classifier,
): Finding {
  const entry = entryFor(report.recipients, address);
  if (!entry) return { kind: "ignore", reason: "delivery status without recipients" };
  const action = actionOf(entry);
  if (action !== "failed") return { kind: "ignore", reason: `delivery status "${action || "none"}"` };
  // With no diagnostic, a single-recipient report's human-readable part is the best evidence
  // (RFC 3464 appendix D.3: "Invalid address - nair_s … No matching Directory Entry").
  const single = report.recipients.length === 1;
  const text = [
    entry.diagnostic ?? "",
    entry.statusComment,
    !entry.diagnostic && single ? report.humanText : "",
  ]
    .filter((t) => t !== "")
    .join("\n");
  const code = entry.diagnostic
    ? Number(/^([245]\d\d)\b/.exec(entry.diagnostic)?.[1] ?? Number.NaN)
    : Number.NaN;
  return {
    kind: "bounce",
    status: entry.status,
    diagnostic: (entry.diagnostic ?? `${entry.status ?? ""} ${entry.statusComment}`.trim()).slice(
      0,
      MAX_DIAGNOSTIC,
    ),
    remoteMta: entry.remoteMta,
    classification: classify({ code: Number.isNaN(code) ? null : code, enhanced: entry.status, text }),
  };
}

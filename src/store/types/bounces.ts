/**
 * Store part: asynchronous bounces and complaints (issue 5): the recipient a VERP token names,
 * and a late bounce or complaint applied to it (state, event and suppression in one transaction).
 */
import type { RecipientState } from "./messages.js";

/** The recipient a VERP token names. */
export interface BounceTarget {
  readonly recipientId: number;
  readonly messageId: string;
  readonly accountId: number;
  readonly address: string;
  readonly state: RecipientState;
  /** The message's envelope sender ("" for a null sender). */
  readonly mailFrom: string;
}

/** A late bounce (a DSN after the remote accepted) or a complaint, for the recipient a token names. */
export type InboundReportRecord =
  | {
      readonly kind: "bounce";
      readonly messageId: string;
      readonly recipientId: number;
      /** When the report arrived. */
      readonly at: number;
      /** The remote diagnostic ("550 5.1.1 …"). */
      readonly reply: string;
      readonly enhancedCode: string | null;
      /** The Remote-MTA of the report, if any. */
      readonly remoteMta: string | null;
      readonly bounceClass: string;
      readonly bounceHard: boolean;
    }
  | {
      readonly kind: "spamreport";
      readonly messageId: string;
      readonly recipientId: number;
      readonly at: number;
      /** The ARF Feedback-Type (abuse, fraud, …). */
      readonly feedbackType: string;
      /** What the report says (user agent, source), for the event and the suppression. */
      readonly reply: string | null;
    };

export interface InboundReportResult {
  /** Whether anything was written. */
  readonly applied: boolean;
  readonly eventId: string | null;
  /** Whether the address was newly suppressed. */
  readonly suppressed: boolean;
  /** What happened, or why nothing did ("recipient is bounced", "complaint already recorded"). */
  readonly reason: string;
}

export interface BounceStore {
  /** The recipient a VERP token names: it must exist and belong to that message. */
  getBounceTarget(messageId: string, recipientId: number): Promise<BounceTarget | undefined>;
  /** Applies a late bounce or a complaint for one recipient: state, event and suppression in one transaction. */
  recordInboundReport(record: InboundReportRecord): Promise<InboundReportResult>;
}

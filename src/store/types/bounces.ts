/**
 * Store part: asynchronous bounces and complaints (issue 5): the recipient a VERP token names,
 * and a late bounce or complaint applied to it (state, event and suppression in one transaction;
 * issue 11: with the DSN to the sender that the bounce causes, in that same transaction).
 */
import type { RecipientState } from "./messages.js";
import type { OutcomeNotification } from "./queue.js";

/** The recipient a VERP token names. */
export interface BounceTarget {
  readonly recipientId: number;
  readonly messageId: string;
  readonly accountId: number;
  readonly address: string;
  readonly state: RecipientState;
  /** The message's envelope sender ("" for a null sender). */
  readonly mailFrom: string;
  /** When the message was accepted (the DSN's Arrival-Date). */
  readonly receivedAt: number;
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
  /**
   * Applies what one inbound report says (a late bounce or a complaint per recipient its tokens
   * name): states, events and suppressions in one transaction, with `notifications` (issue 11:
   * the DSNs to senders about these bounces). A notification is queued only when the bounce of at
   * least one of its `recipientIds` applied (a repeated report sends no second DSN), so a crash can
   * never keep the bounce and lose its DSN. One result per record, in order.
   */
  recordInboundReport(
    records: readonly InboundReportRecord[],
    notifications?: readonly OutcomeNotification[],
  ): Promise<InboundReportResult[]>;
}

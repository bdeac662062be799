/**
 * Bounce mails to the sender (`bounces.notifySender`, off by default): an RFC 3464 delivery
 * status notification to the original envelope sender when recipients bounce or expire, queued
 * through the store like any message, from the null sender <> so that it can never bounce back
 * (RFC 5321 §4.5.5, RFC 3464 §2). One notification per message per batch of failures.
 *
 * Invariants: never for a message whose own sender is <> (a DSN about a DSN would loop); the
 * notification carries the original's header section only (text/rfc822-headers), never its body.
 * Issue 11: the delivery worker builds the notification (dsnMessage) before it commits the
 * bounces and expiries it reports and hands it to Store.recordOutcomes, which queues it in that
 * same transaction: kill -9 can never keep the bounce and lose its DSN. The bounce listener does the
 * same for bounces learnt from an inbound report (src/bounces/listener.ts → Store.recordInboundReport).
 * Security: remote replies are untrusted: control characters and non-ASCII are replaced, lengths
 * capped, so a reply can never add a header field or a MIME part to the notification.
 */
import { isAscii } from "node:buffer";
import { randomBytes } from "node:crypto";
import { rfc5322Date } from "../message/headers.js";
import { newQueueId } from "../queue/spool.js";
import type { NewMessage, Store } from "../store/types.js";

export interface FailedRecipient {
  readonly address: string;
  /** The reply or diagnostic ("550 5.1.1 …"). */
  readonly reply: string;
  readonly status: string | null;
  readonly remoteMta: string | null;
  readonly at: number;
  /** "failed" for a bounce, "failed" with an expiry wording for an expired recipient. */
  readonly expired?: boolean;
}

export interface OriginalMessage {
  readonly id: string;
  readonly accountId: number;
  readonly mailFrom: string;
  readonly receivedAt: number;
  readonly content: Buffer;
}

export interface NotifierOptions {
  readonly store: Pick<Store, "enqueueMessages">;
  /** Reporting-MTA and the From/Message-ID domain of the notification. */
  readonly hostname: string;
  /** How long the notification may wait in the queue. */
  readonly lifetimeMs: number;
  readonly now?: () => number;
}

/** Enqueues a DSN about `failed` recipients of `original`; returns its queue id, or null when none is due. */
export async function notifySender(
  options: NotifierOptions,
  original: OriginalMessage,
  failed: readonly FailedRecipient[],
): Promise<string | null> {
  const message = dsnMessage(options, original, failed);
  if (!message) return null;
  await options.store.enqueueMessages([message]);
  return message.id;
}

/** The DSN about `failed` recipients of `original`, ready to queue, or null when none is due. */
export function dsnMessage(
  options: Pick<NotifierOptions, "hostname" | "lifetimeMs" | "now">,
  original: OriginalMessage,
  failed: readonly FailedRecipient[],
): NewMessage | null {
  if (original.mailFrom === "" || failed.length === 0) return null;
  const now = (options.now ?? Date.now)();
  const id = newQueueId();
  return {
    id,
    accountId: original.accountId,
    apiKeyId: null,
    mailFrom: "",
    recipients: [original.mailFrom],
    content: buildDsn(options.hostname, id, original, failed, new Date(now)),
    clientIp: "127.0.0.1",
    receivedAt: now,
    expiresAt: now + options.lifetimeMs,
  };
}

/** The notification's bytes (CRLF line endings). */
export function buildDsn(
  hostname: string,
  id: string,
  original: OriginalMessage,
  failed: readonly FailedRecipient[],
  date: Date,
): Buffer {
  const boundary = `${id}.${randomBytes(6).toString("hex")}/${hostname}`;
  const headerEnd = original.content.indexOf("\r\n\r\n");
  const headers = original.content.subarray(0, headerEnd < 0 ? original.content.length : headerEnd + 2);
  const eightBit = !isAscii(headers);
  const lines = [
    `From: Mail Delivery System <MAILER-DAEMON@${hostname}>`,
    `To: <${clean(original.mailFrom, 320)}>`,
    "Subject: Undelivered Mail Returned to Sender",
    `Date: ${rfc5322Date(date)}`,
    `Message-ID: <${id}.dsn@${hostname}>`,
    // RFC 3834 §5: automatic responders must not answer this.
    "Auto-Submitted: auto-replied",
    "MIME-Version: 1.0",
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    "",
    "This is a MIME-encapsulated message.",
    "",
    `--${boundary}`,
    "Content-Description: Notification",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    `This is the mail system at host ${hostname}.`,
    "",
    "Your message could not be delivered to one or more recipients.",
    "The delivery report and the headers of your message are attached.",
    "",
    ...failed.map(
      (f) =>
        `<${clean(f.address, 320)}>: ${f.expired ? "gave up after retrying: " : ""}${clean(f.reply, 500)}`,
    ),
    "",
    `--${boundary}`,
    "Content-Description: Delivery report",
    "Content-Type: message/delivery-status",
    "",
    `Reporting-MTA: dns; ${hostname}`,
    `X-Petrel-Queue-ID: ${original.id}`,
    `Arrival-Date: ${rfc5322Date(new Date(original.receivedAt))}`,
    ...failed.flatMap((f) => [
      "",
      `Final-Recipient: rfc822; ${clean(f.address, 320)}`,
      "Action: failed",
      `Status: ${f.status && /^[245]\.\d{1,3}\.\d{1,3}$/.test(f.status) ? f.status : f.expired ? "4.4.7" : "5.0.0"}`,
      ...(f.remoteMta ? [`Remote-MTA: dns; ${clean(f.remoteMta, 255)}`] : []),
      `Diagnostic-Code: smtp; ${clean(f.reply, 500)}`,
      `Last-Attempt-Date: ${rfc5322Date(new Date(f.at))}`,
    ]),
    "",
    `--${boundary}`,
    "Content-Description: Undelivered Message Headers",
    "Content-Type: text/rfc822-headers",
    ...(eightBit ? ["Content-Transfer-Encoding: 8bit"] : []),
    "",
  ];
  return Buffer.concat([
    Buffer.from(`${lines.join("\r\n")}\r\n`),
    headers,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
}

/** One line of printable ASCII, at most `max` characters. */
function clean(text: string, max: number): string {
  return text
    .replace(/[^\x20-\x7e]+/g, " ")
    .trim()
    .slice(0, max);
}

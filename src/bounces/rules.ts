/**
 * The bounce classification table: data, not code (design convention 4, after ZoneMTA's
 * config/bounces.txt and KumoMTA's bounce-classify). Every rule sits under a comment quoting a
 * real remote reply it matches; test/bounces-classify.test.ts runs those replies and more.
 *
 * How the table is read (src/bounces/classify.ts):
 * 1. operator rules from `bounces.rules` (config), first match wins;
 * 2. SPECIFIC_TEXT_RULES (text-rules.ts): wording that names its cause outright decides even
 *    against the code, because providers reuse codes ("552 5.1.1 … over quota" is a full mailbox,
 *    "550 5.1.1 … has sent to too many recipients this hour" is a throttle on us);
 * 3. CODE_RULES: a specific enhanced status code (RFC 3463, IANA's registry, providers' own)
 *    decides — optionally only when the text also matches (5.1.10 means "null MX" in RFC 7505 but
 *    "recipient not found" at Microsoft). Generic codes (x.0.0, 5.7.1, 4.7.0, …) are absent:
 *    receivers use them for everything, so their text decides;
 * 4. TEXT_RULES (text-rules.ts), in order, for the wording that is weaker evidence than a code;
 * 5. the code's subject (x.1.x, x.7.x, …) and then the basic code (4xx, 5xx) as a last resort.
 * The enhanced code is read from the reply wherever common notations put it ("550 5.1.1",
 * "550-'5.2.2", "(#5.1.1 - chkusr)", "#5.1.8", "RCPT TO not accepted: 5.7.1 …").
 * A temporary reply (4.x.x, or 4xx without an enhanced code) is never hard: "450 4.1.2 Domain
 * not found" says "try again", so invalid-recipient/invalid-domain become transient for it.
 *
 * Only invalid-recipient and invalid-domain are hard bounces (they add the recipient to the
 * suppression list); everything else, including policy blocks, is soft: a block is about the
 * sender, not about the recipient, and suppressing on it would lose good addresses.
 * Security: the texts matched are untrusted; every pattern is linear (no nested quantifiers), and
 * the classifier caps the text it looks at.
 */

export type BounceClass =
  | "invalid-recipient"
  | "invalid-domain"
  | "mailbox-full"
  | "message-too-large"
  | "policy-or-spam"
  | "reputation"
  | "auth-failure"
  | "transient"
  | "unknown";

export const BOUNCE_CLASSES: readonly BounceClass[] = [
  "invalid-recipient",
  "invalid-domain",
  "mailbox-full",
  "message-too-large",
  "policy-or-spam",
  "reputation",
  "auth-failure",
  "transient",
  "unknown",
];

/** Hard bounces: the address itself is bad, retrying or resending cannot help. */
export const HARD_CLASSES: ReadonlySet<BounceClass> = new Set(["invalid-recipient", "invalid-domain"]);

export interface CodeRule {
  /** An enhanced status code; "x" as the class digit matches both 4 and 5 ("x.2.2"). */
  readonly code: string;
  /** Only when the text matches this too. */
  readonly text?: RegExp;
  readonly class: BounceClass;
}

export interface TextRule {
  readonly text: RegExp;
  readonly class: BounceClass;
}

export const CODE_RULES: readonly CodeRule[] = [
  // Microsoft reuses 5.1.10 for a recipient its directory does not know:
  // "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
  { code: "5.1.10", text: /RecipientNotFound|recipient not found/i, class: "invalid-recipient" },
  // RFC 7505 null MX, as Petrel itself reports it and Postfix does:
  // "556 5.1.10 Recipient domain example.com accepts no mail (null MX)"
  { code: "5.1.10", class: "invalid-domain" },
  // Gmail: "550-5.1.1 The email account that you tried to reach does not exist. Please try
  // double-checking the recipient's email address for typos or unnecessary spaces."
  { code: "x.1.1", class: "invalid-recipient" },
  // Sendmail: "550 5.1.2 <neko@xn--cesupi09d.jp>... Host unknown (Name server: host not found)"
  { code: "x.1.2", class: "invalid-domain" },
  // Postfix: "501 5.1.3 Bad recipient address syntax"
  { code: "x.1.3", class: "invalid-recipient" },
  // RFC 3463 "destination mailbox has moved, no forwarding address":
  // "550 5.1.6 Recipient addresses rejected: mailbox has moved"
  { code: "x.1.6", class: "invalid-recipient" },
  // RFC 3463 5.1.7 is the SENDER's address: "550 5.1.7 No such domain neko.example.com."
  { code: "x.1.7", class: "auth-failure" },
  // The SENDER's domain is refused, not the recipient (never suppress the recipient for it):
  // "553 5.1.8 <b+x@bounces.example.com>: Sender address rejected: Domain not found"
  { code: "x.1.8", class: "auth-failure" },
  // RFC 3463 "mailbox disabled, not accepting messages": Gmail "550-5.2.1 The email account that
  // you tried to reach is disabled." (its 5.2.1 rate replies are caught by their text first)
  { code: "5.2.1", class: "invalid-recipient" },
  // iCloud: "552 5.2.2 <user@icloud.com>: user is over quota"
  { code: "x.2.2", class: "mailbox-full" },
  // Sendmail: "552 5.2.3 Message size exceeds fixed maximum message size (10485760)"
  { code: "x.2.3", class: "message-too-large" },
  // Microsoft: "554 5.2.121 The sender has exceeded the limit for the number of messages they can
  // send to this recipient per hour."
  { code: "x.2.121", class: "reputation" },
  // Microsoft: "554 5.2.122 The recipient has exceeded their limit for the number of messages they
  // can receive per hour." (the recipient's limit: try later, nobody to slow down for)
  { code: "x.2.122", class: "transient" },
  // RFC 3463 "system not accepting network messages", sent with RFC 7504's 521: "521 5.3.2
  // <notaccept@libsisimai.net>: Recipient address rejected: System not accepting network messages."
  { code: "5.3.2", class: "invalid-domain" },
  // Gmail: "552-5.3.4 Your message exceeded Google's message size limits."
  { code: "x.3.4", class: "message-too-large" },
  // Microsoft directory-based edge blocking: "550 5.4.1 Recipient address rejected: Access
  // denied. AS(201806281)" and "550 5.4.1 All recipient addresses rejected : Access denied"
  { code: "5.4.1", text: /access denied/i, class: "invalid-recipient" },
  // Petrel, for a domain with no usable MX address: "550 5.4.4 No usable address for example.com"
  { code: "5.4.4", class: "invalid-domain" },
  // IANA's registry, X.7.13 "user account disabled": "525 5.7.13 Disabled recipient address"
  { code: "x.7.13", class: "invalid-recipient" },
  // Gmail: "550-5.7.25 The IP address sending this message does not have a PTR record setup, or
  // the corresponding forward DNS entry does not point to the sending IP."
  { code: "x.7.25", class: "auth-failure" },
  // Gmail: "550-5.7.26 Unauthenticated email from example.org is not accepted due to domain's
  // DMARC policy." (and "… This mail has been blocked because the sender is unauthenticated.")
  { code: "x.7.26", class: "auth-failure" },
  // Gmail: "550-5.7.27 The sender address <x> is not accepted because the domain's SPF record
  // has an effective policy of fail." (RFC 7372: 5.7.20–5.7.27 are DKIM/SPF/reverse-DNS failures)
  { code: "x.7.27", class: "auth-failure" },
  // Postfix policy daemons: "550 5.7.23 <user@example.com>: Recipient address rejected: Message
  // rejected due to: SPF fail - not authorized."
  { code: "x.7.23", class: "auth-failure" },
  // RFC 7372 "No passing DKIM signature found": "550 5.7.20 No passing DKIM signatures found"
  { code: "x.7.20", class: "auth-failure" },
  // Gmail: "4.7.32 This mail has been rate limited because there is no DMARC alignment"
  { code: "x.7.32", class: "auth-failure" },
  // Microsoft: "530 5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM"
  { code: "x.7.57", class: "auth-failure" },
  // Microsoft: "550 5.7.509 Access denied, sending domain example.com does not pass DMARC
  // verification and has a DMARC policy of reject."
  { code: "5.7.509", class: "auth-failure" },
  // Microsoft: "550 5.7.515 Access denied, sending domain [example.com] doesn't meet the
  // required authentication level."
  { code: "5.7.515", class: "auth-failure" },
  // Microsoft: "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP."
  { code: "5.7.708", class: "policy-or-spam" },
  // Microsoft: "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to
  // IP reputation." (4.7.651 is the same for another pool)
  { code: "4.7.650", class: "reputation" },
  { code: "4.7.651", class: "reputation" },
  // Microsoft: "451 4.7.500 Server busy. Please try again later from [192.0.2.25]. (S77714)"
  { code: "4.7.500", class: "reputation" },
];

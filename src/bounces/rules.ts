/**
 * The bounce classification table: data, not code (design convention 4, after ZoneMTA's
 * config/bounces.txt and KumoMTA's bounce-classify). Every rule sits under a comment quoting a
 * real remote reply it matches; test/bounces-classify.test.ts runs those replies and more.
 *
 * How the table is read (src/bounces/classify.ts):
 * 1. operator rules from `bounces.rules` (config), first match wins;
 * 2. CODE_RULES: a specific enhanced status code (RFC 3463) decides on its own — optionally only
 *    when the text also matches (5.1.10 means "null MX" in RFC 7505 but "recipient not found" at
 *    Microsoft). Generic codes (x.0.0, 5.7.1, 4.7.0, …) are deliberately absent: receivers use
 *    them for everything, so their text decides;
 * 3. TEXT_RULES, in order (more specific causes first: a DMARC rejection that says "blocked" is
 *    an auth failure, a "rate limited … to protect our users from spam" is reputation);
 * 4. the code's subject (x.1.x, x.7.x, …) and then the basic code (4xx, 5xx) as a last resort.
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
  // The SENDER's domain is refused, not the recipient (never suppress the recipient for it):
  // "553 5.1.8 <b+x@bounces.example.com>: Sender address rejected: Domain not found"
  { code: "x.1.8", class: "auth-failure" },
  // iCloud: "552 5.2.2 <user@icloud.com>: user is over quota"
  { code: "x.2.2", class: "mailbox-full" },
  // Sendmail: "552 5.2.3 Message size exceeds fixed maximum message size (10485760)"
  { code: "x.2.3", class: "message-too-large" },
  // Gmail: "552-5.3.4 Your message exceeded Google's message size limits."
  { code: "x.3.4", class: "message-too-large" },
  // Petrel, for a domain with no usable MX address: "550 5.4.4 No usable address for example.com"
  { code: "5.4.4", class: "invalid-domain" },
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
  // Microsoft: "550 5.7.509 Access denied, sending domain example.com does not pass DMARC
  // verification and has a DMARC policy of reject."
  { code: "5.7.509", class: "auth-failure" },
  // Microsoft: "550 5.7.515 Access denied, sending domain [example.com] doesn't meet the
  // required authentication level."
  { code: "5.7.515", class: "auth-failure" },
  // Microsoft: "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to
  // IP reputation."
  { code: "4.7.650", class: "reputation" },
  // Microsoft: "451 4.7.500 Server busy. Please try again later from [192.0.2.25]. (S77714)"
  { code: "4.7.500", class: "reputation" },
];

export const TEXT_RULES: readonly TextRule[] = [
  // Exim callout to OUR return path failed — about the sender, even though it says "no such user":
  // "550-Verification failed for <b+x@bounces.example.com> 550-No Such User Here 550 Sender verify failed"
  { text: /sender verify failed|sender address rejected/i, class: "auth-failure" },
  // Yahoo: "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo
  // requires all senders to authenticate with either SPF or DKIM."
  { text: /sender is unauthenticated|unauthenticated (?:e-?mail|sender)/i, class: "auth-failure" },
  // Google Workspace: "550 5.7.1 Unauthenticated email is not accepted from this domain. DMARC"
  // Mimecast: "550 DMARC Policy Rejection - https://community.mimecast.com/docs/DOC-1369#550"
  { text: /\bDMARC\b/i, class: "auth-failure" },
  // Postfix + policyd-spf: "550 5.7.1 Rejected due to SPF policy: SPF fail - not authorized"
  { text: /\bSPF\b[^.]{0,40}\b(?:fail|failed|failure|not authori[sz]ed|check)/i, class: "auth-failure" },
  // "550 5.7.1 Message rejected: DKIM signature verification failed"
  { text: /\bDKIM\b[^.]{0,40}\b(?:fail|failed|failure|invalid|missing|required)/i, class: "auth-failure" },
  // Mimecast: "550 Rejected by header based Anti-Spoofing policy: sender@example.com"
  { text: /anti-?spoofing|spoofed sender/i, class: "auth-failure" },
  // Postfix: "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.25]"
  { text: /cannot find your (?:reverse )?hostname|reverse DNS|no PTR record/i, class: "auth-failure" },

  // Yahoo: "553 5.7.2 [TSS09] All messages from 192.0.2.25 will be permanently deferred;
  // Retrying will NOT succeed."
  { text: /permanently deferred|TSS09/i, class: "policy-or-spam" },
  // Yahoo: "421 4.7.0 [TSS04] Messages from 192.0.2.192 temporarily deferred due to unexpected
  // volume or user complaints"
  { text: /\[TS[S]?0\d\]|temporarily deferred|unexpected volume|user complaints/i, class: "reputation" },
  // Gmail: "421-4.7.0 This message is suspicious due to the very low reputation of the sending IP
  // address. To protect our users from spam, mail sent from your IP address has been temporarily
  // rate limited."
  { text: /rate.limit|rate limited|unusual rate|low reputation|IP reputation/i, class: "reputation" },
  // "421 4.7.0 Too many concurrent SMTP connections; please try again later."
  // "452 4.5.3 Too many messages from this sender, slow down"
  {
    text: /too many (?:concurrent )?(?:connections|messages|mails|recipients)|throttl|slow down/i,
    class: "reputation",
  },
  // Gmail: "450-4.2.1 The user you are trying to contact is receiving mail too quickly."
  { text: /receiving mail (?:too quickly|at a rate)/i, class: "transient" },
  // Postgrey: "450 4.7.1 <user@example.com>: Recipient address rejected: Greylisted, see
  // http://postgrey.schweikert.ch/help/example.com.html"
  {
    text: /greylist|graylist|try again later|please retry later|temporarily unavailable/i,
    class: "transient",
  },

  // Postfix + Spamhaus: "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using
  // zen.spamhaus.org"; Proofpoint: "554 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.25"
  {
    text: /\bblocked\b|block ?list|black ?list|deny ?list|\bDNSBL\b|\bRBL\b|spamhaus|spamcop|barracuda|sorbs|\bbanned\b/i,
    class: "policy-or-spam",
  },
  // Gmail: "550-5.7.1 Our system has detected that this message is likely unsolicited mail."
  // Exim: "550 Message rejected as spam"
  { text: /\bspam\b|unsolicited|junk mail|\bvirus\b|malware|phishing/i, class: "policy-or-spam" },
  // Mimecast: "554 Email rejected due to security policies - https://community.mimecast.com/docs/DOC-1369#554"
  // Yahoo: "554 5.7.9 Message not accepted for policy reasons."
  {
    text: /policy reasons|security polic|content polic|administrative prohibition|not accepted for policy|relay(?:ing)? (?:access )?(?:denied|not (?:allowed|permitted))|open relay/i,
    class: "policy-or-spam",
  },

  // Outlook: "554 5.2.0 STOREDRV.Deliver.Exception:QuotaExceededException"
  // Exim: "552 Mailbox quota exceeded"; "452 4.2.2 Mailbox full"
  {
    text: /quota ?exceeded|over ?quota|mailbox (?:is )?full|mailbox size limit|insufficient (?:system )?storage|out of storage/i,
    class: "mailbox-full",
  },
  // Exim: "552 Message size exceeds maximum permitted"
  {
    text: /message (?:size )?(?:exceeds|too (?:big|large))|size limit|message is too large/i,
    class: "message-too-large",
  },

  // Microsoft (directory-based edge blocking): "550 5.4.1 Recipient address rejected: Access
  // denied. AS(201806281)"
  { text: /recipient address rejected: access denied/i, class: "invalid-recipient" },
  // Postfix: "550 5.1.1 <user@example.com>: Recipient address rejected: User unknown in local
  // recipient table"; RFC 3464 example: "550 user unknown"; cPanel Exim: "550 No Such User Here"
  {
    text: /user unknown|unknown user|no such (?:user|mailbox|recipient|account|address)|user (?:does not|doesn't) exist|(?:mailbox|account|address|recipient) (?:does not|doesn't) exist|not a (?:valid|known|registered) (?:gateway )?(?:user|recipient|mailbox|address)|invalid (?:recipient|mailbox|address|user)|recipient (?:not found|unknown|rejected: user)|mailbox not found|unknown (?:recipient|mailbox|address)|no mailbox here|doesn't have an? [\w.-]+ account|address rejected: undeliverable|no matching directory entry/i,
    class: "invalid-recipient",
  },
  // Gmail: "550-5.2.1 The email account that you tried to reach is disabled."
  {
    text: /account (?:that you tried to reach )?(?:is|has been) (?:disabled|deactivated|suspended|closed)|mailbox (?:is )?(?:disabled|inactive)/i,
    class: "invalid-recipient",
  },
  // Outlook.com: "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)"
  { text: /mailbox unavailable|mailbox not available/i, class: "invalid-recipient" },
  // Exim: "550 Unrouteable address"; Sendmail: "550 Host unknown"; RFC 3464 example: "host name
  // lookup failure"; Postfix: "Host or domain name not found. Name service error … type=MX"
  {
    text: /unrouteable address|host unknown|domain (?:not found|does not exist)|host or domain name not found|host name lookup failure|no mail hosts|NXDOMAIN/i,
    class: "invalid-domain",
  },

  // RFC 3464 example: "426 connection timed out"; Petrel: "451 4.4.1 connect to …: ECONNREFUSED"
  {
    text: /timed? ?out|connection (?:refused|reset|lost|closed)|ECONNREFUSED|ECONNRESET|lost connection|temporar(?:y|ily)|local problem|try later|service unavailable/i,
    class: "transient",
  },
];

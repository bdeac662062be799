/**
 * The wording half of the bounce table (rules.ts explains the order in which the table is read).
 * SPECIFIC_TEXT_RULES name their cause outright and are read before the enhanced code;
 * TEXT_RULES are weaker evidence, read after it. Within each list the first match wins, so the
 * narrower cause comes first: a throttle that says "Blocked IP" is a throttle, a DMARC rejection
 * that says "blocked" is an authentication failure, a disabled account that says "blocked" is a
 * bad recipient. Every rule sits under a comment quoting a real reply it exists for (most come
 * from test/corpus/bounce-corpus.tsv, where the source of each is recorded).
 * Security: patterns run over untrusted text: each is linear (alternations of literals, bounded
 * gaps like [^.]{0,40}, no nested quantifiers); the classifier caps the text at 4,000 characters.
 */
import type { TextRule } from "./rules.js";

export const SPECIFIC_TEXT_RULES: readonly TextRule[] = [
  // ── The sender's side: authentication, the sender's address and domain, reverse DNS, HELO ──
  // Exim callout to OUR return path failed — about the sender, even though it says "no such user":
  // "550-Verification failed for <b+x@bounces.example.com> 550-No Such User Here 550 Sender verify failed"
  // Sendmail: "553 5.1.8 <root@host.example>... Domain of sender address root@host.example does not exist"
  {
    text: /sender verify failed|sender address rejected|domain of sender address|unroutable sender|invalid sender|[ée]metteur invalide|host denies the sender|mail from invalid|sender is (?:unvalidated|rejected)|fake sender|null sender is not allowed|sender address (?:is )?not verified|email address is not verified/i,
    class: "auth-failure",
  },
  // Yahoo: "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo
  // requires all senders to authenticate with either SPF or DKIM."
  // MessageLabs: "550-Please turn on SMTP Authentication in your mail client."
  {
    text: /sender is unauthenticated|unauthenticated (?:e-?mail|senders?)|authentication required|turn on SMTP Authentication|without authentication|not authenticated to send|does not have authentication information|fail(?:ed)? authentication|authentication checks failed|\bauth error\b/i,
    class: "auth-failure",
  },
  // Google Workspace: "550 5.7.1 Unauthenticated email is not accepted from this domain. DMARC"
  // Mimecast: "550 DMARC Policy Rejection - https://community.mimecast.com/docs/DOC-1369#550"
  { text: /\bDMARC\b/i, class: "auth-failure" },
  // Postfix + policyd-spf: "550 5.7.1 Rejected due to SPF policy: SPF fail - not authorized"
  // GoDaddy: "550 5.1.0 23.83.x.y is not allowed to send from <> per it's SPF Record." (but not
  // Google Groups' advice "Set up SPF records" under a spam rejection)
  {
    text: /(?<!set up )\bSPF\b[^.]{0,40}\b(?:fail|failed|failure|not authori[sz]ed|check|policy|records?)\b|\bbad SPF\b|SPF-check/i,
    class: "auth-failure",
  },
  // "550 5.7.1 Message rejected: DKIM signature verification failed"
  { text: /\bDKIM\b[^.]{0,40}\b(?:fail|failed|failure|invalid|missing|required)/i, class: "auth-failure" },
  // Mimecast: "550 Rejected by header based Anti-Spoofing policy: sender@example.com"
  // Sender ID: "550 5.7.1 can't determine Purported Responsible Address"
  { text: /anti-?spoofing|spoofed sender|purported responsible address/i, class: "auth-failure" },
  // Postfix: "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.25]"
  // Comcast: "554 … Comcast requires that all mail servers must have a PTR record with a valid
  // Reverse DNS entry."; GMX: "554-Bad DNS PTR resource record."
  {
    text: /cannot find your (?:reverse )?hostname|reverse DNS|\bPTR\b|invalid RDNS|IP name lookup failed|helo ?host error|invalid (?:HELO|EHLO)/i,
    class: "auth-failure",
  },
  // The sending IP is not the domain's: "554 INVALID IP FOR SENDING MAIL OF DOMAIN amazonses.com",
  // "550 domain [example.com] mismatches client ip 192.0.2.225.", "556 remote ip check error."
  // web.de, of the sender's domain: "550 <x@example.com>: Invalid DNS MX or A/AAAA resource record"
  {
    text: /invalid IP for sending|mismatches client ip|remote ip check|unverif(?:y|i)able sending IPs|invalid DNS MX/i,
    class: "auth-failure",
  },
  // Gmail: "421 4.7.0 TLS required for RCPT domain, closing connection."
  { text: /TLS required|does not support TLS|must issue a STARTTLS/i, class: "auth-failure" },

  // ── Rates: the recipient's (try later) before the sender's (slow down) ──
  // Gmail: "450-4.2.1 The user you are trying to contact is receiving mail too quickly."
  // Microsoft: "432 4.3.2 STOREDRV.Deliver; recipient thread limit exceeded"
  {
    text: /receiving mail (?:too quickly|at a rate)|recipient has exceeded (?:their|the|message)|recipient thread limit|deferred due to excessive volume|too many recent messages|queue quota exceeded/i,
    class: "transient",
  },
  // Yahoo: "553 5.7.2 [TSS09] All messages from 192.0.2.25 will be permanently deferred;
  // Retrying will NOT succeed."; "421 4.7.1 [TS03] All messages from 192.0.2.1 permanently deferred"
  { text: /permanently deferred|TSS09|\[TS03\]/i, class: "policy-or-spam" },
  // Yahoo: "421 4.7.0 [TSS04] Messages from 192.0.2.192 temporarily deferred due to unexpected
  // volume or user complaints"; NetEase: "421 HL:ICC" (too many concurrent connections)
  {
    text: /\[TSS?0\d\]|temporarily deferred|unexpected volume|user complaints|\b(?:HL:(?:REP|ICC|IFC|MEP)|MI:(?:CEL|DMC|CCL|SFQ)|RP:(?:DRC|CCL|CEL|QRC))\b/i,
    class: "reputation",
  },
  // Gmail: "421-4.7.0 This message is suspicious due to the very low reputation of the sending IP
  // address. To protect our users from spam, mail sent from your IP address has been temporarily
  // rate limited."; qq.com: "550 Ip frequency limited [… Blocked IP 192.0.2.22]"
  // GoDaddy: "550 5.1.1 <a@b> - 203.0.113.222 has sent to too many recipients this hour. IB607"
  {
    text: /rate.?limit|unusual rate|low reputation|IP reputation|frequency limited|sent to too many recipients|sending quota|sending limit|limit for the number of messages they can send|Peak SMTP relay limit/i,
    class: "reputation",
  },
  // "421 4.7.0 Too many concurrent SMTP connections; please try again later."
  // Yahoo: "421 Max message per connection reached, closing transmission channel"
  // Orange: "421 mwinf5c77 ME Service refuse. Veuillez essayer plus tard."
  {
    text: /too many (?:concurrent )?(?:connections|messages|mails|recipients|errors)|per connection|out of allow RCPT|per transaction exceeded|throttl|slow down|service refus/i,
    class: "reputation",
  },

  // The receiver's own failure, whatever else the reply says ("Recipient address rejected: …"):
  // "554 5.3.0 <systemerror@libsisimai.net>: Recipient address rejected: Internal system error."
  { text: /internal (?:server |system )?error|\bsystem error|mailer error/i, class: "transient" },

  // ── The recipient's mailbox: full, disabled ──
  // "552 sorry, mailbox kijitora@example.org is over quota temporarily (#5.1.1)"
  // Outlook: "554 5.2.0 STOREDRV.Deliver.Exception:QuotaExceededException"; Orange: "552 5.1.1
  // Boite du destinataire pleine. Recipient overquota."; GMX: "exceeded storage allocation"
  {
    text: /quota ?exceeded|over ?quota|quota violation|mailbox (?:is )?full|mailbox size limit|mailbox exceeds|exceeded storage|insufficient (?:user )?storage|out of storage|disk quota|pleine/i,
    class: "mailbox-full",
  },
  // Exim: "552 Message size exceeds maximum permitted"; Microsoft: "550 5.2.3
  // RESOLVER.RST.RecipSizeLimit; message too large for this recipient"
  {
    text: /message (?:size )?(?:exceeds|too (?:big|large))|message (?:is )?too (?:large|long)|message length exceeds|size limits?\b|RecipSizeLimit|attachment is too long|line limit exceeded/i,
    class: "message-too-large",
  },
  // A disabled, frozen or suspended account, even when the provider calls it "blocked":
  // Orange: "550 5.5.0 Le compte du destinataire est bloque. The recipient account is blocked."
  // free.fr: "550 5.2.1 This mailbox has been blocked due to inactivity"; i.ua: "550 Mailbox is frozen."
  // A lock "temporary … try again later" is not (test: "User x temporary locked. Please try again later!").
  { text: /temporar(?:y|ily) locked/i, class: "transient" },
  {
    text: /(?:account|mailbox|recipient|user) (?:is |has been )?(?:now )?(?:disabled|deactivated|suspended|frozen|inactive|locked|blocked|bloque|discontinued|closed)|(?:disabled|inactive) (?:recipient|email|e-mail|mailbox|account|user)|recipient address rejected: (?:inactive|blocked)|mailbox has been blocked|account (?:has been )?disabled/i,
    class: "invalid-recipient",
  },

  // ── Policy and content ──
  // Facebook reuses 5.1.1: "550 5.1.1 RCP-P2 http://postmaster.facebook.com/response_codes?ip=
  // 192.0.2.135#rcp Refused due to recipient preferences" (RCP-P1 is the unknown address)
  { text: /\bRCP-P2\b|recipient preferences/i, class: "policy-or-spam" },
  // Cox / Spectrum policy codes: "550 5.1.0 <bounce@mailer.example.com> sender rejected. Refer to
  // Error Codes section at https://www.cox.com/… AUP#CDRBL" (a block list) and "… AUP#In-1310"
  // (Sisimai's set: too many connections)
  { text: /AUP#[A-Z]*RBL/, class: "policy-or-spam" },
  { text: /AUP#(?:In|Out)-\d/, class: "reputation" },
  // Yahoo: "554 5.7.9 Message not accepted for policy reasons."; web.de: "550 <x@example.com>:
  // Reject due to policy restrictions (IP based)"; Zoho: "554 5.2.3 MailPolicy violation"
  {
    text: /policy reasons|polic(?:y|ies) restrictions?|local policy|security polic|content polic|polic(?:y|ies) violation|policy rejection|denied by policy|restricted by policy|policy error|rejected for policy|administrative prohibition|not in whitelist|\bWM:BL[IU]\b/i,
    class: "policy-or-spam",
  },
];

export const TEXT_RULES: readonly TextRule[] = [
  // Postgrey: "450 4.7.1 <user@example.com>: Recipient address rejected: Greylisted, see
  // http://postgrey.schweikert.ch/help/example.com.html"
  { text: /greylist|graylist/i, class: "transient" },
  // Postfix, of the connecting host (the reason, when it names one, was decided above):
  // "450 4.7.1 <c135.kyoto.example.ne.jp[192.0.2.56]>: Client host rejected: may not be mail exchanger"
  { text: /client host rejected/i, class: "policy-or-spam" },
  // Postfix + Spamhaus: "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using
  // zen.spamhaus.org"; Proofpoint: "554 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.25"
  // NetEase: "450 DT:RBL"; a Chinese provider's "550 black ip."
  {
    text: /\bblocked\b|block ?list|black ?(?:list|ip|mail)|blacklisted|deny ?list|\bDNSBL\b|\bRBL\b|spamhaus|spamcop|barracuda|sorbs|cloudmark|\bbanned\b|bloquee|\bDT:RBL\b/i,
    class: "policy-or-spam",
  },
  // Gmail: "550-5.7.1 Our system has detected that this message is likely unsolicited mail."
  // Exim: "550 Message rejected as spam"; NetEase: "451 DT:SPM ,please try again"; qq.com: "550
  // Mail content denied."; amavis: "550 5.7.1 Message content rejected, UBE, id=00000-22-225"
  {
    text: /\bspam(?:ming)?\b|\bUBE\b|unsolicited|junk mail|\bvirus\b|malware|phishing|\bDT:SPM\b|content (?:rejected|denied)|message filtered|illegal attachment|security issue|same size mails|anti-spam|scored as/i,
    class: "policy-or-spam",
  },
  // Header and format checks: Gmail "550-5.7.1 Messages with multiple addresses in From: header
  // are not accepted."; Yahoo "554 Message not allowed - Headers are not RFC compliant[291]"
  {
    text: /header error|headers? (?:are |is )?(?:not RFC|too large)|RFC ?5322|not RFC compliant|duplicate header|in From: header|From: header|8-bit data|media error/i,
    class: "policy-or-spam",
  },
  // Relaying refused: Postfix "454 4.7.1 <user@example.com>: Relay access denied"
  {
    text: /relay(?:ing)? (?:access )?(?:denied|not (?:allowed|permitted)|disallowed)|not configured to relay|open ?relay|insecure mail relay|no relaying|host denies relay|smtp server of your ISP/i,
    class: "policy-or-spam",
  },

  // ── The recipient: unknown, moved ──
  // Postfix: "550 5.1.1 <user@example.com>: Recipient address rejected: User unknown in local
  // recipient table"; RFC 3464 example: "550 user unknown"; cPanel Exim: "550 No Such User Here"
  // Facebook: "550 5.1.1 RCP-P1 … Recipient address does not exist"; Yahoo: "554 delivery error:
  // dd This user doesn't have a yahoo.com account"
  {
    text: /user unknown|unknown (?:user|recipient|mailbox|address(?! error)|or illegal)|addressee unknown|no such (?:user|mailbox|recipient|account|address)|user (?:does not|doesn't|not) exists?|(?:mailbox|account|address|recipient) (?:does not|doesn't) exist|not a (?:valid|known|registered) (?:gateway )?(?:user|recipient|mailbox|address)|invalid (?:recipient|mailbox|address|user|final delivery)|recipient (?:not found|unknown|rejected: user|unavailable)|(?:mailbox|user) not found|no mailbox here|doesn't have an? [\w.-]+ account|address rejected: undeliverable|no matching directory entry|RecipNotFound|destinataire invalide|mailbox unallocated|could not be found, or was misspelled|is no longer valid|no longer on server|not our (?:user|customer)|bad (?:destination mailbox )?address|address rejected\.?$|RCP-P1/i,
    class: "invalid-recipient",
  },
  // Outlook.com: "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)"
  { text: /mailbox unavailable|mailbox not available/i, class: "invalid-recipient" },
  // Exim: "550 Unrouteable address"; Sendmail: "550 Host unknown"; Postfix: "Host or domain name not
  // found. Name service error … type=MX"; Gmail: "DNS Error: … responded with code NXDOMAIN"
  // Gmail: "The domain libsisimai.org doesn't receive email according to the administrator: returned Null MX"
  {
    text: /unrouteable address|host unknown|domain (?:not found|does not exist|is not reachable)|no such domain|host or domain name not found|host name lookup failure|no mail hosts|NXDOMAIN|null MX|doesn't receive email|does not accept mail|had no relevant answers|^(?:\d{3}[ -])?[\w-]+(?:\.[\w-]+)+ does not exist/i,
    class: "invalid-domain",
  },

  // ── Try again ──
  // RFC 3464 example: "426 connection timed out"; Petrel: "451 4.4.1 connect to …: ECONNREFUSED"
  // Microsoft: "451 4.7.1 Sorry, the service is currently unavailable. Please come back later."
  {
    text: /try again later|please retry later|temporarily (?:unavailable|rejected)|currently unavailable|come back later|timed? ?out|timeout|connection (?:refused|reset|lost|closed)|ECONNREFUSED|ECONNRESET|lost connection|temporar(?:y|ily)|local problem|try later|service (?:currently )?unavailable|not available|server error|name server reply|resources|hop count|too many hops|loop/i,
    class: "transient",
  },
  // Sisimai's set: "554 st11p00im-smtpin013.me.com ESMTP not accepting connections"; qq.com:
  // "550 Mail is rejected by recipients"; Orange: "550 5.2.0 Mail rejete. Mail rejected. ofr_506"
  {
    text: /not accepting connections|(?:mail|message|e-?mail) (?:is )?(?:rejected|rejete|not allowed|refused)|rejected by|access denied|denied|not allowed|IP is rejected|invalid IP|\(BL\)|protocol violation/i,
    class: "policy-or-spam",
  },
];

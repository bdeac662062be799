/**
 * Sending through the API (issue 9): a JSON message composed into MIME by Nodemailer's
 * MailComposer (long lines, non-ASCII names and subjects encoded by it), or a raw RFC 5322
 * message with its envelope; then the same accept path as SMTP (src/app/accept.ts): sender
 * rules, suppression, size, metadata, DKIM and the durable group commit before the answer.
 *
 * Security: everything here is untrusted client input. CR or LF in any header value, name or
 * address is refused (header injection), as are header names outside RFC 5322 ftext (§3.6.8)
 * and the fields Petrel writes itself (trace, DKIM) or composes from the JSON fields; addresses
 * are validated; attachment content must be strict base64. Nothing is quoted back but names.
 */
import { randomUUID } from "node:crypto";
import { domainToASCII } from "node:url";
import MailComposer from "nodemailer/lib/mail-composer/index.js";
import {
  type AcceptDeps,
  acceptContent,
  checkRecipient,
  checkSender,
  type Rejection,
  type Submitter,
} from "../app/accept.js";
import { PetrelError } from "../errors.js";
import { buildMimeSync } from "./mime-build.js";
import { composeSimpleText } from "./mime-simple.js";
import { parseTime, validAddress } from "./validate.js";

export interface Attachment {
  readonly filename: string;
  /** base64 */
  readonly content: string;
  readonly content_type?: string | undefined;
  readonly content_id?: string | undefined;
}

export interface ComposedMessage {
  readonly from: string;
  readonly to?: readonly string[] | undefined;
  readonly cc?: readonly string[] | undefined;
  readonly bcc?: readonly string[] | undefined;
  readonly reply_to?: string | undefined;
  readonly subject?: string | undefined;
  readonly text?: string | undefined;
  readonly html?: string | undefined;
  readonly attachments?: readonly Attachment[] | undefined;
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly metadata?: Readonly<Record<string, unknown>> | undefined;
  readonly categories?: readonly string[] | undefined;
  /** Scheduled send: RFC 3339 or unix seconds, at most queue.maxScheduleAheadMs ahead. */
  readonly send_at?: string | number | undefined;
}

export interface RawMessage {
  readonly from: string;
  readonly to: readonly string[];
  /** The RFC 5322 message. */
  readonly raw: string;
  readonly send_at?: string | number | undefined;
}

export type RecipientResult = {
  readonly address: string;
  readonly state: "queued" | "scheduled" | "dropped" | "refused";
};

export interface SendResult {
  readonly id: string;
  readonly recipients: RecipientResult[];
  /** Scheduled send: when it will be sent (RFC 3339). */
  readonly send_at?: string;
}

/** Who sends, from where: per request, kept apart from the deps so no request copies those. */
export interface SendOrigin {
  readonly submitter: Submitter;
  readonly clientIp: string;
  /** "HTTPS" under TLS, else "HTTP": the Received field's protocol. */
  readonly protocol: string;
}

// RFC 5322 §3.6.8: ftext is printable US-ASCII except colon.
const FTEXT = /^[\x21-\x39\x3b-\x7e]{1,76}$/;
/** Fields Petrel writes itself (trace, signatures, authentication results). */
const PETREL_FIELDS = new Set([
  "received",
  "return-path",
  "dkim-signature",
  "authentication-results",
  "arc-seal",
  "arc-message-signature",
  "arc-authentication-results",
  "x-petrel-metadata",
  "x-petrel-category",
  "x-petrel-idempotency-key",
  "x-petrel-send-at",
]);
/** Fields composed from the JSON members (give those instead). */
const COMPOSED_FIELDS = new Set([
  "from",
  "to",
  "cc",
  "bcc",
  "reply-to",
  "subject",
  "content-type",
  "content-transfer-encoding",
  "mime-version",
]);
/**
 * A domain domainToASCII returns lower-cased and otherwise unchanged (it costs 1% of a send): LDH
 * labels, no punycode label (it would be checked), and a last label that starts with a letter
 * (one of digits or 0x… is parsed as an IPv4 address by the WHATWG host parser).
 */
const ASCII_DOMAIN = /^(?![\s\S]*xn--)(?:[A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*$/i;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// "Name <a@b>" or "a@b"; linear (no nested quantifiers over the same characters).
const NAMED = /^([^<>]*)<([^<>]*)>$/;

function noLineBreaks(what: string, value: string): void {
  if (/[\r\n]/.test(value))
    throw new PetrelError("header-injection", `${what} contains a line break (CR or LF)`, {
      extra: { field: what },
    });
}

interface Mailbox {
  readonly name: string;
  readonly address: string;
}

function mailbox(what: string, value: string): Mailbox {
  noLineBreaks(what, value);
  const named = NAMED.exec(value.trim());
  const name = named ? named[1]!.trim().replace(/^"(.*)"$/, "$1") : "";
  const raw = named ? named[2]! : value;
  try {
    return { name, address: validAddress(raw) };
  } catch {
    throw new PetrelError(
      "invalid-input",
      `${what}: not a valid address: ${JSON.stringify(value.slice(0, 100))}`,
    );
  }
}

function mailboxes(what: string, values: readonly string[] | undefined): Mailbox[] {
  return (values ?? []).map((v, i) => mailbox(`${what}[${i}]`, v));
}

/** ASCII-only JSON (non-ASCII as \u escapes), so the field needs no encoding. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

export interface Composed {
  readonly mailFrom: string;
  readonly recipients: string[];
  readonly content: Buffer;
  /** send_at in ms (its range is checked on the accept path, as X-Petrel-Send-At's is). */
  readonly sendAt?: number | undefined;
}

function sendAtOf(value: string | number | undefined): { sendAt?: number } {
  return value === undefined ? {} : { sendAt: parseTime(value, "send_at") };
}

/** Validates a JSON message and composes its MIME with MailComposer. */
export async function composeMessage(message: ComposedMessage): Promise<Composed> {
  const schedule = sendAtOf(message.send_at);
  const from = mailbox("from", message.from);
  const to = mailboxes("to", message.to);
  const cc = mailboxes("cc", message.cc);
  const bcc = mailboxes("bcc", message.bcc);
  const replyTo = message.reply_to === undefined ? undefined : mailbox("reply_to", message.reply_to);
  if (to.length + cc.length + bcc.length === 0)
    throw new PetrelError("invalid-input", "give at least one recipient (to, cc or bcc)");
  if (message.subject !== undefined) noLineBreaks("subject", message.subject);
  const headers: Record<string, { prepared: true; value: string } | string> = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    noLineBreaks(`header name ${JSON.stringify(name.slice(0, 80))}`, name);
    if (!FTEXT.test(name))
      throw new PetrelError(
        "header-injection",
        `header name ${JSON.stringify(name.slice(0, 80))} is not RFC 5322 ftext`,
      );
    const lower = name.toLowerCase();
    if (PETREL_FIELDS.has(lower))
      throw new PetrelError("header-injection", `header ${name} is set by Petrel and cannot be given`);
    if (COMPOSED_FIELDS.has(lower))
      throw new PetrelError("invalid-input", `header ${name} is composed from the message fields; use those`);
    noLineBreaks(`header ${name}`, value);
    headers[name] = value;
  }
  if (message.metadata !== undefined)
    headers["X-Petrel-Metadata"] = { prepared: true, value: asciiJson(message.metadata) };
  if (message.categories !== undefined && message.categories.length > 0) {
    for (const c of message.categories) {
      noLineBreaks("category", c);
      if (c.includes(",") || c.trim() === "")
        throw new PetrelError("invalid-input", "a category is a non-empty name without commas");
    }
    headers["X-Petrel-Category"] = { prepared: true, value: message.categories.join(", ") };
  }
  const attachments = (message.attachments ?? []).map((a, i) => {
    noLineBreaks(`attachments[${i}].filename`, a.filename);
    if (a.content_type !== undefined) noLineBreaks(`attachments[${i}].content_type`, a.content_type);
    if (a.content_id !== undefined) noLineBreaks(`attachments[${i}].content_id`, a.content_id);
    if (!BASE64.test(a.content))
      throw new PetrelError("invalid-input", `attachments[${i}].content is not valid base64`);
    return {
      filename: a.filename,
      content: Buffer.from(a.content, "base64"),
      ...(a.content_type === undefined ? {} : { contentType: a.content_type }),
      ...(a.content_id === undefined ? {} : { cid: a.content_id }),
    };
  });
  // MailComposer would make these from six crypto.randomBytes calls per message (one per MIME
  // node, five for the Message-ID): 10% of the API's send path in bench:http's profile.
  // randomUUID draws from Node's pooled random bytes: as unpredictable, a fraction of the cost.
  // The Message-ID keeps nodemailer's shape, <uuid@the From domain> (RFC 5322 §3.6.4).
  const fromDomain = from.address.slice(from.address.lastIndexOf("@") + 1);
  const asciiDomain = ASCII_DOMAIN.test(fromDomain) ? fromDomain.toLowerCase() : domainToASCII(fromDomain);
  const messageId = `<${randomUUID()}@${asciiDomain || "localhost"}>`;
  const date = new Date();
  const recipients = [...new Set([...to, ...cc, ...bcc].map((m) => m.address))];
  // The common plain-text send, byte for byte what MailComposer writes, without its tree.
  if (message.html === undefined && attachments.length === 0 && message.text !== undefined) {
    const simple = composeSimpleText({
      from,
      to,
      cc,
      replyTo,
      subject: message.subject,
      text: message.text,
      headers,
      messageId,
      date,
    });
    if (simple) return { mailFrom: from.address, recipients, content: simple, ...schedule };
  }
  const composer = new MailComposer({
    from,
    ...(to.length > 0 ? { to } : {}),
    ...(cc.length > 0 ? { cc } : {}),
    ...(bcc.length > 0 ? { bcc } : {}),
    ...(replyTo ? { replyTo } : {}),
    ...(message.subject === undefined ? {} : { subject: message.subject }),
    ...(message.text === undefined ? {} : { text: message.text }),
    ...(message.html === undefined ? {} : { html: message.html }),
    attachments,
    headers,
    messageId,
    date,
    baseBoundary: randomUUID().replaceAll("-", ""),
  });
  const root = composer.compile();
  // Byte-identical to root.build() without its stream pipeline (see mime-build.ts).
  const content =
    buildMimeSync(root) ??
    (await new Promise<Buffer>((resolve, reject) =>
      root.build((err, built) => (err ? reject(err) : resolve(built))),
    ));
  return { mailFrom: from.address, recipients, content, ...schedule };
}

/** Validates a raw message's envelope. */
export function rawMessage(message: RawMessage): Composed {
  const from = mailbox("from", message.from).address;
  const recipients = [...new Set(mailboxes("to", message.to).map((m) => m.address))];
  if (recipients.length === 0) throw new PetrelError("invalid-input", "give at least one recipient (to)");
  return {
    mailFrom: from,
    recipients,
    content: Buffer.from(message.raw, "utf8"),
    ...sendAtOf(message.send_at),
  };
}

function problemFor(verdict: Rejection): PetrelError {
  if (verdict.kind === "tempfail") return new PetrelError("temporary-failure", verdict.message);
  if (verdict.enhancedCode.startsWith("5.7.")) return new PetrelError("sender-not-allowed", verdict.message);
  return new PetrelError("invalid-input", verdict.message);
}

/** The accept path of SMTP for one composed or raw message: 202's body, or a PetrelError. */
export async function submit(deps: AcceptDeps, origin: SendOrigin, composed: Composed): Promise<SendResult> {
  const { config } = deps;
  const { submitter } = origin;
  if (composed.content.length > config.smtp.limits.maxMessageSize)
    throw new PetrelError(
      "payload-too-large",
      `the message is ${composed.content.length} bytes; the limit is ${config.smtp.limits.maxMessageSize}`,
    );
  if (composed.recipients.length > config.smtp.limits.maxRecipients)
    throw new PetrelError(
      "invalid-input",
      `at most ${config.smtp.limits.maxRecipients} recipients per message`,
    );
  // One lookup view for the message's checks and its signing keys, as over SMTP (lookup-cache.ts).
  const lookups = deps.store.lookupView?.() ?? deps.store;
  const sender = await checkSender(deps, submitter.accountId, composed.mailFrom, lookups);
  if (sender.verdict.kind !== "accept") {
    deps.logger.info({ key: submitter.label, reason: sender.verdict.reason }, "api rejected");
    throw problemFor(sender.verdict);
  }
  const results: RecipientResult[] = [];
  const accepted: string[] = [];
  const dropped: string[] = [];
  for (const address of composed.recipients) {
    const verdict = await checkRecipient(deps, submitter.accountId, address);
    if (verdict.kind === "accept") accepted.push(address);
    else if (verdict.kind === "drop") {
      accepted.push(address);
      dropped.push(address);
    }
    results.push({
      address,
      state: verdict.kind === "accept" ? "queued" : verdict.kind === "drop" ? "dropped" : "refused",
    });
  }
  if (accepted.length === 0)
    throw new PetrelError("recipients-refused", "every recipient was refused (suppressed)");
  const outcome = await acceptContent(deps, {
    submitter,
    mailFrom: composed.mailFrom,
    recipients: accepted,
    dropped,
    content: composed.content,
    clientIp: origin.clientIp,
    heloName: "api",
    protocol: origin.protocol,
    identities: sender.identities,
    ...(sender.statuses ? { statuses: sender.statuses } : {}),
    lookups,
    ...(composed.sendAt === undefined ? {} : { sendAt: composed.sendAt }),
  });
  if (outcome.kind === "rejected") {
    deps.logger.info({ key: submitter.label, reason: outcome.verdict.reason }, "api rejected");
    throw problemFor(outcome.verdict);
  }
  if (outcome.kind === "tempfail")
    throw new PetrelError("temporary-failure", "the message could not be stored; retry");
  deps.logger.info(
    {
      queueId: outcome.queueId,
      ip: origin.clientIp,
      key: submitter.label,
      from: composed.mailFrom,
      rcpts: accepted.length,
      size: outcome.size,
      via: "http",
      ...(outcome.selectors.length > 0 ? { dkim: outcome.selectors } : {}),
      ...(outcome.sendAt === undefined ? {} : { sendAt: new Date(outcome.sendAt).toISOString() }),
    },
    "queued",
  );
  if (outcome.sendAt === undefined) return { id: outcome.queueId, recipients: results };
  return {
    id: outcome.queueId,
    recipients: results.map((r) => (r.state === "queued" ? { ...r, state: "scheduled" as const } : r)),
    send_at: new Date(outcome.sendAt).toISOString(),
  };
}

/**
 * Parses what arrives at the bounce listener: RFC 3464 delivery status notifications
 * (`multipart/report; report-type=delivery-status`, and RFC 6533's `message/global-delivery-status`),
 * RFC 5965 ARF feedback reports (`report-type=feedback-report`), and the common non-standard
 * bounce texts (qmail, old Exim, hosted gateways) that carry no machine-readable part. MIME is
 * decoded by postal-mime; the report fields (RFC 3464 §2, RFC 5965 §3) are read here.
 *
 * Invariants: parseReport() never throws and never rejects: malformed MIME, a truncated report or
 * binary garbage give `{ kind: "unknown" }` (or a best-effort text reading); it is pure apart from
 * postal-mime, with no I/O. Which delivery a report is about is NOT decided here: the envelope
 * recipient (the VERP token) says that; this module only says what the report claims.
 * Security: the whole input is untrusted. Field values are unfolded, trimmed and capped
 * (MAX_FIELD); the number of recipient groups read is capped (MAX_GROUPS); regular expressions
 * are linear; no field is ever evaluated or used as a path.
 */
import PostalMime from "postal-mime";

export interface DsnRecipient {
  /** The address after "rfc822;" (or the raw value for other address types), lower-cased domain kept as sent. */
  readonly finalRecipient: string | null;
  readonly originalRecipient: string | null;
  /** failed | delayed | delivered | relayed | expanded (lower case), or "" when missing. */
  readonly action: string;
  /** The status code ("5.1.1"), or null when missing or malformed. */
  readonly status: string | null;
  /** Anything after the status code ("(permanent failure)"). */
  readonly statusComment: string;
  /** The diagnostic after its type ("550 5.1.1 … does not exist"), or null. */
  readonly diagnostic: string | null;
  readonly remoteMta: string | null;
}

export type InboundReport =
  | {
      readonly kind: "dsn";
      readonly reportingMta: string | null;
      readonly recipients: readonly DsnRecipient[];
      /** The human-readable part (first text part), capped. */
      readonly humanText: string;
      /** Message-ID of the returned message or headers, if present. */
      readonly originalMessageId: string | null;
    }
  | {
      readonly kind: "arf";
      /** abuse | fraud | virus | other | not-spam | auth-failure (lower case); "" when missing. */
      readonly feedbackType: string;
      readonly userAgent: string | null;
      readonly originalMailFrom: string | null;
      readonly originalRcptTo: string | null;
      readonly sourceIp: string | null;
      readonly humanText: string;
      readonly originalMessageId: string | null;
    }
  | {
      /** A bounce in prose only: the action guessed from its wording, the first SMTP reply found. */
      readonly kind: "text";
      readonly action: "failed" | "delayed";
      readonly diagnostic: string;
      readonly humanText: string;
    }
  /** An out-of-office or other automatic reply: not a bounce. */
  | { readonly kind: "auto-reply"; readonly subject: string }
  | { readonly kind: "unknown"; readonly reason: string };

const MAX_FIELD = 1000;
const MAX_GROUPS = 200;
const MAX_TEXT = 8000;
const MAX_HTML = 256 * 1024;
const MAX_PARSED_BYTES = 1024 * 1024;
const MAX_PARSED_LINES = 2000;
const MAX_BOUNDARY_LINES = 100;
const ADDRESS_TYPE = /^\s*([a-z0-9-]+)\s*;\s*(.*)$/i;
const STATUS = /^\s*([245]\.\d{1,3}\.\d{1,3})\b\s*(.*)$/;

/** Parses a received message; never throws. */
export async function parseReport(raw: Buffer | string): Promise<InboundReport> {
  try {
    return await parse(raw);
  } catch (err) {
    return {
      kind: "unknown",
      reason: `unparseable: ${err instanceof Error ? err.message : String(err)}`.slice(0, 200),
    };
  }
}

/**
 * What postal-mime is given: the first MAX_PARSED_LINES lines (2,000), at most MAX_PARSED_BYTES
 * (1 MiB), cut before the MAX_BOUNDARY_LINES-th (100) line that starts with "--". Its cost per
 * body line and per MIME part is high on Node 20 (each line becomes a Blob part: a 9 MB
 * delivery-status part of short lines took 14–38 s of CPU here; 1,250 one-line parts 0.5 s), and
 * a report's evidence comes first anyway (RFC 3464 §2 and RFC 5965 §2: the human-readable part,
 * then the status or feedback part, then the returned message, of which only the header is read;
 * the shared samples have under 100 lines). A cut-off multipart is still parsed.
 */
export function reportPrefix(raw: Buffer | string): Buffer {
  const buf = typeof raw === "string" ? Buffer.from(raw.slice(0, MAX_PARSED_BYTES), "utf8") : raw;
  const limit = Math.min(buf.length, MAX_PARSED_BYTES);
  let end = 0;
  let boundaries = 0;
  for (let lines = 0; lines < MAX_PARSED_LINES; lines++) {
    if (buf[end] === 0x2d && buf[end + 1] === 0x2d && ++boundaries >= MAX_BOUNDARY_LINES) break;
    const lf = buf.indexOf(10, end);
    if (lf === -1 || lf >= limit) return buf.subarray(0, limit);
    end = lf + 1;
  }
  return buf.subarray(0, end);
}

async function parse(raw: Buffer | string): Promise<InboundReport> {
  const email = await PostalMime.parse(reportPrefix(raw), {
    // The returned message must stay a part of its own, not be merged into the report's text.
    forceRfc822Attachments: true,
    attachmentEncoding: "utf8",
    maxNestingDepth: 20,
    maxHeadersSize: 512 * 1024,
  });
  const humanText = email.text !== undefined ? email.text.slice(0, MAX_TEXT) : htmlText(email.html ?? "");
  const parts = email.attachments.map((a) => ({
    type: a.mimeType.toLowerCase(),
    text: typeof a.content === "string" ? a.content : Buffer.from(a.content as ArrayBuffer).toString("utf8"),
  }));
  const original = parts.find((p) =>
    ["message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"].includes(p.type),
  );
  const originalMessageId = original ? messageIdIn(original.text) : null;

  const feedback = parts.find((p) => p.type === "message/feedback-report");
  if (feedback) {
    const fields = fieldsOf(groupsOf(feedback.text)[0] ?? []);
    return {
      kind: "arf",
      feedbackType: (fields.get("feedback-type") ?? "").toLowerCase(),
      userAgent: fields.get("user-agent") ?? null,
      originalMailFrom: bareAddress(fields.get("original-mail-from")),
      originalRcptTo: bareAddress(fields.get("original-rcpt-to") ?? fields.get("removal-recipient")),
      sourceIp: fields.get("source-ip") ?? null,
      humanText,
      originalMessageId,
    };
  }

  const status = parts.find(
    (p) => p.type === "message/delivery-status" || p.type === "message/global-delivery-status",
  );
  if (status) {
    const groups = groupsOf(status.text);
    const perMessage = fieldsOf(groups[0] ?? []);
    const recipients: DsnRecipient[] = [];
    for (const group of groups.slice(0, MAX_GROUPS)) {
      const fields = fieldsOf(group);
      if (!fields.has("final-recipient") && !fields.has("original-recipient") && !fields.has("action"))
        continue;
      recipients.push(toRecipient(fields));
    }
    if (recipients.length > 0) {
      return {
        kind: "dsn",
        reportingMta: typed(perMessage.get("reporting-mta")),
        recipients,
        humanText,
        originalMessageId,
      };
    }
  }

  const subject = (email.subject ?? "").slice(0, 300);
  return readProse(email.headers, subject, humanText || rawText(raw));
}

function toRecipient(fields: ReadonlyMap<string, string>): DsnRecipient {
  const status = STATUS.exec(fields.get("status") ?? "");
  return {
    finalRecipient: typed(fields.get("final-recipient")),
    originalRecipient: typed(fields.get("original-recipient")),
    action: (fields.get("action") ?? "").trim().toLowerCase().split(/\s/)[0] ?? "",
    status: status ? status[1]! : null,
    statusComment: status ? status[2]!.trim() : (fields.get("status") ?? "").trim(),
    diagnostic: typed(fields.get("diagnostic-code")),
    remoteMta: typed(fields.get("remote-mta")),
  };
}

/** "rfc822; user@example.com" → "user@example.com"; "smtp; 550 …" → "550 …". */
function typed(value: string | undefined): string | null {
  if (value === undefined) return null;
  const m = ADDRESS_TYPE.exec(value);
  const out = (m ? m[2]! : value).trim();
  return out === "" ? null : out;
}

function bareAddress(value: string | undefined): string | null {
  if (value === undefined) return null;
  const v = typed(value) ?? "";
  const m = /<([^<>\s]{1,320})>/.exec(v);
  const out = (m ? m[1]! : v).trim();
  return out === "" ? null : out;
}

/**
 * RFC 3464 §2.1: the body of a delivery-status part is groups of header-style fields separated by
 * blank lines; the first group is about the message, the others one recipient each. Returns the
 * raw lines per group (folded lines still apart).
 */
function groupsOf(text: string): string[][] {
  const groups: string[][] = [];
  let current: string[] = [];
  for (const line of text.slice(0, 256 * 1024).split(/\r?\n/)) {
    if (line.trim() === "") {
      if (current.length > 0) groups.push(current);
      current = [];
      if (groups.length > MAX_GROUPS) break;
      continue;
    }
    current.push(line);
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

/** Unfolds a group's lines into fields (lower-case names, first occurrence wins, capped values). */
function fieldsOf(lines: readonly string[]): Map<string, string> {
  const fields = new Map<string, string>();
  let name: string | undefined;
  let value = "";
  const flush = () => {
    if (name !== undefined && !fields.has(name))
      fields.set(name, value.replace(/\s+/g, " ").trim().slice(0, MAX_FIELD));
  };
  for (const line of lines) {
    if (/^[ \t]/.test(line) && name !== undefined) {
      if (value.length < MAX_FIELD * 2) value += ` ${line.trim()}`;
      continue;
    }
    flush();
    const colon = line.indexOf(":");
    if (colon <= 0 || colon > 80) {
      name = undefined;
      continue;
    }
    name = line.slice(0, colon).trim().toLowerCase();
    value = line.slice(colon + 1);
  }
  flush();
  return fields;
}

/** The Message-ID of a returned message or header block; tolerates a stray blank line in the headers. */
function messageIdIn(text: string): string | null {
  const m = /^Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<?[^\s<>]{1,250}>?)/im.exec(text.slice(0, 64 * 1024));
  if (!m) return null;
  const id = m[1]!;
  return id.startsWith("<") ? id : `<${id.replace(/>$/, "")}>`;
}

const FAILED =
  /could not be delivered|couldn't be delivered|undeliverable|undelivered mail|delivery (?:has )?failed|delivery to the following recipients? failed|permanent (?:error|failure)|failed permanently|returned mail|mail delivery failed|delivery status notification \(failure\)|following addresses had permanent fatal errors|address\(es\) failed|wasn't able to deliver|unable to deliver|message not delivered|non-?delivery report/i;
const DELAYED =
  /delivery (?:has been |is )?delayed|delayed (?:mail|delivery)|delivery status notification \(delay\)|not (?:yet )?been delivered|will (?:continue to )?(?:retry|try)|still trying|warning: message .{0,80} delayed/i;
const AUTO_REPLY_SUBJECT =
  /out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response)|vacation|away from|abwesenheit|absence/i;
/** An SMTP reply inside prose: "said: 550 5.1.1 …", "Remote host said: 550 …", "<<< 552 5.2.3 …". */
const REPLY_IN_TEXT =
  /(?:^|said:|error:|reply:|<<<|:)[ \t]*([45]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}[ -])?[^\r\n]{0,300})/im;

function readProse(
  headers: ReadonlyArray<{ key: string; value: string }>,
  subject: string,
  text: string,
): InboundReport {
  const header = (name: string) => headers.find((h) => h.key === name)?.value ?? "";
  const body = text.slice(0, MAX_TEXT);
  const failed = FAILED.test(subject) || FAILED.test(body);
  const delayed = !failed && (DELAYED.test(subject) || DELAYED.test(body));
  if (!failed && !delayed) {
    const auto =
      /auto-replied|auto-generated/i.test(header("auto-submitted")) || header("x-autoreply") !== "";
    if (auto || AUTO_REPLY_SUBJECT.test(subject)) return { kind: "auto-reply", subject };
    return { kind: "unknown", reason: "neither a report nor a recognisable bounce text" };
  }
  const reply = REPLY_IN_TEXT.exec(body);
  return {
    kind: "text",
    action: failed ? "failed" : "delayed",
    diagnostic: (reply ? reply[1]! : "").replace(/\s+/g, " ").trim(),
    humanText: `${subject}\n${body}`.slice(0, MAX_TEXT),
  };
}

function rawText(raw: Buffer | string): string {
  const s = typeof raw === "string" ? raw.slice(0, 64 * 1024) : raw.subarray(0, 64 * 1024).toString("latin1");
  const end = s.search(/\r?\n\r?\n/);
  return end < 0 ? "" : s.slice(end).slice(0, MAX_TEXT);
}

/**
 * The text of an HTML part, capped at MAX_TEXT. Only a bounded prefix is read, and a tag is
 * `<` up to the next `<` or `>`: the old `/<[^>]{0,2000}>/g` over the whole part retried 2,000
 * characters from every `<` (9 MB of `<`: 35 s with the event loop blocked).
 */
function htmlText(html: string): string {
  return html
    .slice(0, MAX_HTML)
    .replace(/<[^<>]*>/g, " ")
    .replace(/&nbsp;/g, " ")
    .slice(0, MAX_TEXT);
}

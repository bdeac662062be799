/**
 * The message MailComposer would write for the API's most common send — plain text only, no
 * HTML, no attachments, every header value short printable ASCII — written directly, without
 * building nodemailer's MimeNode tree. For a 2 KB text message the tree (header-key normalising
 * on every get and set, the encoding probes, the header builder) was about a third of the send
 * path's main-thread CPU in bench:http's profile, and the /mime route (no composing at all)
 * accepted 110% of SMTP's rate against 68% for a composed send.
 *
 * The output is byte-identical to MailComposer's (test/http-mime-simple.test.ts compares them
 * over generated messages, in and out of this path): the same header order (custom headers
 * first, then From … Message-ID, Date, Content-Transfer-Encoding, MIME-Version, Content-Type
 * last, as MailComposer writes them when given the date), the same encoding choice (7bit when no line exceeds 76 characters, else
 * quoted-printable from nodemailer's own encoder), the same final newline. Anything outside that
 * narrow shape — a non-ASCII or long header, a name that would need quoting or an encoded word,
 * an IDN domain, control characters, HTML, attachments — returns undefined and the caller uses
 * MailComposer, so this path can only be faster, never different.
 */
import { Encoder as QpEncoder } from "nodemailer/lib/qp/index.js";
import { literalQuotedPrintable } from "./qp-literal.js";

export interface SimpleMailbox {
  readonly name: string;
  readonly address: string;
}

export interface SimpleMessage {
  readonly from: SimpleMailbox;
  readonly to: readonly SimpleMailbox[];
  readonly cc: readonly SimpleMailbox[];
  readonly replyTo?: SimpleMailbox | undefined;
  readonly subject?: string | undefined;
  readonly text: string;
  /** In insertion order; `prepared` values go out as given (as MailComposer's prepared option). */
  readonly headers: Readonly<Record<string, { prepared: true; value: string } | string>>;
  readonly messageId: string;
  readonly date: Date;
}

/** Lines of body text longer than this are quoted-printable (MimeNode's 76). */
const MAX_LINE = 76;
/**
 * RFC 5322 §2.1.1: MailComposer folds header lines of 76 characters and more; well below that a
 * line is never folded or changed.
 */
const MAX_HEADER_LINE = 72;
/**
 * Printable ASCII without '"' (nodemailer's encodeWords encodes a value holding a quote), no
 * leading, trailing or doubled space; "=?" is refused in line() (it may read as an encoded word).
 */
const SAFE_VALUE = /^[\x21\x23-\x7e](?:[\x21\x23-\x7e]| (?! ))*$/;
/** A display name that needs neither quotes nor an encoded word. */
const SAFE_NAME = /^[A-Za-z0-9]+(?: [A-Za-z0-9]+)*$/;
/** An address nodemailer writes unchanged (no IDN, no quoting, lowercase domain). */
const SAFE_ADDRESS = /^[A-Za-z0-9._+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+$/;
/** Text nodemailer's isPlainText accepts and that has no bytes but ASCII. */
const ASCII_TEXT = /^[\t\n\r\x20-\x7e]*$/;
const LONG_LINE = new RegExp(`^.{${MAX_LINE + 1},}`, "m");
const LATIN = /[A-Za-z]/;

/** nodemailer's MimeNode._normalizeHeaderKey, for the field names callers give. */
function normalizeHeaderKey(key: string): string {
  return key
    .replace(/[\s\x00-\x20\x7f:]/g, "")
    .toLowerCase()
    .replace(/^X-SMTPAPI$|^(MIME|DKIM|ARC|BIMI)\b|^OTP(?=-Token$)|^[a-z]|-(SPF|FBL|ID|MD5)$|-[a-z]/gi, (c) =>
      c.toUpperCase(),
    )
    .replace(/^Content-Features$/i, "Content-features");
}

function mailboxText(m: SimpleMailbox): string | undefined {
  if (!SAFE_ADDRESS.test(m.address)) return undefined;
  if (m.name === "") return m.address;
  return SAFE_NAME.test(m.name) ? `${m.name} <${m.address}>` : undefined;
}

/** `Key: value` when it goes out unchanged, else undefined. */
function line(key: string, value: string): string | undefined {
  const text = `${key}: ${value}`;
  return text.length <= MAX_HEADER_LINE && SAFE_VALUE.test(value) && !value.includes("=?") ? text : undefined;
}

function addressLine(key: string, list: readonly SimpleMailbox[]): string | undefined {
  const parts: string[] = [];
  for (const m of list) {
    const text = mailboxText(m);
    if (text === undefined) return undefined;
    parts.push(text);
  }
  return line(key, parts.join(", "));
}

/** MailComposer's bytes for `message`, or undefined when it is not of the simple shape. */
export function composeSimpleText(message: SimpleMessage): Buffer | undefined {
  const { text } = message;
  // An empty text gets no Content-Transfer-Encoding from MailComposer: leave that to it.
  if (text === "" || text.length > 128 * 1024 || !ASCII_TEXT.test(text)) return undefined;
  const lines: string[] = [];
  for (const [name, value] of Object.entries(message.headers)) {
    const key = normalizeHeaderKey(name);
    if (typeof value === "string") {
      const l = line(key, value);
      if (l === undefined) return undefined;
      lines.push(l);
    } else {
      // Prepared: written as given, unfolded (MailComposer's prepared without foldLines).
      if (!value.value.trim()) continue;
      lines.push(`${key}: ${value.value}`);
    }
  }
  const from = addressLine("From", [message.from]);
  if (from === undefined) return undefined;
  lines.push(from);
  for (const [key, list] of [
    ["To", message.to],
    ["Cc", message.cc],
    ["Reply-To", message.replyTo ? [message.replyTo] : []],
  ] as const) {
    if (list.length === 0) continue;
    const l = addressLine(key, list);
    if (l === undefined) return undefined;
    lines.push(l);
  }
  if (message.subject !== undefined && message.subject !== "") {
    const l = line("Subject", message.subject);
    if (l === undefined) return undefined;
    lines.push(l);
  }
  if (!/^<[\x21-\x3b\x3d\x3f-\x7e]+>$/.test(message.messageId)) return undefined;
  lines.push(`Message-ID: ${message.messageId}`);
  // MimeNode.getTransferEncoding: 7bit unless a line is longer than 76; then Q when latin
  // letters outnumber the rest (always, for ASCII with a letter), else base64 (left to it).
  const long = LONG_LINE.test(text);
  if (long && !LATIN.test(text)) return undefined;
  lines.push(`Date: ${message.date.toUTCString().replace(/GMT/, "+0000")}`);
  lines.push(`Content-Transfer-Encoding: ${long ? "quoted-printable" : "7bit"}`);
  lines.push("MIME-Version: 1.0");
  lines.push("Content-Type: text/plain; charset=utf-8");
  const head = `${lines.join("\r\n")}\r\n\r\n`;
  const body = long ? (literalQuotedPrintable(text) ?? quotedPrintable(Buffer.from(text, "latin1"))) : text;
  const last = body.length > 0 ? body.charCodeAt(body.length - 1) : -1;
  // LastNewline (nodemailer): the message ends with a line break.
  const tail = last === 0x0a ? "" : last === 0x0d ? "\n" : "\r\n";
  return Buffer.from(head + body + tail, "latin1");
}

/** nodemailer's quoted-printable Encoder over one chunk and its end, as its stream would run it. */
function quotedPrintable(bytes: Buffer): string {
  const encoder = new QpEncoder({ binary: false } as never) as unknown as {
    push(chunk: unknown, encoding?: BufferEncoding): boolean;
    _transform(chunk: Buffer, encoding: string, done: (err?: Error | null) => void): void;
    _flush(done: (err?: Error | null) => void): void;
  };
  let out = "";
  encoder.push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (chunk !== null && chunk !== undefined)
      out +=
        typeof chunk === "string"
          ? Buffer.from(chunk, encoding ?? "utf8").toString("latin1")
          : (chunk as Buffer).toString("latin1");
    return true;
  };
  const fail = (err?: Error | null) => {
    if (err) throw err;
  };
  encoder._transform(bytes, "buffer", fail);
  encoder._flush(fail);
  return out;
}

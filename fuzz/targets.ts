/**
 * The fuzz targets: every parser of untrusted input (design convention 9, issue 13) with the
 * properties it must keep for any input — never throw, stay within its bounds, and agree with a
 * plain model where one exists. A property that returns false or throws is a crash; the runner
 * prints the shrunk input and the seed that reproduces it, and each crash found becomes a test.
 */
import fc from "fast-check";
import { createClassifier } from "../src/bounces/classify.js";
import { interpret } from "../src/bounces/interpret.js";
import { parseReport, reportPrefix } from "../src/bounces/report.js";
import { VerpCodec } from "../src/bounces/verp.js";
import { relaxedHeader, splitMessage } from "../src/dkim/canonicalize.js";
import { readAttachedMetadata, removeFields } from "../src/events/metadata.js";
import { addTraceFields, headerSenders, readLimitedHeaderSection } from "../src/message/headers.js";
import { isValidMailbox, splitPathArgument } from "../src/smtp/address.js";
import { decodeBase64, parsePlain } from "../src/smtp/auth.js";
import { DataReader } from "../src/smtp/data-reader.js";
import { InputQueue } from "../src/smtp/input-queue.js";
import { parseMailParams } from "../src/smtp/mail-params.js";
import {
  COMMAND_TOKENS,
  HEADER_TOKENS,
  MIME_TOKENS,
  mutatedSample,
  sampleReports,
  tokenString,
} from "./inputs.js";

/** A property of any arity, sync or async (fc.check runs both). */
export type AnyProperty = fc.IRawProperty<unknown[], boolean>;

export interface FuzzTarget {
  readonly name: string;
  /** What it covers, for the printed table. */
  readonly covers: string;
  readonly property: () => AnyProperty;
}

const REPORT_KINDS = new Set(["dsn", "arf", "text", "auto-reply", "unknown"]);
const classify = createClassifier();
const codec = new VerpCodec(Buffer.alloc(32, 7));

function smtpCommand(): AnyProperty {
  return fc.property(tokenString(COMMAND_TOKENS, 40), fc.constantFrom("FROM:", "TO:"), (line, prefix) => {
    const path = splitPathArgument(line.replace(/^(MAIL|RCPT) /, ""), prefix);
    if (path.kind === "ok") {
      if (path.address !== "" && !isValidMailbox(path.address, true)) return false;
      if (Buffer.byteLength(path.address) > 254) return false;
      const params = parseMailParams(path.params);
      if (params.kind === "ok" && params.size !== undefined && !(params.size >= 0 && params.size < 1e15))
        return false;
    }
    // AUTH responses: any line decodes or is refused, and PLAIN splits or is malformed.
    const decoded = decodeBase64(line);
    if (decoded !== null) parsePlain(decoded);
    return true;
  }) as unknown as AnyProperty;
}

/** Command lines through the input queue at random chunk splits: each line comes out whole. */
function inputQueue(): AnyProperty {
  return fc.property(
    fc.array(tokenString([...COMMAND_TOKENS, "\r\n", "\n", "\r"], 12), { maxLength: 8 }),
    fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 8 }),
    (lines, cuts) => {
      const stream = Buffer.from(lines.map((l) => `${l}\r\n`).join(""), "utf8");
      const queue = new InputQueue();
      let at = 0;
      for (let i = 0; at < stream.length; i++) {
        const n = cuts[i % cuts.length]!;
        queue.push(stream.subarray(at, at + n));
        at += n;
      }
      for (let guard = 0; guard < 10_000; guard++) {
        const line = queue.nextLine(() => 512);
        if (line === null) return queue.size === 0;
        if (typeof line === "string" && line.includes("\n")) return false;
      }
      return false;
    },
  ) as unknown as AnyProperty;
}

function address(): AnyProperty {
  return fc.property(
    tokenString(COMMAND_TOKENS, 20),
    fc.boolean(),
    fc.stringMatching(/^[0-9A-HJKMNP-TV-Z]{26}$/),
    fc.integer({ min: 1, max: 2 ** 40 }),
    (s, utf8, id, rid) => {
      if (isValidMailbox(s, utf8)) {
        const at = s.lastIndexOf("@");
        if (at <= 0 || at === s.length - 1) return false;
        if (!utf8 && /[^\x00-\x7f]/.test(s)) return false;
      }
      codec.decode(s); // never throws on anything
      const back = codec.decode(codec.address(id, rid, "bounces.example.com"));
      return back?.messageId === id && back.recipientId === rid;
    },
  ) as unknown as AnyProperty;
}

function header(): AnyProperty {
  return fc.property(
    tokenString(HEADER_TOKENS, 60),
    fc.string({ maxLength: 20 }),
    fc.integer({ min: 1, max: 400 }),
    fc.integer({ min: 1, max: 20 }),
    fc.integer({ min: 1, max: 5 }),
    (head, body, maxHeaderBytes, maxHeaderFields, maxAddressesPerField) => {
      const content = Buffer.from(`${head}\r\n\r\n${body}`, "latin1");
      const read = readLimitedHeaderSection(content, {
        maxHeaderBytes,
        maxHeaderFields,
        maxAddressesPerField,
      });
      if (!read.ok) return read.refusal.smtpCode >= 550;
      const { section } = read;
      if (section.end > maxHeaderBytes || section.fields.length > maxHeaderFields) return false;
      const senders = headerSenders(section, maxAddressesPerField);
      if (!("refusal" in senders) && senders.from.length > maxAddressesPerField * senders.fromFields)
        return false;
      const attached = readAttachedMetadata(content, section, { maxBytes: 200, maxCategories: 5 });
      if (attached.ok) {
        // Only header lines go: the body after the section is kept byte for byte.
        const tail = content.subarray(section.end);
        if (!attached.content.subarray(attached.content.length - tail.length).equals(tail)) return false;
        if (attached.categories.length > 5) return false;
      }
      const removed = removeFields(content, section.end, ["subject", "from"]);
      if (removed.length > content.length) return false;
      addTraceFields(content, section, {
        queueId: "Q",
        hostname: "h",
        heloName: head.slice(0, 20),
        clientIp: "127.0.0.1",
        protocol: "ESMTP",
        tls: undefined,
        date: new Date(0),
      });
      for (const field of splitMessage(content).headers) relaxedHeader(field);
      return true;
    },
  ) as unknown as AnyProperty;
}

/** The DATA reader against a plain model of its rules, at random chunk splits, in both NUL modes. */
function dataReader(): AnyProperty {
  return fc.property(
    fc.array(fc.constantFrom("\r\n", "\n", "\r", ".", "..", "\0", "a", "\r\n.\r\n", "\r\n.", ".\r\n"), {
      maxLength: 40,
    }),
    fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 6 }),
    fc.constantFrom<"reject" | "remove">("reject", "remove"),
    (pieces, cuts, mode) => {
      const stream = `${pieces.join("")}\r\n.\r\n`;
      const model = reference(stream);
      const bytes = Buffer.from(stream, "latin1");
      const reader = new DataReader(1e9, 0, mode);
      let at = 0;
      let end = -1;
      for (let i = 0; at < bytes.length && end === -1; i++) {
        const chunk = bytes.subarray(at, at + cuts[i % cuts.length]!);
        const e = reader.feed(chunk, 0);
        if (e !== -1) end = at + e;
        at += chunk.length;
      }
      if (end !== model.end) return false;
      const hasNul = model.content.includes("\0");
      if (mode === "reject")
        return reader.nul === hasNul && (hasNul || reader.content().toString("latin1") === model.content);
      return !reader.nul && reader.content().toString("latin1") === model.content.replaceAll("\0", "");
    },
  ) as unknown as AnyProperty;
}

/** The rules of data-reader.ts over a whole string (as in test/smtp-data.test.ts). */
function reference(stream: string): { content: string; end: number } {
  const prefixed = `\r\n${stream}`;
  const at = prefixed.indexOf("\r\n.\r\n");
  const lines = prefixed.slice(2, at + 2).split("\r\n");
  const out = lines.map((line) => {
    const unstuffed = line.startsWith(".") && line[1] !== "\r" && line[1] !== "\n" ? line.slice(1) : line;
    return unstuffed.replace(/\r|\n/g, "\r\n");
  });
  return { content: out.join("\r\n"), end: at + 3 };
}

async function checkReport(raw: string): Promise<boolean> {
  const report = await parseReport(Buffer.from(raw, "latin1"));
  if (!REPORT_KINDS.has(report.kind)) return false;
  if ("humanText" in report && report.humanText.length > 8400) return false;
  if (report.kind === "dsn" && (report.recipients.length === 0 || report.recipients.length > 200))
    return false;
  const finding = interpret(report, "a@example.com", classify);
  return finding.kind === "bounce" || finding.kind === "complaint" || finding.kind === "ignore";
}

function report(): AnyProperty {
  return fc.asyncProperty(mutatedSample(sampleReports()), checkReport) as unknown as AnyProperty;
}

function mime(): AnyProperty {
  return fc.asyncProperty(
    fc.constantFrom("", "From: mailer@x\r\n", 'Content-Type: multipart/report; boundary="b"\r\n'),
    tokenString(MIME_TOKENS, 80),
    async (head, rest) => {
      const raw = `${head}${rest}`;
      if (reportPrefix(raw).length > 1024 * 1024) return false;
      return checkReport(raw);
    },
  ) as unknown as AnyProperty;
}

export const TARGETS: readonly FuzzTarget[] = [
  {
    name: "smtp-command",
    covers: "MAIL/RCPT paths, ESMTP parameters, AUTH base64/PLAIN",
    property: smtpCommand,
  },
  { name: "input-queue", covers: "command lines split across TCP chunks", property: inputQueue },
  { name: "address", covers: "RFC 5321 mailboxes, VERP tokens", property: address },
  { name: "header", covers: "header section, limits, From/Sender, metadata, DKIM split", property: header },
  {
    name: "data-reader",
    covers: "DATA end mark, dot-stuffing, bare CR/LF, NUL (vs a model)",
    property: dataReader,
  },
  { name: "report", covers: "DSN/ARF/prose parser on mutated real samples, interpret()", property: report },
  {
    name: "mime",
    covers: "MIME walker (postal-mime on report prefixes) on generated structures",
    property: mime,
  },
];

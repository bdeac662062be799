/**
 * Reply formatting and the fixed replies of the protocol, pre-rendered once so the hot path
 * only pushes constant strings.
 *
 * Invariants: every reply line ends in CRLF; every reply except the greeting, HELO/EHLO and
 * 3xx continuations carries an RFC 3463 enhanced code (RFC 2034 §3 exempts those).
 * Security: text from hooks is stripped of control characters so an application string can
 * never inject an extra reply line (CR/LF) into the stream.
 */

import type { SmtpReply } from "./types.js";

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3}$/;
// Control characters other than the "\n" we split on; a stray CR would end a reply line early.
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f]/g;

/** Renders a reply, multi-line when `text` contains "\n" (RFC 5321 §4.2.1: "code-" on all but the last line). */
export function formatReply(code: number, enhanced: string, text: string): string {
  const prefix = enhanced === "" ? "" : `${enhanced} `;
  const lines = text.replace(CONTROL, "").split("\n");
  let out = "";
  for (let i = 0; i < lines.length; i++) {
    const sep = i === lines.length - 1 ? " " : "-";
    out += `${code}${sep}${prefix}${lines[i]}\r\n`;
  }
  return out;
}

/** Renders a reply that came from a hook, defending against malformed values: a bad code becomes 451. */
export function renderHookReply(reply: SmtpReply): string {
  const code = reply?.code;
  if (!Number.isInteger(code) || code < 200 || code > 599) return REPLY.localError;
  const enhanced = typeof reply.enhanced === "string" && ENHANCED.test(reply.enhanced) ? reply.enhanced : "";
  return formatReply(code, enhanced, typeof reply.text === "string" ? reply.text : "");
}

const r = formatReply;

export const REPLY = {
  ok: r(250, "2.0.0", "Ok"),
  mailOk: r(250, "2.1.0", "Ok"),
  rcptOk: r(250, "2.1.5", "Ok"),
  startData: "354 End data with <CR><LF>.<CR><LF>\r\n",
  bye: r(221, "2.0.0", "Bye"),
  vrfy: r(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"),
  help: r(214, "2.0.0", "https://www.rfc-editor.org/rfc/rfc5321"),
  startTls: r(220, "2.0.0", "Ready to start TLS"),
  authOk: r(235, "2.7.0", "Authentication successful"),
  authPlainChallenge: "334 \r\n",
  authLoginUser: "334 VXNlcm5hbWU6\r\n",
  authLoginPass: "334 UGFzc3dvcmQ6\r\n",

  unrecognized: r(500, "5.5.1", "Command unrecognized"),
  lineTooLong: r(500, "5.5.2", "Line too long"),
  badChars: r(500, "5.5.2", "Invalid characters in command"),
  notImplemented: r(502, "5.5.1", "Command not implemented"),
  ehloSyntax: r(501, "5.5.4", "Syntax: EHLO hostname"),
  heloSyntax: r(501, "5.5.4", "Syntax: HELO hostname"),
  heloFirst: r(503, "5.5.1", "Error: send HELO/EHLO first"),
  ehloFirst: r(503, "5.5.1", "Error: send EHLO first"),
  nestedMail: r(503, "5.5.1", "Error: nested MAIL command"),
  needMail: r(503, "5.5.1", "Error: need MAIL command"),
  needRcpt: r(503, "5.5.1", "Error: need RCPT command"),
  noValidRcpt: r(554, "5.5.1", "No valid recipients"),
  mailSyntax: r(501, "5.5.4", "Syntax: MAIL FROM:<address>"),
  rcptSyntax: r(501, "5.5.4", "Syntax: RCPT TO:<address>"),
  paramSyntax: r(501, "5.5.4", "Syntax error in parameters"),
  noArgs: r(501, "5.5.4", "Syntax error, no parameters allowed"),
  vrfySyntax: r(501, "5.5.4", "Syntax: VRFY address"),
  unknownParam: r(555, "5.5.4", "Unsupported parameter"),
  badSender: r(553, "5.1.3", "Bad sender address syntax"),
  badRecipient: r(501, "5.1.3", "Bad recipient address syntax"),
  needUtf8: r(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"),
  badUtf8: r(500, "5.5.2", "Invalid UTF-8 in command"),
  sizeExceeded: r(552, "5.3.4", "Message size exceeds fixed maximum message size"),
  tooManyRcpts: r(452, "4.5.3", "Too many recipients"),
  nulBytes: r(550, "5.6.0", "Message contains NUL characters"),
  /** The memory budget for messages being received is used up (smtp.limits.maxBufferedBytes). */
  insufficientStorage: r(452, "4.3.1", "Insufficient system storage"),
  authRequired: r(530, "5.7.0", "Authentication required"),
  tlsFirst: r(530, "5.7.0", "Must issue a STARTTLS command first"),
  alreadyAuthed: r(503, "5.5.1", "Error: already authenticated"),
  authInTransaction: r(503, "5.5.1", "Error: AUTH not allowed during a mail transaction"),
  unknownMechanism: r(504, "5.5.4", "Unrecognized authentication mechanism"),
  authCancelled: r(501, "5.0.0", "Authentication cancelled"),
  badBase64: r(501, "5.5.2", "Invalid base64 data"),
  badPlain: r(501, "5.5.2", "Invalid PLAIN response"),
  authInvalid: r(535, "5.7.8", "Authentication credentials invalid"),
  tlsUnavailable: r(503, "5.5.1", "Error: TLS already active or not available"),
  localError: r(451, "4.3.0", "Temporary local problem, try again later"),
  /** The same, when we close the connection after it (RFC 5321 §3.8: closing is 421). */
  localErrorClosing: r(421, "4.3.0", "Temporary local problem, try again later"),
  tooManyErrors: r(421, "4.7.0", "Too many errors, closing connection"),
  tooManyConnections: r(421, "4.7.0", "Too many connections, try again later"),
  httpRequest: r(421, "4.7.0", "This is an SMTP server, closing connection"),
  idleTimeout: r(421, "4.4.2", "Idle timeout, closing connection"),
  sessionTimeout: r(421, "4.4.2", "Session timeout, closing connection"),
  shuttingDown: r(421, "4.3.2", "Service shutting down"),
} as const;

/** "550 5.6.0 Message contains a line longer than N characters", for the configured N. */
export function lineTooLongReply(limit: number): string {
  return r(550, "5.6.0", `Message contains a line longer than ${limit} characters`);
}

/** EHLO reply for a session state (RFC 5321 §4.1.1.1; keywords in the documented order). */
export function ehloReply(hostname: string, maxSize: number, startTls: boolean, auth: boolean): string {
  const lines = [hostname, `SIZE ${maxSize}`, "PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"];
  if (startTls) lines.push("STARTTLS");
  if (auth) lines.push("AUTH PLAIN LOGIN");
  return r(250, "", lines.join("\n"));
}

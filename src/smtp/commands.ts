/**
 * SMTP command semantics (RFC 5321 §4.1, with STARTTLS RFC 3207, AUTH RFC 4954, SIZE RFC 1870,
 * 8BITMIME RFC 6152, SMTPUTF8 RFC 6531): sequencing checks, argument parsing, and turning hook
 * verdicts into replies.
 *
 * Invariants: MAIL needs an authorised session (session.user), which is what keeps Petrel from
 * being an open relay; AUTH is refused before TLS unless allowInsecureAuth; a hook that throws
 * becomes 451 4.3.0. Handlers return a Promise only when they wait on a hook.
 * Security: `line` is untrusted; AUTH payloads and passwords are never logged or echoed.
 */

import { hasNonAscii, splitPathArgument } from "./address.js";
import { decodeBase64, parsePlain } from "./auth.js";
import type { DataReader } from "./data-reader.js";
import { parseMailParams } from "./mail-params.js";
import { lineTooLongReply, REPLY, renderHookReply } from "./replies.js";
import type { Session } from "./session.js";
import type { Envelope, HookVerdict, SmtpReply } from "./types.js";

// C0 controls other than TAB, and DEL: never legitimate in a command line (a bare CR here
// would let one line hide a second command from a logging or filtering proxy).
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const HTTP_METHOD = /^(?:GET|POST|HEAD|PUT|DELETE|OPTIONS|CONNECT|PATCH) /;

export function dispatch<User>(s: Session<User>, line: string): Promise<void> | undefined {
  if (s.mode === "auth") return authResponse(s, line);
  // A browser or proxy probe talking HTTP to the SMTP port (cross-protocol attacks): hang up.
  if (s.linesSeen++ === 0 && HTTP_METHOD.test(line)) {
    s.close(REPLY.httpRequest, "http-request");
    return;
  }
  if (CONTROL.test(line)) {
    s.reject(REPLY.badChars);
    return;
  }
  const sp = line.indexOf(" ");
  const verb = (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
  const arg = sp === -1 ? "" : line.slice(sp + 1).trim();
  switch (verb) {
    case "EHLO":
    case "HELO":
      return helo(s, verb, arg);
    case "MAIL":
      return mail(s, arg);
    case "RCPT":
      return rcpt(s, arg);
    case "DATA":
      return data(s, arg);
    case "RSET":
      if (arg !== "") return s.reject(REPLY.noArgs);
      s.envelope = null;
      s.rcptAttempts = 0;
      return s.ok(REPLY.ok);
    case "NOOP":
      return s.ok(REPLY.ok);
    case "QUIT":
      return s.quit(REPLY.bye);
    case "VRFY":
      return arg === "" ? s.reject(REPLY.vrfySyntax) : s.ok(REPLY.vrfy);
    case "HELP":
      return s.ok(REPLY.help);
    case "STARTTLS":
      return starttls(s, arg);
    case "AUTH":
      return auth(s, arg);
    case "EXPN":
    case "BDAT":
    case "ETRN":
    case "TURN":
    case "ATRN":
    case "SEND":
    case "SOML":
    case "SAML":
      return s.reject(REPLY.notImplemented);
    default:
      return s.reject(REPLY.unrecognized);
  }
}

function helo<User>(s: Session<User>, verb: "EHLO" | "HELO", arg: string): undefined {
  if (arg === "") return s.reject(verb === "EHLO" ? REPLY.ehloSyntax : REPLY.heloSyntax);
  // RFC 5321 §4.1.4: EHLO/HELO mid-session resets the transaction like RSET.
  s.envelope = null;
  s.rcptAttempts = 0;
  s.info.heloName = arg;
  s.info.esmtp = verb === "EHLO";
  if (verb === "HELO") return s.ok(`250 ${s.host.hostname}\r\n`);
  const info = s.info;
  const startTls = s.listener.mode === "starttls" && !info.secure;
  const auth =
    s.host.authEnabled && (info.secure || s.host.allowInsecureAuth) && info.authMethod === undefined;
  s.ok(s.host.ehlo(startTls, auth));
}

function mail<User>(s: Session<User>, arg: string): Promise<void> | undefined {
  if (s.info.heloName === undefined) return s.reject(REPLY.heloFirst);
  if (s.envelope !== null) return s.reject(REPLY.nestedMail);
  if (s.info.user === undefined) return s.reject(REPLY.authRequired);
  const path = splitPathArgument(arg, "FROM:");
  if (path.kind === "syntax") return s.reject(REPLY.mailSyntax);
  if (path.kind === "address") return s.reject(REPLY.badSender);
  const params = parseMailParams(path.params);
  if (params.kind === "syntax") return s.reject(REPLY.paramSyntax);
  if (params.kind === "unknown") return s.reject(REPLY.unknownParam);
  if (!params.smtpUtf8 && hasNonAscii(path.address)) return s.reject(REPLY.needUtf8);
  // RFC 1870 §6.2: refuse early when the declared size is already too big.
  if (params.size !== undefined && params.size > s.host.limits.maxMessageSize) {
    return s.ok(REPLY.sizeExceeded);
  }
  const envelope: Envelope = {
    mailFrom: path.address,
    rcptTo: [],
    smtpUtf8: params.smtpUtf8,
    body8bit: params.body8bit,
    declaredSize: params.size,
  };
  return mailHook(s, envelope);
}

async function mailHook<User>(s: Session<User>, envelope: Envelope): Promise<void> {
  let verdict: HookVerdict;
  try {
    verdict = await s.host.hooks.onMailFrom(s.info, envelope);
  } catch (err) {
    s.hookFailed("onMailFrom", err);
    return s.ok(REPLY.localError);
  }
  if (s.ended) return;
  if (!verdict.ok) return refuse(s, verdict.reply, verdict.close);
  s.envelope = envelope;
  s.rcptAttempts = 0;
  s.ok(REPLY.mailOk);
}

function rcpt<User>(s: Session<User>, arg: string): Promise<void> | undefined {
  const envelope = s.envelope;
  if (envelope === null) return s.reject(REPLY.needMail);
  s.rcptAttempts++;
  const path = splitPathArgument(arg, "TO:");
  if (path.kind === "syntax") return s.reject(REPLY.rcptSyntax);
  if (path.kind === "address" || path.address === "") return s.reject(REPLY.badRecipient);
  // We offer no RCPT parameters (no DSN, RFC 3461).
  if (path.params.length > 0) return s.reject(REPLY.unknownParam);
  if (!envelope.smtpUtf8 && hasNonAscii(path.address)) return s.reject(REPLY.needUtf8);
  if (envelope.rcptTo.length >= s.host.limits.maxRecipients) return s.ok(REPLY.tooManyRcpts);
  if (s.host.hooks.onRcptTo === undefined) {
    envelope.rcptTo.push(path.address);
    return s.ok(REPLY.rcptOk);
  }
  return rcptHook(s, envelope, path.address);
}

async function rcptHook<User>(s: Session<User>, envelope: Envelope, recipient: string): Promise<void> {
  let verdict: HookVerdict;
  try {
    verdict = await s.host.hooks.onRcptTo!(s.info, envelope, recipient);
  } catch (err) {
    s.hookFailed("onRcptTo", err);
    return s.ok(REPLY.localError);
  }
  if (s.ended) return;
  if (!verdict.ok) return refuse(s, verdict.reply, verdict.close);
  envelope.rcptTo.push(recipient);
  s.ok(REPLY.rcptOk);
}

function data<User>(s: Session<User>, arg: string): undefined {
  if (arg !== "") return s.reject(REPLY.noArgs);
  const envelope = s.envelope;
  if (envelope === null) return s.reject(REPLY.needMail);
  if (envelope.rcptTo.length === 0) {
    // RFC 2920 §3.1: a pipelined DATA after only failed RCPTs gets 554, not a 354.
    return s.reject(s.rcptAttempts > 0 ? REPLY.noValidRcpt : REPLY.needRcpt);
  }
  s.startData();
}

/** Called by the session once the end-of-data mark has been read. */
export function finishData<User>(s: Session<User>, reader: DataReader): Promise<void> | undefined {
  const envelope = s.envelope!;
  s.envelope = null;
  s.rcptAttempts = 0;
  if (reader.tooBig) return s.dataDone(REPLY.sizeExceeded, false);
  if (reader.overBudget) return s.dataDone(REPLY.insufficientStorage, false);
  if (reader.lineTooLong) return s.dataDone(lineTooLongReply(s.host.limits.maxLineLength), false);
  if (reader.nul) return s.dataDone(REPLY.nulBytes, false);
  return dataHook(s, envelope, reader.content());
}

async function dataHook<User>(s: Session<User>, envelope: Envelope, content: Buffer): Promise<void> {
  let reply: SmtpReply;
  try {
    reply = await s.host.hooks.onData(s.info, envelope, content);
  } catch (err) {
    s.hookFailed("onData", err);
    return s.dataDone(REPLY.localError, false);
  }
  if (s.ended) return;
  const text = renderHookReply(reply);
  s.dataDone(text, text.charCodeAt(0) === 50 /* "2" */);
}

function starttls<User>(s: Session<User>, arg: string): undefined {
  if (arg !== "") return s.reject(REPLY.noArgs);
  if (s.info.secure || s.listener.mode !== "starttls") return s.reject(REPLY.tlsUnavailable);
  s.startTls();
}

function auth<User>(s: Session<User>, arg: string): Promise<void> | undefined {
  const info = s.info;
  if (!s.host.authEnabled) return s.reject(REPLY.notImplemented);
  if (!info.secure && !s.host.allowInsecureAuth) return s.reject(REPLY.tlsFirst);
  if (info.authMethod !== undefined) return s.reject(REPLY.alreadyAuthed);
  if (!info.esmtp) return s.reject(REPLY.ehloFirst);
  if (s.envelope !== null) return s.reject(REPLY.authInTransaction);
  const sp = arg.indexOf(" ");
  const mechanism = (sp === -1 ? arg : arg.slice(0, sp)).toUpperCase();
  const initial = sp === -1 ? undefined : arg.slice(sp + 1).trim();
  if (mechanism === "PLAIN") {
    if (initial !== undefined) return plainResponse(s, initial);
    s.auth = { method: "PLAIN" };
    s.mode = "auth";
    return s.send(REPLY.authPlainChallenge);
  }
  if (mechanism === "LOGIN") {
    if (initial === undefined) {
      s.auth = { method: "LOGIN" };
      s.mode = "auth";
      return s.send(REPLY.authLoginUser);
    }
    return loginUsername(s, initial);
  }
  return s.reject(REPLY.unknownMechanism);
}

/** A line read while an AUTH exchange waits for a client response (RFC 4954 §4). */
function authResponse<User>(s: Session<User>, line: string): Promise<void> | undefined {
  const exchange = s.auth!;
  s.auth = null;
  s.mode = "command";
  if (exchange.method === "PLAIN") return plainResponse(s, line);
  if (exchange.username === undefined) return loginUsername(s, line);
  if (line === "*") return s.reject(REPLY.authCancelled);
  const password = decodeBase64(line);
  if (password === null) return s.reject(REPLY.badBase64);
  return runAuth(s, "LOGIN", exchange.username, password);
}

function plainResponse<User>(s: Session<User>, response: string): Promise<void> | undefined {
  if (response === "*") return s.reject(REPLY.authCancelled);
  const decoded = decodeBase64(response);
  if (decoded === null) return s.reject(REPLY.badBase64);
  const plain = parsePlain(decoded);
  if (plain.kind === "malformed") return s.reject(REPLY.badPlain);
  // Proxy authorisation (acting as another user) is not offered: same answer as bad credentials.
  if (plain.kind === "foreign-authzid") return s.ok(REPLY.authInvalid);
  return runAuth(s, "PLAIN", plain.username, plain.password);
}

function loginUsername<User>(s: Session<User>, response: string): undefined {
  if (response === "*") return s.reject(REPLY.authCancelled);
  const username = decodeBase64(response);
  if (username === null) return s.reject(REPLY.badBase64);
  s.auth = { method: "LOGIN", username };
  s.mode = "auth";
  s.send(REPLY.authLoginPass);
}

async function runAuth<User>(
  s: Session<User>,
  method: "PLAIN" | "LOGIN",
  username: string,
  password: string,
): Promise<void> {
  let result: Awaited<ReturnType<typeof s.host.hooks.onAuth>>;
  try {
    result = await s.host.hooks.onAuth(s.info, { method, username, password });
  } catch (err) {
    s.hookFailed("onAuth", err);
    return s.ok(REPLY.localError);
  }
  if (s.ended) return;
  if (!result.ok) return refuse(s, result.reply, result.close);
  s.info.user = result.user;
  s.info.authMethod = method;
  s.ok(REPLY.authOk);
}

/** A policy refusal from a hook: a valid command, so the error streak is not extended. */
function refuse<User>(s: Session<User>, reply: SmtpReply, close: boolean | undefined): void {
  s.ok(renderHookReply(reply));
  if (close === true) s.close(null, "hook-close");
}

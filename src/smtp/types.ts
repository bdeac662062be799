/**
 * The contract between the inbound SMTP protocol server (src/smtp) and the application.
 *
 * The protocol layer knows nothing about storage, API keys or policy: it asks these hooks for
 * verdicts and turns them into replies. Invariants: every hook is awaited before the next
 * command is processed (commands are handled strictly in order, RFC 2920 §3.1), and a hook that
 * throws becomes `451 4.3.0` for the client, never a crash or a permanent rejection.
 *
 * Security: every string in SessionInfo/Envelope that came from the client (heloName,
 * addresses) is untrusted; addresses have passed RFC 5321 syntax checks, nothing more.
 */

import type { Logger } from "pino";

/** A reply to send. `text` may contain "\n" for a multi-line reply; `enhanced` may be "" (RFC 2034 exempts a few replies). */
export interface SmtpReply {
  code: number;
  enhanced: string;
  text: string;
}

export interface ListenerSpec {
  name: string;
  host: string;
  port: number;
  /** "starttls": plaintext greeting, STARTTLS offered (587). "implicit": TLS from the first byte (465, RFC 8314). */
  mode: "starttls" | "implicit";
  /**
   * Expect a PROXY protocol header (v1 or v2) before anything else, from a peer that the
   * server's `proxyProtocol.trusted` accepts; its source address becomes the client address.
   */
  proxyProtocol?: boolean;
}

/** Limits; a value <= 0 disables the limit (except maxMessageSize and maxRecipients, which must be > 0). */
export interface SmtpLimits {
  /** Bytes, advertised in EHLO SIZE (RFC 1870); raw DATA bytes received are counted. */
  maxMessageSize: number;
  /** Per transaction; over it: 452 4.5.3 Too many recipients (RFC 5321 §4.5.3.1.10). */
  maxRecipients: number;
  /** Total admitted connections; over it: 421 4.7.0 then close. */
  maxConnections: number;
  /** Admitted connections per remote IP; over it: 421 4.7.0 then close. */
  maxConnectionsPerIp: number;
  /** No input for this long (while not waiting on a hook): 421 4.4.2 then close. */
  idleTimeoutMs: number;
  /** Whole connection lifetime cap (slowloris): 421 4.4.2 then close. */
  sessionTimeoutMs: number;
  /** Invalid/unknown/out-of-sequence commands in a row; when reached: 421 4.7.0 then close. */
  maxInvalidCommands: number;
  /** DATA text line limit in octets excluding CRLF; 998 per RFC 5322 §2.1.1; 0 = unlimited. */
  maxLineLength: number;
  /** NUL bytes in DATA: "reject" (550 5.6.0, the default) or "remove" them (see DataReader). */
  nulBytes?: "reject" | "remove";
  /** A TLS handshake (implicit TLS or after STARTTLS) or a PROXY header not done in this long: the connection is dropped. Default 10 s. */
  tlsHandshakeTimeoutMs?: number;
  /** Bytes of DATA content held across all sessions; at it, a new DATA gets 452 4.3.1. Default (and <= 0) unlimited. */
  maxBufferedBytes?: number;
}

export interface SessionInfo<User> {
  /** Unique per connection, short; put it on every log line about this connection. */
  readonly id: string;
  /** ListenerSpec.name of the listener that accepted the connection. */
  readonly listener: string;
  /** IPv4 as a.b.c.d (the ::ffff: prefix of mapped addresses is stripped). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  secure: boolean;
  tlsProtocol?: string;
  tlsCipher?: string;
  heloName?: string;
  esmtp: boolean;
  /** Set by onConnect (trusted network) or by a successful onAuth. */
  user?: User;
  /** "PLAIN" | "LOGIN" when `user` came from AUTH. */
  authMethod?: string;
  /** 2xx replies given after DATA on this connection. */
  messageCount: number;
  /** Date.now() at accept. */
  readonly openedAt: number;
}

export interface Envelope {
  /** "" for the null sender <>. Source routes are stripped; case is kept as given. */
  mailFrom: string;
  /** Accepted recipients so far, as given by the client. */
  rcptTo: string[];
  /** MAIL FROM carried SMTPUTF8 (RFC 6531). */
  smtpUtf8: boolean;
  /** MAIL FROM carried BODY=8BITMIME (RFC 6152). */
  body8bit: boolean;
  /** MAIL FROM SIZE= value (RFC 1870), when given. */
  declaredSize?: number;
}

export type HookVerdict = { ok: true } | { ok: false; reply: SmtpReply; close?: boolean };

export interface SessionHooks<User> {
  /** After accept, before the greeting. A reject is sent instead of the 220 greeting and the connection closed. `user` authorises the session without AUTH (trusted networks). */
  onConnect(session: SessionInfo<User>): Promise<{ ok: true; user?: User } | { ok: false; reply: SmtpReply }>;
  /** Credentials decoded from AUTH PLAIN (authzid ignored unless equal/empty) or AUTH LOGIN. On ok, session.user is set and 235 2.7.0 sent. */
  onAuth(
    session: SessionInfo<User>,
    credentials: { method: "PLAIN" | "LOGIN"; username: string; password: string },
  ): Promise<{ ok: true; user: User } | { ok: false; reply: SmtpReply; close?: boolean }>;
  onMailFrom(session: SessionInfo<User>, envelope: Envelope): Promise<HookVerdict>;
  /**
   * Absent: every recipient that passes the syntax and count checks is accepted at once, with no
   * await (and, under smtp.workers, no round trip to the main process): for hosts whose RCPT
   * reply depends on nothing but the address.
   */
  onRcptTo?(session: SessionInfo<User>, envelope: Envelope, recipient: string): Promise<HookVerdict>;
  /** Whole message after dot-unstuffing and line-ending normalisation, only when size/line limits were respected. The reply is sent as is (the app returns 250 2.0.0 Ok: queued as ID, or an error). */
  onData(session: SessionInfo<User>, envelope: Envelope, content: Buffer): Promise<SmtpReply>;
  /** Connection ended (any reason); for logging. Must not throw (a throw is logged and ignored). */
  onClose?(session: SessionInfo<User>, reason: string): void;
}

export interface SmtpServerOptions<User> {
  /** Greeting "220 <hostname> ESMTP Petrel"; EHLO first line "250-<hostname>". */
  hostname: string;
  listeners: ListenerSpec[];
  /** minVersion defaults to TLSv1.2. */
  tls: { key: string | Buffer; cert: string | Buffer; minVersion?: "TLSv1.2" | "TLSv1.3" };
  /** Default false: AUTH is neither advertised nor accepted before TLS. */
  allowInsecureAuth?: boolean;
  /** Default true. False: AUTH is never advertised and the command is not implemented (the bounce listener, an MX). */
  auth?: boolean;
  limits: SmtpLimits;
  hooks: SessionHooks<User>;
  logger: Logger;
  /** Peers allowed to send a PROXY header to listeners with `proxyProtocol` (anyone else is disconnected). */
  proxyProtocol?: { trusted(ip: string): boolean };
  /**
   * Processes that run the sessions (workers-pool.ts); default 1: all in this process. Above 1
   * this process still accepts, caps, reads PROXY headers and runs every hook.
   */
  workers?: number;
}

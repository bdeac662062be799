/**
 * Test fixture for src/smtp: an SmtpServer on ephemeral ports (one STARTTLS listener, one
 * implicit-TLS listener) with small hooks written here, recording what the application saw.
 *
 * Hook behaviour, chosen by the data (KumoMTA-sink style):
 *  - onAuth accepts any user whose password is "secret"; user "closeme" is refused and closed.
 *  - onMailFrom: reject@example.com → 550 5.7.1; boom@example.com → throws (451 expected).
 *  - onRcptTo: reject@example.com → 550 5.1.1; boom@example.com → throws.
 *  - onData records the message and answers "250 2.0.0 Ok: queued as N".
 * Security: test-only; the log capture lets tests check that no secret is ever logged.
 */

import type { Writable } from "node:stream";
import { pino } from "pino";
import { SmtpServer } from "../src/smtp/index.js";
import type {
  Envelope,
  SessionHooks,
  SessionInfo,
  SmtpLimits,
  SmtpServerOptions,
} from "../src/smtp/types.js";
import { generateTestCertificate } from "./support/dialogue.js";

export interface TestUser {
  name: string;
}

export interface Recorded {
  messages: { envelope: Envelope; content: string; user?: TestUser }[];
  closes: { id: string; reason: string }[];
  logs: string[];
  /** onData calls begun (before dataDelay). */
  dataCalls: number;
}

export interface Fixture {
  server: SmtpServer<TestUser>;
  /** STARTTLS listener port. */
  port: number;
  /** Implicit TLS listener port. */
  tlsPort: number;
  cert: string;
  rec: Recorded;
  /** Delay (ms) applied inside onData, e.g. to hold a session in DATA during close(). */
  dataDelay: { ms: number };
}

export const DEFAULT_LIMITS: SmtpLimits = {
  maxMessageSize: 1024 * 1024,
  maxRecipients: 5,
  maxConnections: 50,
  maxConnectionsPerIp: 50,
  idleTimeoutMs: 5000,
  sessionTimeoutMs: 20000,
  maxInvalidCommands: 5,
  maxLineLength: 998,
};

let certPromise: Promise<{ key: string; cert: string }> | undefined;

export function testCertificate(): Promise<{ key: string; cert: string }> {
  certPromise ??= generateTestCertificate();
  return certPromise;
}

export async function startFixture(
  options: {
    limits?: Partial<SmtpLimits>;
    trustedIps?: string[];
    allowInsecureAuth?: boolean;
    /** Replace some hooks, e.g. with a broken one. */
    hooks?: Partial<SessionHooks<TestUser>>;
  } = {},
): Promise<Fixture> {
  const { key, cert } = await testCertificate();
  const rec: Recorded = { messages: [], closes: [], logs: [], dataCalls: 0 };
  const dataDelay = { ms: 0 };
  const sink = { write: (line: string) => rec.logs.push(line) } as unknown as Writable;
  const trusted = new Set(options.trustedIps ?? []);
  const opts: SmtpServerOptions<TestUser> = {
    hostname: "mx.test",
    listeners: [
      { name: "submission", host: "127.0.0.1", port: 0, mode: "starttls" },
      { name: "submissions", host: "127.0.0.1", port: 0, mode: "implicit" },
    ],
    tls: { key, cert },
    allowInsecureAuth: options.allowInsecureAuth,
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    logger: pino({ level: "debug" }, sink),
    hooks: {
      async onConnect(session: SessionInfo<TestUser>) {
        return trusted.has(session.remoteAddress) ? { ok: true, user: { name: "trusted" } } : { ok: true };
      },
      async onAuth(_session, { username, password }) {
        if (password === "secret") return { ok: true, user: { name: username } };
        return {
          ok: false,
          reply: { code: 535, enhanced: "5.7.8", text: "Authentication credentials invalid" },
          close: username === "closeme",
        };
      },
      async onMailFrom(_session, envelope) {
        if (envelope.mailFrom === "boom@example.com") throw new Error("mail hook exploded");
        if (envelope.mailFrom === "reject@example.com") {
          return { ok: false, reply: { code: 550, enhanced: "5.7.1", text: "Sender not allowed" } };
        }
        return { ok: true };
      },
      async onRcptTo(_session, _envelope, recipient) {
        if (recipient === "boom@example.com") throw new Error("rcpt hook exploded");
        if (recipient === "reject@example.com") {
          return { ok: false, reply: { code: 550, enhanced: "5.1.1", text: "No such user" } };
        }
        return { ok: true };
      },
      async onData(session, envelope, content) {
        rec.dataCalls++;
        if (dataDelay.ms > 0) await new Promise((r) => setTimeout(r, dataDelay.ms));
        rec.messages.push({
          envelope: { ...envelope, rcptTo: [...envelope.rcptTo] },
          content: content.toString("utf8"),
          user: session.user,
        });
        return { code: 250, enhanced: "2.0.0", text: `Ok: queued as ${rec.messages.length}` };
      },
      onClose(session, reason) {
        rec.closes.push({ id: session.id, reason });
      },
    },
  };
  Object.assign(opts.hooks, options.hooks);
  const server = new SmtpServer(opts);
  await server.listen();
  const [plain, implicit] = server.addresses;
  return { server, port: plain!.port, tlsPort: implicit!.port, cert, rec, dataDelay };
}

/** AUTH PLAIN initial response for user/password. */
export function plain(user: string, password: string, authzid = ""): string {
  return Buffer.from(`${authzid}\0${user}\0${password}`).toString("base64");
}

export function b64(s: string): string {
  return Buffer.from(s).toString("base64");
}

/** Waits until `cond` holds (polling), failing after `ms` (a bound on a hang, not a speed goal). */
export async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

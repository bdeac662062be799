/**
 * The submission service: the answers the SMTP layer's hooks get. It joins the pieces —
 * API keys and trusted networks (who is this?), sender policy (may they send as this?), header
 * completion, and the spool (make it durable, then say 250).
 *
 * Invariants: "250 ... queued as ID" is sent only after Spool.enqueue() resolved, i.e. after the
 * durable commit; a failed commit answers 451 4.3.0 and keeps nothing. Unauthenticated sessions
 * never get past MAIL (the SMTP layer answers 530 without a user). A message whose From domain
 * is verified and has DKIM keys is signed here, once, after the trace fields and before the
 * commit, so retries deliver the signed bytes unchanged; a signing failure answers 451 4.3.0
 * (never silently unsigned mail).
 * Security: API keys are hashed before lookup and never logged; the log shows the key's name.
 */

import { hashApiKey } from "../auth/api-keys.js";
import { hasScope } from "../auth/scopes.js";
import { setBounded } from "../bounded-map.js";
import type { PetrelConfig, TrustedNetwork } from "../config/schema.js";
import type { MessageSigning } from "../domains/signer.js";
import type { Logger } from "../log.js";
import type { AuthGuard } from "../policy/auth-throttle.js";
import type { Verdict } from "../policy/verdict.js";
import type { Spool } from "../queue/spool.js";
import type { HookVerdict, SessionHooks, SessionInfo, SmtpReply } from "../smtp/types.js";
import type { DomainStatus, MessageLookups, SenderIdentities, Store } from "../store/types.js";
import { acceptContent, checkRecipient, checkSender, type Submitter } from "./accept.js";
import type { Idempotency } from "./idempotency.js";

export type { Submitter } from "./accept.js";

export interface SubmissionDeps {
  readonly config: PetrelConfig;
  readonly store: Store;
  readonly spool: Spool;
  readonly throttle: AuthGuard;
  /** Trusted networks with their account ids resolved at start. */
  readonly trusted: ReadonlyArray<TrustedNetwork & { readonly accountId: number }>;
  readonly logger: Logger;
  /** Called with (keyId, time) on each successful AUTH, to record "last used" lazily. */
  readonly onKeyUsed: (keyId: number, at: number) => void;
  /** DKIM signing by From domain (src/domains/signer.ts); absent = never sign. */
  readonly signing?: MessageSigning;
  /** Counts accepted and refused messages (src/http/metrics.ts); absent = not counted. */
  readonly metrics?: AcceptCounter;
  /** X-Petrel-Idempotency-Key (issue 9); absent = the field is only removed. */
  readonly idempotency?: Idempotency;
  /** Whether the node takes mail now (src/app/node-registry.ts); absent = always. */
  readonly availability?: Availability;
}

export interface Availability {
  /** A reply refusing a new session (store unreachable: 421 4.3.0; draining: 421 4.3.2), or undefined. */
  refusal(): SmtpReply | undefined;
  /** A commit failed: check the store now. */
  suspect(): void;
}

export interface AcceptCounter {
  accept(via: "smtp" | "http", seconds: number): void;
  reject(via: "smtp" | "http", reason: string): void;
}

const TRUSTED_MEMO_ENTRIES = 4096;

const AUTH_INVALID: SmtpReply = { code: 535, enhanced: "5.7.8", text: "Authentication credentials invalid" };
const LOCKED_OUT: SmtpReply = {
  code: 421,
  enhanced: "4.7.0",
  text: "Too many failed authentication attempts, try again later",
};

export function createSubmissionHooks(deps: SubmissionDeps): SessionHooks<Submitter> {
  const { store, throttle, trusted, logger } = deps;
  // What MAIL FROM read, reused at the end of the same DATA: the identities (header check), the
  // domain statuses (sending.requireVerifiedDomains) and the message's lookup view
  // (store.lookupView, lookup-cache.ts), under which the signing keys are read at the version
  // MAIL FROM's checks used. AUTH reads afresh: a revoked key is refused at the next AUTH.
  const mailFromBySession = new WeakMap<
    SessionInfo<Submitter>,
    {
      readonly identities: SenderIdentities;
      readonly statuses: ReadonlyMap<string, DomainStatus> | undefined;
      readonly lookups: MessageLookups;
    }
  >();

  // The trusted network of each client address, remembered: BlockList.check() builds a native
  // SocketAddress at every call (9 µs a connection in bench:relay's profile, 1.2% of the SMTP
  // thread), and the networks are fixed at start. Bounded: many addresses only churn it.
  const trustedByAddress = new Map<string, (typeof trusted)[number] | null>();
  const trustedNetworkOf = (address: string) => {
    let network = trustedByAddress.get(address);
    if (network === undefined) {
      const family = address.includes(":") ? "ipv6" : "ipv4";
      network = trusted.find((t) => t.list.check(address, family)) ?? null;
      setBounded(trustedByAddress, address, network, TRUSTED_MEMO_ENTRIES);
    }
    return network;
  };

  const hooks: SessionHooks<Submitter> = {
    async onConnect(session) {
      // Issue 8 item 5: no greeting that could lead to a 250 the store cannot back.
      const refusal = deps.availability?.refusal();
      if (refusal) return { ok: false, reply: refusal };
      if (throttle.isLocked(session.remoteAddress)) return { ok: false, reply: LOCKED_OUT };
      const network = trustedNetworkOf(session.remoteAddress);
      if (!network) return { ok: true };
      return {
        ok: true,
        user: {
          accountId: network.accountId,
          accountName: network.account,
          apiKeyId: null,
          label: `network:${network.network}`,
        },
      };
    },

    async onAuth(session, credentials) {
      // A lockout reaches sessions opened before it, at their next AUTH (issue 13 item 8); the
      // attempt counts, so guessing on keeps the address locked.
      if (throttle.isLocked(session.remoteAddress)) {
        await throttle.recordFailure(session.remoteAddress);
        logger.warn({ session: session.id, ip: session.remoteAddress }, "auth refused: address locked out");
        return { ok: false, reply: LOCKED_OUT, close: true };
      }
      const key =
        credentials.username.toLowerCase() === "apikey"
          ? await store.findActiveApiKey(hashApiKey(credentials.password))
          : undefined;
      // Issue 9: SMTP AUTH needs the mail.send scope (a read-only API key cannot send).
      if (key && hasScope(key.scopes, "mail.send")) {
        deps.onKeyUsed(key.id, Date.now());
        logger.info({ session: session.id, ip: session.remoteAddress, key: key.name }, "auth ok");
        return {
          ok: true,
          user: { accountId: key.accountId, accountName: key.accountName, apiKeyId: key.id, label: key.name },
        };
      }
      const locked = await throttle.recordFailure(session.remoteAddress);
      logger.warn(
        {
          session: session.id,
          ip: session.remoteAddress,
          username: credentials.username.slice(0, 64),
          locked,
        },
        "auth failed",
      );
      return locked ? { ok: false, reply: LOCKED_OUT, close: true } : { ok: false, reply: AUTH_INVALID };
    },

    async onMailFrom(session, envelope) {
      const user = session.user!;
      const lookups = store.lookupView?.() ?? store;
      const check = await checkSender(deps, user.accountId, envelope.mailFrom, lookups);
      mailFromBySession.set(session, { identities: check.identities, statuses: check.statuses, lookups });
      return toHookVerdict(check.verdict, session, logger);
    },

    async onData(session, envelope, content) {
      const started = performance.now();
      const user = session.user!;
      const mailFrom = mailFromBySession.get(session);
      const outcome = await acceptContent(deps, {
        submitter: user,
        mailFrom: envelope.mailFrom,
        recipients: envelope.rcptTo,
        dropped: [],
        content,
        clientIp: session.remoteAddress,
        heloName: session.heloName,
        protocol: protocolKeyword(session),
        tls: session.secure ? `using ${session.tlsProtocol} with cipher ${session.tlsCipher}` : undefined,
        ...(mailFrom
          ? {
              identities: mailFrom.identities,
              lookups: mailFrom.lookups,
              ...(mailFrom.statuses ? { statuses: mailFrom.statuses } : {}),
            }
          : {}),
        logContext: { session: session.id },
      });
      if (outcome.kind === "rejected") {
        deps.metrics?.reject("smtp", outcome.verdict.enhancedCode);
        return toReply(outcome.verdict, session, logger);
      }
      if (outcome.kind === "tempfail") {
        deps.metrics?.reject("smtp", "4.3.0");
        deps.availability?.suspect();
        return { code: 451, enhanced: "4.3.0", text: "Temporary local problem, try again later" };
      }
      const { queueId } = outcome;
      if (outcome.replayed) {
        // The lost-250 resubmission: the first ID again, nothing queued.
        logger.info({ queueId, session: session.id, key: user.label }, "duplicate (idempotency key)");
        return { code: 250, enhanced: "2.0.0", text: `Ok: queued as ${queueId}` };
      }
      deps.metrics?.accept("smtp", (performance.now() - started) / 1000);
      logger.info(
        {
          queueId,
          session: session.id,
          ip: session.remoteAddress,
          key: user.label,
          from: envelope.mailFrom,
          rcpts: envelope.rcptTo.length,
          size: outcome.size,
          ...(outcome.selectors.length > 0 ? { dkim: outcome.selectors } : {}),
        },
        "queued",
      );
      return { code: 250, enhanced: "2.0.0", text: `Ok: queued as ${queueId}` };
    },
  };
  if (deps.config.suppression.mode === "drop") {
    // Issue 5's default mode answers 250 to a suppressed recipient, so RCPT needs no lookup: the
    // queue drops it (reason `suppressed`, never attempted, a `dropped` event) when it comes due,
    // which every claim checks in its own statement (store/{sqlite,postgres}/queue.ts). No hook
    // here saves a store read per recipient (bench:relay --store postgres: 60% -> 65% of SQLite)
    // and, under smtp.workers, the round trip to the main process.
    return hooks;
  }
  return {
    ...hooks,
    async onRcptTo(session, _envelope, recipient) {
      const verdict = await checkRecipient(deps, session.user!.accountId, recipient);
      // "drop" comes only in drop mode; here a suppressed address is refused.
      return verdict.kind === "drop" ? { ok: true } : toHookVerdict(verdict, session, logger);
    },
  };
}

/** RFC 3848: S for TLS, A for an authenticated client. */
function protocolKeyword(session: SessionInfo<Submitter>): string {
  if (!session.esmtp) return "SMTP";
  return `ESMTP${session.secure ? "S" : ""}${session.authMethod ? "A" : ""}`;
}

function toReply(
  verdict: Exclude<Verdict, { kind: "accept" }>,
  session: SessionInfo<Submitter>,
  logger: Logger,
): SmtpReply {
  logger.info(
    { session: session.id, ip: session.remoteAddress, key: session.user?.label, reason: verdict.reason },
    "rejected",
  );
  return { code: verdict.smtpCode, enhanced: verdict.enhancedCode, text: verdict.message };
}

function toHookVerdict(verdict: Verdict, session: SessionInfo<Submitter>, logger: Logger): HookVerdict {
  if (verdict.kind === "accept") return { ok: true };
  return { ok: false, reply: toReply(verdict, session, logger) };
}

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

import { domainOf } from "../address.js";
import { hashApiKey } from "../auth/api-keys.js";
import type { PetrelConfig, TrustedNetwork } from "../config/schema.js";
import type { MessageSigning } from "../domains/signer.js";
import { readAttachedMetadata } from "../events/metadata.js";
import type { Logger } from "../log.js";
import { addTraceFields, headerSenders, readHeaderSection } from "../message/headers.js";
import type { AuthThrottle } from "../policy/auth-throttle.js";
import { checkDomainsVerified, checkEnvelopeSender, checkHeaderSenders } from "../policy/sender.js";
import { checkSuppression } from "../policy/suppression.js";
import type { Verdict } from "../policy/verdict.js";
import { newQueueId, type Spool } from "../queue/spool.js";
import type { Envelope, HookVerdict, SessionHooks, SessionInfo, SmtpReply } from "../smtp/types.js";
import type { DomainStatus, SenderIdentities, Store } from "../store/types.js";

/** Who is submitting: an account, through an API key or a trusted network. */
export interface Submitter {
  readonly accountId: number;
  readonly accountName: string;
  readonly apiKeyId: number | null;
  /** What the log shows: the key's name, or the trusted network. */
  readonly label: string;
}

export interface SubmissionDeps {
  readonly config: PetrelConfig;
  readonly store: Store;
  readonly spool: Spool;
  readonly throttle: AuthThrottle;
  /** Trusted networks with their account ids resolved at start. */
  readonly trusted: ReadonlyArray<TrustedNetwork & { readonly accountId: number }>;
  readonly logger: Logger;
  /** Called with (keyId, time) on each successful AUTH, to record "last used" lazily. */
  readonly onKeyUsed: (keyId: number, at: number) => void;
  /** DKIM signing by From domain (src/domains/signer.ts); absent = never sign. */
  readonly signing?: MessageSigning;
}

const AUTH_INVALID: SmtpReply = { code: 535, enhanced: "5.7.8", text: "Authentication credentials invalid" };
const LOCKED_OUT: SmtpReply = {
  code: 421,
  enhanced: "4.7.0",
  text: "Too many failed authentication attempts, try again later",
};

export function createSubmissionHooks(deps: SubmissionDeps): SessionHooks<Submitter> {
  const { config, store, spool, throttle, trusted, logger } = deps;
  // Identities read at MAIL FROM are reused for the header check at the end of the same DATA.
  const identitiesBySession = new WeakMap<SessionInfo<Submitter>, SenderIdentities>();
  // Sender domain statuses for sending.requireVerifiedDomains, read at MAIL FROM like identities.
  const requireVerified = config.sending.requireVerifiedDomains;
  const statusesBySession = new WeakMap<SessionInfo<Submitter>, ReadonlyMap<string, DomainStatus>>();
  // Issue 5: suppressed recipients accepted in this transaction (suppression.mode drop): stored
  // `dropped` with reason `suppressed` in the commit that accepts the message, never attempted.
  const droppedByEnvelope = new WeakMap<Envelope, string[]>();

  return {
    async onConnect(session) {
      if (throttle.isLocked(session.remoteAddress)) return { ok: false, reply: LOCKED_OUT };
      const family = session.remoteAddress.includes(":") ? "ipv6" : "ipv4";
      const network = trusted.find((t) => t.list.check(session.remoteAddress, family));
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
      const key =
        credentials.username.toLowerCase() === "apikey"
          ? await store.findActiveApiKey(hashApiKey(credentials.password))
          : undefined;
      if (key) {
        deps.onKeyUsed(key.id, Date.now());
        logger.info({ session: session.id, ip: session.remoteAddress, key: key.name }, "auth ok");
        return {
          ok: true,
          user: { accountId: key.accountId, accountName: key.accountName, apiKeyId: key.id, label: key.name },
        };
      }
      const locked = throttle.recordFailure(session.remoteAddress);
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
      const identities = await store.getSenderIdentities(user.accountId);
      identitiesBySession.set(session, identities);
      const verdict = checkEnvelopeSender(identities, envelope.mailFrom);
      if (verdict.kind !== "accept" || !requireVerified) return toHookVerdict(verdict, session, logger);
      const statuses = await store.getDomainStatuses(user.accountId);
      statusesBySession.set(session, statuses);
      return toHookVerdict(checkDomainsVerified(identities, statuses, [envelope.mailFrom]), session, logger);
    },

    async onRcptTo(session, envelope, recipient) {
      const suppressed = await store.findSuppression(session.user!.accountId, recipient);
      const verdict = checkSuppression(suppressed, config.suppression.mode);
      if (verdict.kind !== "drop") return toHookVerdict(verdict, session, logger);
      const dropped = droppedByEnvelope.get(envelope) ?? [];
      dropped.push(recipient);
      droppedByEnvelope.set(envelope, dropped);
      return { ok: true };
    },

    async onData(session, envelope, content) {
      const user = session.user!;
      const identities =
        identitiesBySession.get(session) ?? (await store.getSenderIdentities(user.accountId));
      const section = readHeaderSection(content);
      const senders = headerSenders(section);
      const verdict = checkHeaderSenders(identities, senders);
      if (verdict.kind !== "accept") return toReply(verdict, session, logger);
      if (requireVerified) {
        const statuses = statusesBySession.get(session) ?? (await store.getDomainStatuses(user.accountId));
        const domains = checkDomainsVerified(identities, statuses, [...senders.from, ...senders.sender]);
        if (domains.kind !== "accept") return toReply(domains, session, logger);
      }

      // Issue 5: X-Petrel-Metadata/X-Petrel-Category are read and removed here, before the trace
      // fields and DKIM signing: recipients never see them, and the signature covers exactly the
      // bytes that are delivered (removing them after signing would break it).
      const attached = readAttachedMetadata(content, section, config.events.metadata);
      if (!attached.ok) {
        return toReply(
          {
            kind: "reject",
            smtpCode: 550,
            enhancedCode: "5.6.0",
            message: attached.text,
            reason: attached.text,
          },
          session,
          logger,
        );
      }
      const queueId = newQueueId();
      const now = new Date();
      const prepared = addTraceFields(attached.content, section, {
        queueId,
        hostname: config.hostname,
        heloName: session.heloName,
        clientIp: session.remoteAddress,
        protocol: protocolKeyword(session),
        tls: session.secure ? `using ${session.tlsProtocol} with cipher ${session.tlsCipher}` : undefined,
        date: now,
      });
      // checkHeaderSenders guarantees one From field with an address; its domain is d=.
      let signed: { content: Buffer; selectors: readonly string[] };
      try {
        signed = deps.signing
          ? await deps.signing.sign(domainOf(senders.from[0]!), prepared)
          : { content: prepared, selectors: [] };
      } catch (err) {
        logger.error({ err, session: session.id, queueId }, "DKIM signing failed");
        return { code: 451, enhanced: "4.3.0", text: "Temporary local problem, try again later" };
      }
      // The content may move to the commit thread (src/store/sqlite/enqueue-thread.ts): read its
      // size now.
      const size = signed.content.length;
      try {
        await spool.enqueue({
          id: queueId,
          accountId: user.accountId,
          apiKeyId: user.apiKeyId,
          mailFrom: envelope.mailFrom,
          recipients: envelope.rcptTo,
          content: signed.content,
          clientIp: session.remoteAddress,
          receivedAt: now.getTime(),
          expiresAt: now.getTime() + config.queue.maxLifetimeMs,
          // Only when present: the message is copied to the commit thread, field by field.
          ...(attached.metadata === null ? {} : { metadata: attached.metadata }),
          ...(attached.categories.length === 0 ? {} : { categories: attached.categories }),
          dropped: droppedByEnvelope.get(envelope)?.map((address) => ({ address, reason: "suppressed" })),
        });
      } catch (err) {
        logger.error({ err, session: session.id, queueId }, "spool commit failed");
        return { code: 451, enhanced: "4.3.0", text: "Temporary local problem, try again later" };
      }
      logger.info(
        {
          queueId,
          session: session.id,
          ip: session.remoteAddress,
          key: user.label,
          from: envelope.mailFrom,
          rcpts: envelope.rcptTo.length,
          size,
          ...(signed.selectors.length > 0 ? { dkim: signed.selectors } : {}),
        },
        "queued",
      );
      return { code: 250, enhanced: "2.0.0", text: `Ok: queued as ${queueId}` };
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

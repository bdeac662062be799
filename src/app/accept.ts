/**
 * The accept path both SMTP and the HTTP API go through (issue 9: "the same sender,
 * suppression, size, metadata and DKIM rules as SMTP, through the same code"): the envelope
 * checks (may this account send as the return path? is a recipient suppressed?) and, for the
 * content, the header sender rules, X-Petrel-Metadata/Category, trace fields, DKIM signing and
 * the durable (group) commit. SMTP calls the envelope checks at MAIL and RCPT and acceptContent()
 * at the end of DATA; the HTTP API calls them one after the other for a composed message.
 *
 * Invariants: acceptContent() resolves `queued` only after Spool.enqueue() resolved, i.e. after
 * the durable commit; a failed signing or commit is `tempfail` and keeps nothing.
 */
import { domainOf, envelopeAddress, isAsciiAddress } from "../address.js";
import type { PetrelConfig } from "../config/schema.js";
import type { MessageSigning } from "../domains/signer.js";
import { readAttachedMetadata, removeFields } from "../events/metadata.js";
import type { Logger } from "../log.js";
import {
  addTraceFields,
  headerSenders,
  readHeaderSection,
  readLimitedHeaderSection,
} from "../message/headers.js";
import { normalizeMessage } from "../message/normalize.js";
import { checkDomainsVerified, checkEnvelopeSender, checkHeaderSenders } from "../policy/sender.js";
import { checkSuppression, type RecipientVerdict } from "../policy/suppression.js";
import type { Verdict } from "../policy/verdict.js";
import { newQueueId, type Spool } from "../queue/spool.js";
import { timeMs } from "../services/validate.js";
import type { DomainStatus, SenderIdentities, Store } from "../store/types.js";
import { Idempotency } from "./idempotency.js";

export interface AcceptDeps {
  readonly config: PetrelConfig;
  readonly store: Store;
  readonly spool: Spool;
  readonly logger: Logger;
  /** DKIM signing by From domain (src/domains/signer.ts); absent = never sign. */
  readonly signing?: MessageSigning;
  /** X-Petrel-Idempotency-Key handling (idempotency.ts); absent = the field is only removed. */
  readonly idempotency?: Idempotency;
}

/** A field the sender may set for Petrel, removed before signing (issue 9). */
export const IDEMPOTENCY_FIELD = "x-petrel-idempotency-key";
/** Scheduled send over SMTP (issue 9): when to send; removed before signing like the key. */
export const SEND_AT_FIELD = "x-petrel-send-at";
/** A send time this little in the past (clock skew, whole seconds) means "now", not a refusal. */
export const SEND_AT_GRACE_MS = 60_000;

/**
 * Why a send time is refused (in the past, or further ahead than queue.maxScheduleAheadMs), or
 * undefined when it is acceptable.
 */
export function sendAtRefusal(sendAt: number, now: number, maxAheadMs: number): string | undefined {
  if (!Number.isFinite(sendAt)) return "the send time is not a valid time";
  if (sendAt < now - SEND_AT_GRACE_MS)
    return `the send time ${new Date(sendAt).toISOString()} is in the past`;
  if (sendAt > now + maxAheadMs)
    return `the send time is more than ${Math.round(maxAheadMs / 3600_000)} h ahead (queue.maxScheduleAheadMs)`;
  return undefined;
}

/** Who is submitting: an account, through an API key or a trusted network. */
export interface Submitter {
  readonly accountId: number;
  readonly accountName: string;
  readonly apiKeyId: number | null;
  /** What the log shows: the key's name, or the trusted network. */
  readonly label: string;
}

export type Rejection = Exclude<Verdict, { kind: "accept" }>;

export interface SenderCheck {
  readonly verdict: Verdict;
  readonly identities: SenderIdentities;
  /** Read only with sending.requireVerifiedDomains. */
  readonly statuses: ReadonlyMap<string, DomainStatus> | undefined;
}

/** MAIL FROM: may the account send with this return path (and is its domain verified, if required)? */
export async function checkSender(
  deps: AcceptDeps,
  accountId: number,
  mailFrom: string,
  /** Where to read them: the store, or the message's lookup view (store.lookupView). */
  lookups: Pick<Store, "getSenderIdentities" | "getDomainStatuses"> = deps.store,
): Promise<SenderCheck> {
  const identities = await lookups.getSenderIdentities(accountId);
  const verdict = checkEnvelopeSender(identities, mailFrom);
  if (verdict.kind !== "accept" || !deps.config.sending.requireVerifiedDomains)
    return { verdict, identities, statuses: undefined };
  const statuses = await lookups.getDomainStatuses(accountId);
  return { verdict: checkDomainsVerified(identities, statuses, [mailFrom]), identities, statuses };
}

/** RCPT TO: accept, reject (suppressed with suppression.mode: reject) or accept-and-drop. */
export async function checkRecipient(
  deps: AcceptDeps,
  accountId: number,
  recipient: string,
): Promise<RecipientVerdict> {
  const suppressed = await deps.store.findSuppression(accountId, recipient);
  return checkSuppression(suppressed, deps.config.suppression.mode);
}

export interface AcceptInput {
  readonly submitter: Submitter;
  readonly mailFrom: string;
  readonly recipients: readonly string[];
  /** Recipients accepted but dropped (suppressed): stored `dropped`, never attempted. */
  readonly dropped: readonly string[];
  readonly content: Buffer;
  readonly clientIp: string;
  /** The Received field's "from" name: the HELO name over SMTP. */
  readonly heloName: string | undefined;
  /** The Received field's "with" keyword (RFC 3848 over SMTP; HTTP/HTTPS for the API). */
  readonly protocol: string;
  readonly tls?: string | undefined;
  /** As read by checkSender() for this envelope, when the caller has them. */
  readonly identities?: SenderIdentities;
  readonly statuses?: ReadonlyMap<string, DomainStatus>;
  /** The message's lookup view (store.lookupView): its identities, statuses, signing keys; absent = the store. */
  readonly lookups?: Pick<Store, "getSenderIdentities" | "getDomainStatuses" | "getSigningKeys">;
  /** Fields for the log lines of failures (the SMTP session id). */
  readonly logContext?: Record<string, unknown>;
  /** Time of acceptance (default now). */
  readonly now?: Date;
  /**
   * Scheduled send from the API's send_at (ms; checked here against the limits). Absent: an
   * X-Petrel-Send-At field in the content, if any, decides.
   */
  readonly sendAt?: number | undefined;
}

export type AcceptOutcome =
  | {
      readonly kind: "queued";
      readonly queueId: string;
      readonly size: number;
      readonly selectors: readonly string[];
      /** True when an idempotency key matched: the first submission's ID, nothing queued now. */
      readonly replayed?: boolean;
      /** Scheduled send: when the message will be sent (ms), if later than now. */
      readonly sendAt?: number | undefined;
    }
  | { readonly kind: "rejected"; readonly verdict: Rejection }
  | { readonly kind: "tempfail"; readonly queueId: string };

/** End of DATA (or a composed API message): header rules, metadata, trace, DKIM, durable commit. */
export async function acceptContent(deps: AcceptDeps, input: AcceptInput): Promise<AcceptOutcome> {
  const { config, logger } = deps;
  const lookups = input.lookups ?? deps.store;
  const user = input.submitter;
  const identities = input.identities ?? (await lookups.getSenderIdentities(user.accountId));
  // Issue 13: limits on the header section first, so nothing costly runs on an oversized one,
  // and a permanent reply for what can never pass.
  const read = readLimitedHeaderSection(input.content, config.smtp.limits);
  if (!read.ok) return { kind: "rejected", verdict: { kind: "reject", ...read.refusal } };
  const section = read.section;
  const senders = headerSenders(section, config.smtp.limits.maxAddressesPerField);
  if ("refusal" in senders) return { kind: "rejected", verdict: { kind: "reject", ...senders.refusal } };
  const verdict = checkHeaderSenders(identities, senders);
  if (verdict.kind !== "accept") return { kind: "rejected", verdict };
  if (config.sending.requireVerifiedDomains) {
    const statuses = input.statuses ?? (await lookups.getDomainStatuses(user.accountId));
    const domains = checkDomainsVerified(identities, statuses, [...senders.from, ...senders.sender]);
    if (domains.kind !== "accept") return { kind: "rejected", verdict: domains };
  }

  // Issue 5: X-Petrel-Metadata/X-Petrel-Category are read and removed here, before the trace
  // fields and DKIM signing: recipients never see them, and the signature covers exactly the
  // bytes that are delivered (removing them after signing would break it).
  const attached = readAttachedMetadata(input.content, section, config.events.metadata);
  if (!attached.ok) {
    return {
      kind: "rejected",
      verdict: {
        kind: "reject",
        smtpCode: 550,
        enhancedCode: "5.6.0",
        message: attached.text,
        reason: attached.text,
      },
    };
  }
  // Issue 9: X-Petrel-Idempotency-Key, removed like the metadata fields before trace and signing.
  let content = attached.content;
  let contentSection = content === input.content ? section : readHeaderSection(content);
  const keyField = contentSection.fields.filter((f) => f.name.toLowerCase() === IDEMPOTENCY_FIELD);
  if (keyField.length > 0) {
    content = removeFields(content, contentSection.end, [IDEMPOTENCY_FIELD]);
    contentSection = readHeaderSection(content);
  }
  const idempotencyKey = keyField[0]?.value.trim();
  if (idempotencyKey !== undefined && (keyField.length > 1 || !Idempotency.valid(idempotencyKey))) {
    const text = "X-Petrel-Idempotency-Key must appear once, with 1 to 256 printable characters";
    return {
      kind: "rejected",
      verdict: { kind: "reject", smtpCode: 550, enhancedCode: "5.6.0", message: text, reason: text },
    };
  }
  // Issue 9, scheduled send: X-Petrel-Send-At (or the API's send_at), removed before signing.
  const sendAtFields = contentSection.fields.filter((f) => f.name.toLowerCase() === SEND_AT_FIELD);
  if (sendAtFields.length > 0) {
    content = removeFields(content, contentSection.end, [SEND_AT_FIELD]);
    contentSection = readHeaderSection(content);
  }
  const acceptedAt = (input.now ?? new Date()).getTime();
  let sendAt = input.sendAt;
  if (sendAt === undefined && sendAtFields.length > 0) {
    sendAt = sendAtFields.length === 1 ? timeMs(sendAtFields[0]!.value) : Number.NaN;
    if (Number.isNaN(sendAt)) {
      const text = "X-Petrel-Send-At must appear once, as an RFC 3339 time or unix seconds";
      return {
        kind: "rejected",
        verdict: { kind: "reject", smtpCode: 550, enhancedCode: "5.6.0", message: text, reason: text },
      };
    }
  }
  if (sendAt !== undefined) {
    const refusal = sendAtRefusal(sendAt, acceptedAt, config.queue.maxScheduleAheadMs);
    if (refusal) {
      return {
        kind: "rejected",
        verdict: { kind: "reject", smtpCode: 550, enhancedCode: "5.6.0", message: refusal, reason: refusal },
      };
    }
    // A time already passed (within the grace) is "now": nothing to wait for.
    if (sendAt <= acceptedAt) sendAt = undefined;
  }
  const scheduled: AcceptInput = sendAt === undefined ? input : { ...input, sendAt };
  // Issue 11: long lines re-encoded, long header lines folded, UTF-8 header fields made encoded
  // words when the envelope is ASCII — once, here, before the signature.
  const limit = config.smtp.limits.maxLineLength;
  const normal = normalizeMessage(content, {
    maxLineLength: limit,
    encodeHeaders:
      isAsciiAddress(envelopeAddress(input.mailFrom)) &&
      input.recipients.every((r) => isAsciiAddress(envelopeAddress(r))),
  });
  if (!normal.ok) {
    const message = `Message contains a line longer than ${limit} characters`;
    return {
      kind: "rejected",
      verdict: { kind: "reject", smtpCode: 550, enhancedCode: "5.6.0", message, reason: normal.reason },
    };
  }
  if (normal.changes.length > 0) {
    content = normal.content;
    contentSection = readHeaderSection(content);
    logger.info({ ...input.logContext, changes: normal.changes }, "normalized");
  }
  if (idempotencyKey === undefined || !deps.idempotency)
    return commit(deps, scheduled, content, contentSection, senders.from[0]!, attached);
  try {
    const { value, replayed } = await deps.idempotency.once(
      user.accountId,
      `smtp:${idempotencyKey}`,
      "",
      async () => {
        const outcome = await commit(deps, scheduled, content, contentSection, senders.from[0]!, attached);
        if (outcome.kind !== "queued") throw new CommitFailed(outcome);
        return {
          queueId: outcome.queueId,
          size: outcome.size,
          selectors: outcome.selectors,
          ...(outcome.sendAt === undefined ? {} : { sendAt: outcome.sendAt }),
        };
      },
    );
    return { kind: "queued", ...value, replayed };
  } catch (err) {
    if (err instanceof CommitFailed) return err.outcome;
    logger.error({ err, ...input.logContext }, "idempotency lookup failed");
    return { kind: "tempfail", queueId: "" };
  }
}

class CommitFailed extends Error {
  readonly outcome: AcceptOutcome;
  constructor(outcome: AcceptOutcome) {
    super("commit failed");
    this.outcome = outcome;
  }
}

/** Trace fields, DKIM signing and the durable commit of accepted content. */
async function commit(
  deps: AcceptDeps,
  input: AcceptInput,
  content: Buffer,
  section: ReturnType<typeof readHeaderSection>,
  from: string,
  attached: { readonly metadata: string | null; readonly categories: readonly string[] },
): Promise<AcceptOutcome> {
  const { config, spool, logger } = deps;
  const user = input.submitter;
  const queueId = newQueueId();
  const now = input.now ?? new Date();
  const prepared = addTraceFields(content, section, {
    queueId,
    hostname: config.hostname,
    heloName: input.heloName,
    clientIp: input.clientIp,
    protocol: input.protocol,
    tls: input.tls,
    date: now,
  });
  // checkHeaderSenders guarantees one From field with an address; its domain is d=.
  let signed: { content: Buffer; selectors: readonly string[] };
  const fromDomain = domainOf(from);
  try {
    signed = deps.signing
      ? await deps.signing.sign(fromDomain, prepared, input.lookups)
      : { content: prepared, selectors: [] };
  } catch (err) {
    // Never unsigned by accident (issue 13): the log names the domain, the client retries.
    logger.error(
      { err, ...input.logContext, queueId, domain: fromDomain },
      `DKIM signing failed for ${fromDomain}: message refused with 451 4.3.0`,
    );
    return { kind: "tempfail", queueId };
  }
  // The content may move to the commit thread (src/store/sqlite/enqueue-thread.ts transfers large
  // contents instead of copying them): read its size now.
  const size = signed.content.length;
  try {
    await spool.enqueue({
      id: queueId,
      accountId: user.accountId,
      apiKeyId: user.apiKeyId,
      // Issue 11: one canonical form (A-label domains, NFC local parts) in the store.
      mailFrom: envelopeAddress(input.mailFrom),
      recipients: input.recipients.map(envelopeAddress),
      content: signed.content,
      clientIp: input.clientIp,
      receivedAt: now.getTime(),
      // Scheduled send: due at send_at, and the lifetime counts from it.
      ...(input.sendAt === undefined ? {} : { sendAt: input.sendAt }),
      expiresAt: (input.sendAt ?? now.getTime()) + config.queue.maxLifetimeMs,
      // Only when present: the message is copied to the commit thread, field by field.
      ...(attached.metadata === null ? {} : { metadata: attached.metadata }),
      ...(attached.categories.length === 0 ? {} : { categories: attached.categories }),
      dropped:
        input.dropped.length === 0
          ? undefined
          : input.dropped.map((address) => ({ address: envelopeAddress(address), reason: "suppressed" })),
    });
  } catch (err) {
    logger.error({ err, ...input.logContext, queueId }, "spool commit failed");
    return { kind: "tempfail", queueId };
  }
  return {
    kind: "queued",
    queueId,
    size,
    selectors: signed.selectors,
    ...(input.sendAt === undefined ? {} : { sendAt: input.sendAt }),
  };
}

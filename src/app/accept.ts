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
import { domainOf } from "../address.js";
import type { PetrelConfig } from "../config/schema.js";
import type { MessageSigning } from "../domains/signer.js";
import { readAttachedMetadata } from "../events/metadata.js";
import type { Logger } from "../log.js";
import { addTraceFields, headerSenders, readLimitedHeaderSection } from "../message/headers.js";
import { checkDomainsVerified, checkEnvelopeSender, checkHeaderSenders } from "../policy/sender.js";
import { checkSuppression, type RecipientVerdict } from "../policy/suppression.js";
import type { Verdict } from "../policy/verdict.js";
import { newQueueId, type Spool } from "../queue/spool.js";
import type { DomainStatus, SenderIdentities, Store } from "../store/types.js";

export interface AcceptDeps {
  readonly config: PetrelConfig;
  readonly store: Store;
  readonly spool: Spool;
  readonly logger: Logger;
  /** DKIM signing by From domain (src/domains/signer.ts); absent = never sign. */
  readonly signing?: MessageSigning;
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
): Promise<SenderCheck> {
  const identities = await deps.store.getSenderIdentities(accountId);
  const verdict = checkEnvelopeSender(identities, mailFrom);
  if (verdict.kind !== "accept" || !deps.config.sending.requireVerifiedDomains)
    return { verdict, identities, statuses: undefined };
  const statuses = await deps.store.getDomainStatuses(accountId);
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
  /** Fields for the log lines of failures (the SMTP session id). */
  readonly logContext?: Record<string, unknown>;
  /** Time of acceptance (default now). */
  readonly now?: Date;
}

export type AcceptOutcome =
  | {
      readonly kind: "queued";
      readonly queueId: string;
      readonly size: number;
      readonly selectors: readonly string[];
    }
  | { readonly kind: "rejected"; readonly verdict: Rejection }
  | { readonly kind: "tempfail"; readonly queueId: string };

/** End of DATA (or a composed API message): header rules, metadata, trace, DKIM, durable commit. */
export async function acceptContent(deps: AcceptDeps, input: AcceptInput): Promise<AcceptOutcome> {
  const { config, store, spool, logger } = deps;
  const user = input.submitter;
  const identities = input.identities ?? (await store.getSenderIdentities(user.accountId));
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
    const statuses = input.statuses ?? (await store.getDomainStatuses(user.accountId));
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
  const queueId = newQueueId();
  const now = input.now ?? new Date();
  const prepared = addTraceFields(attached.content, section, {
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
  const fromDomain = domainOf(senders.from[0]!);
  try {
    signed = deps.signing
      ? await deps.signing.sign(fromDomain, prepared)
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
      mailFrom: input.mailFrom,
      recipients: input.recipients,
      content: signed.content,
      clientIp: input.clientIp,
      receivedAt: now.getTime(),
      expiresAt: now.getTime() + config.queue.maxLifetimeMs,
      // Only when present: the message is copied to the commit thread, field by field.
      ...(attached.metadata === null ? {} : { metadata: attached.metadata }),
      ...(attached.categories.length === 0 ? {} : { categories: attached.categories }),
      dropped:
        input.dropped.length === 0
          ? undefined
          : input.dropped.map((address) => ({ address, reason: "suppressed" })),
    });
  } catch (err) {
    logger.error({ err, ...input.logContext, queueId }, "spool commit failed");
    return { kind: "tempfail", queueId };
  }
  return { kind: "queued", queueId, size, selectors: signed.selectors };
}

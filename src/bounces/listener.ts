/**
 * The bounce listener: Petrel's inbound MX for the return paths (`bounces.<domain>` MX → here).
 * Built on src/smtp's SmtpServer with hooks of its own: anyone may connect (it is an MX), nobody
 * may authenticate (no AUTH offered), RCPT is accepted only for a VERP address whose token
 * verifies and names a recipient that exists (anything else: 550 5.1.1), and nothing received is
 * ever forwarded: a report is parsed (RFC 3464 DSN, RFC 5965 ARF, or a bounce in prose),
 * interpreted for the recipient its token names, applied to the store (a late `bounce` with its
 * suppression, or a `spamreport` with its suppression) and dropped. With bounces.notifySender,
 * the DSN to the original sender is written in the report's own transaction (issue 11), so the
 * 250 means both are committed.
 *
 * Invariants: a forged or unknown token changes nothing (refused at RCPT, before DATA); a report
 * that is not a bounce or a complaint (a delay warning, an auto-reply, garbage) is accepted with
 * 250 and ignored, so the remote MTA does not retry it forever; only a store failure answers
 * 451 4.3.0 (the report is then retried by its sender). One log line per report and recipient.
 * Security: every byte comes from the Internet. Parsing never throws (report.ts, fuzzed by
 * test/bounces-fuzz.test.ts); a parser bug is logged and the report ignored. Sizes, connections
 * and recipients are capped by the SmtpServer limits built here.
 */
import type { PetrelConfig } from "../config/schema.js";
import { verpCodec } from "../delivery/engine.js";
import type { Logger } from "../log.js";
import { BindError, SmtpServer } from "../smtp/server.js";
import type { Envelope, SessionHooks, SmtpReply } from "../smtp/types.js";
import type {
  BounceTarget,
  InboundReportRecord,
  InboundReportResult,
  NewMessage,
  OutcomeNotification,
  Store,
} from "../store/types.js";
import { type Classifier, createClassifier } from "./classify.js";
import { type Finding, interpret } from "./interpret.js";
import { dsnMessage, type FailedRecipient, type OriginalMessage } from "./notify.js";
import { parseReport } from "./report.js";
import type { VerpCodec } from "./verp.js";

/** The session's "user": an MX has no users, only the fact that MAIL may proceed. */
interface Peer {
  readonly kind: "mx";
}

export interface BounceListenerDeps {
  readonly config: Pick<PetrelConfig, "bounces" | "smtp" | "hostname" | "domains">;
  readonly store: Pick<Store, "getBounceTarget" | "recordInboundReport" | "getMessageContent">;
  readonly codec: VerpCodec;
  readonly classify: Classifier;
  readonly logger: Logger;
  readonly tls: { readonly key: string | Buffer; readonly cert: string | Buffer };
  /**
   * Builds the DSN to the sender about late bounces (bounces.notifySender); it is committed with
   * the bounces it reports (issue 11).
   */
  readonly notification?: (
    original: OriginalMessage,
    failed: readonly FailedRecipient[],
  ) => NewMessage | null;
  /** Issue 8: a refusal at connect while the store is unreachable or the node drains (421). */
  readonly refusal?: () => SmtpReply | undefined;
}

export interface BounceListener {
  readonly port: number;
  close(graceMs: number): Promise<void>;
}

const NO_SUCH_USER: SmtpReply = { code: 550, enhanced: "5.1.1", text: "No such user here" };
const LOCAL_ERROR: SmtpReply = {
  code: 451,
  enhanced: "4.3.0",
  text: "Temporary local problem, try again later",
};

export function createBounceHooks(deps: BounceListenerDeps): SessionHooks<Peer> {
  const { store, codec, classify, logger } = deps;
  const targets = new WeakMap<Envelope, BounceTarget[]>();

  return {
    async onConnect() {
      const refusal = deps.refusal?.();
      if (refusal) return { ok: false, reply: refusal };
      return { ok: true, user: { kind: "mx" } };
    },
    async onAuth() {
      // Not reachable: the listener offers no AUTH (SmtpServerOptions.auth = false).
      return { ok: false, reply: { code: 502, enhanced: "5.5.1", text: "Command not implemented" } };
    },
    async onMailFrom() {
      // Bounces come from <>, complaints from anyone: the recipient decides.
      return { ok: true };
    },
    async onRcptTo(session, envelope, recipient) {
      const token = codec.decode(recipient);
      const target = token ? await store.getBounceTarget(token.messageId, token.recipientId) : undefined;
      if (!target) {
        logger.info(
          {
            session: session.id,
            ip: session.remoteAddress,
            rcpt: recipient.slice(0, 100),
            token: token !== undefined,
          },
          token ? "bounce for an unknown message refused" : "not a valid return path, refused",
        );
        return { ok: false, reply: NO_SUCH_USER };
      }
      const list = targets.get(envelope) ?? [];
      list.push(target);
      targets.set(envelope, list);
      return { ok: true };
    },
    async onData(session, envelope, content) {
      const list = targets.get(envelope) ?? [];
      let report: Awaited<ReturnType<typeof parseReport>>;
      try {
        report = await parseReport(content);
      } catch (err) {
        logger.error({ err, session: session.id }, "bounce report parser failed; report ignored");
        return { code: 250, enhanced: "2.0.0", text: "Ok: report ignored" };
      }
      const now = Date.now();
      const applying: { target: BounceTarget; finding: Applicable }[] = [];
      for (const target of list) {
        let finding: Finding;
        try {
          finding = interpret(report, target.address, classify);
        } catch (err) {
          logger.error(
            { err, session: session.id, queueId: target.messageId },
            "bounce report not understood",
          );
          continue;
        }
        if (finding.kind === "ignore") {
          logger.info(
            {
              ...logFields(target, session.remoteAddress, report.kind, finding.kind),
              reason: finding.reason,
            },
            "bounce report ignored",
          );
          continue;
        }
        applying.push({ target, finding });
      }
      if (applying.length === 0) return { code: 250, enhanced: "2.0.0", text: "Ok: report received" };
      const records = applying.map(({ target, finding }) => toRecord(target, finding, now));
      let results: InboundReportResult[];
      try {
        // Issue 11: the DSNs to senders go into the report's own transaction, so kill -9 after the
        // 250 can never keep the bounce and lose its notification.
        const notifications = await notificationsFor(deps, applying, now);
        results = await store.recordInboundReport(records, notifications);
      } catch (err) {
        logger.error(
          { err, session: session.id, ip: session.remoteAddress, report: report.kind },
          "could not record a bounce report",
        );
        return LOCAL_ERROR;
      }
      applying.forEach(({ target, finding }, i) => {
        const result = results[i]!;
        logger.info(
          {
            ...logFields(target, session.remoteAddress, report.kind, finding.kind),
            applied: result.applied,
            suppressed: result.suppressed,
            event: result.eventId,
            ...(finding.kind === "bounce"
              ? {
                  bounceClass: finding.classification.class,
                  hard: finding.classification.hard,
                  dsn: finding.status,
                }
              : { feedbackType: finding.feedbackType }),
          },
          result.applied ? `${finding.kind} recorded` : `${finding.kind} changed nothing: ${result.reason}`,
        );
      });
      return { code: 250, enhanced: "2.0.0", text: "Ok: report received" };
    },
  };
}

type Applicable = Exclude<Finding, { kind: "ignore" }>;

function logFields(target: BounceTarget, ip: string, report: string, finding: string) {
  return { queueId: target.messageId, to: target.address, ip, report, finding };
}

function toRecord(target: BounceTarget, finding: Applicable, at: number): InboundReportRecord {
  return finding.kind === "bounce"
    ? {
        kind: "bounce",
        messageId: target.messageId,
        recipientId: target.recipientId,
        at,
        reply: finding.diagnostic,
        enhancedCode: finding.status,
        remoteMta: finding.remoteMta,
        bounceClass: finding.classification.class,
        bounceHard: finding.classification.hard,
      }
    : {
        kind: "spamreport",
        messageId: target.messageId,
        recipientId: target.recipientId,
        at,
        feedbackType: finding.feedbackType,
        reply: `feedback-type=${finding.feedbackType}${finding.userAgent ? ` user-agent=${finding.userAgent}` : ""}`,
      };
}

/**
 * One DSN per message for the bounces of a report (bounces.notifySender), built before the
 * transaction that applies them; the store queues each only if one of its bounces applied. Only
 * recipients still `delivered` can bounce late, and a message from <> gets none (no loops).
 */
async function notificationsFor(
  deps: BounceListenerDeps,
  applying: readonly { target: BounceTarget; finding: Applicable }[],
  at: number,
): Promise<OutcomeNotification[]> {
  const build = deps.notification;
  if (!build) return [];
  const byMessage = new Map<string, { target: BounceTarget; failed: FailedRecipient[]; ids: number[] }>();
  for (const { target, finding } of applying) {
    if (finding.kind !== "bounce" || target.state !== "delivered" || target.mailFrom === "") continue;
    const group = byMessage.get(target.messageId) ?? { target, failed: [], ids: [] };
    group.failed.push({
      address: target.address,
      reply: finding.diagnostic,
      status: finding.status,
      remoteMta: finding.remoteMta,
      at,
    });
    group.ids.push(target.recipientId);
    byMessage.set(target.messageId, group);
  }
  const out: OutcomeNotification[] = [];
  for (const { target, failed, ids } of byMessage.values()) {
    // A read failure throws: the report is answered 451 and sent again, nothing half-applied.
    const content = await deps.store.getMessageContent(target.messageId);
    if (!content) continue;
    try {
      const message = build(
        {
          id: target.messageId,
          accountId: target.accountId,
          mailFrom: target.mailFrom,
          receivedAt: target.receivedAt,
          content,
        },
        failed,
      );
      if (message) out.push({ message, recipientIds: ids });
    } catch (err) {
      // A DSN we cannot build must not keep the bounce from being recorded (as in the worker).
      deps.logger.error({ err, queueId: target.messageId }, "could not build the DSN to the sender");
    }
  }
  return out;
}

/**
 * Starts the listener (bounces.listener). A port that cannot be bound (25 needs root or
 * CAP_NET_BIND_SERVICE) is reported in one warning line and `serve` goes on without it.
 */
export async function startBounceListener(deps: BounceListenerDeps): Promise<BounceListener | undefined> {
  const { config, logger } = deps;
  const settings = config.bounces.listener;
  const host = settings.host || config.smtp.host;
  const server = new SmtpServer<Peer>({
    hostname: config.domains.returnPath.inboundHost || config.hostname,
    listeners: [{ name: "bounces", host, port: settings.port, mode: "starttls" }],
    tls: { key: deps.tls.key, cert: deps.tls.cert, minVersion: config.smtp.tls.minVersion },
    auth: false,
    limits: {
      ...config.smtp.limits,
      maxMessageSize: settings.maxMessageSize,
      maxRecipients: 100,
      maxConnections: settings.maxConnections,
      maxConnectionsPerIp: settings.maxConnectionsPerIp,
      // Reports are parsed, never relayed: a NUL in one is dropped rather than losing the bounce.
      nulBytes: "remove",
    },
    hooks: createBounceHooks(deps),
    logger,
  });
  try {
    await server.listen();
  } catch (err) {
    if (!(err instanceof BindError)) throw err;
    const why =
      err.code === "EACCES"
        ? "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        : err.code === "EADDRINUSE"
          ? "the port is already in use"
          : err.code;
    logger.warn(
      { listener: "bounces", host: err.host, port: err.port, code: err.code },
      `bounce listener not started: cannot listen on ${err.host}:${err.port}: ${why}; asynchronous bounces and complaints will not be received (change it with bounces.listener.port or PETREL_BOUNCES__LISTENER__PORT, or turn it off with bounces.listener.enabled: false)`,
    );
    return undefined;
  }
  const port = server.addresses[0]?.port ?? 0;
  logger.info({ listener: "bounces", port }, "listening");
  return { port, close: (graceMs) => server.close(graceMs) };
}

/** The listener as `petrel serve` runs it: the node's VERP key, the configured rules, DSNs to senders if asked. */
export async function startBounces(
  config: PetrelConfig,
  store: Store,
  logger: Logger,
  tls: BounceListenerDeps["tls"],
  refusal?: BounceListenerDeps["refusal"],
): Promise<BounceListener | undefined> {
  if (!config.bounces.listener.enabled) return undefined;
  return startBounceListener({
    config,
    store,
    codec: await verpCodec(store),
    classify: createClassifier(config.bounces.rules),
    logger: logger.child({ component: "bounces" }),
    tls,
    notification: config.bounces.notifySender
      ? (original, failed) =>
          dsnMessage({ hostname: config.hostname, lifetimeMs: config.queue.maxLifetimeMs }, original, failed)
      : undefined,
    refusal,
  });
}

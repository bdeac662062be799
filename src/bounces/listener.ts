/**
 * The bounce listener: Petrel's inbound MX for the return paths (`bounces.<domain>` MX → here).
 * Built on src/smtp's SmtpServer with hooks of its own: anyone may connect (it is an MX), nobody
 * may authenticate (no AUTH offered), RCPT is accepted only for a VERP address whose token
 * verifies and names a recipient that exists (anything else: 550 5.1.1), and nothing received is
 * ever forwarded: a report is parsed (RFC 3464 DSN, RFC 5965 ARF, or a bounce in prose),
 * interpreted for the recipient its token names, applied to the store (a late `bounce` with its
 * suppression, or a `spamreport` with its suppression) and dropped.
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
import type { BounceTarget, Store } from "../store/types.js";
import { type Classifier, createClassifier } from "./classify.js";
import { type Finding, interpret } from "./interpret.js";
import { createFailureNotifier, type FailedDelivery } from "./notify.js";
import { parseReport } from "./report.js";
import type { VerpCodec } from "./verp.js";

/** The session's "user": an MX has no users, only the fact that MAIL may proceed. */
interface Peer {
  readonly kind: "mx";
}

export interface BounceListenerDeps {
  readonly config: Pick<PetrelConfig, "bounces" | "smtp" | "hostname" | "domains">;
  readonly store: Pick<Store, "getBounceTarget" | "recordInboundReport">;
  readonly codec: VerpCodec;
  readonly classify: Classifier;
  readonly logger: Logger;
  readonly tls: { readonly key: string | Buffer; readonly cert: string | Buffer };
  /** Called after a late bounce was recorded (bounces.notifySender). */
  readonly onBounced?: (failed: readonly FailedDelivery[]) => Promise<void>;
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
      const bounced: FailedDelivery[] = [];
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
        const fields = {
          queueId: target.messageId,
          to: target.address,
          ip: session.remoteAddress,
          report: report.kind,
          finding: finding.kind,
        };
        if (finding.kind === "ignore") {
          logger.info({ ...fields, reason: finding.reason }, "bounce report ignored");
          continue;
        }
        try {
          const result =
            finding.kind === "bounce"
              ? await store.recordInboundReport({
                  kind: "bounce",
                  messageId: target.messageId,
                  recipientId: target.recipientId,
                  at: now,
                  reply: finding.diagnostic,
                  enhancedCode: finding.status,
                  remoteMta: finding.remoteMta,
                  bounceClass: finding.classification.class,
                  bounceHard: finding.classification.hard,
                })
              : await store.recordInboundReport({
                  kind: "spamreport",
                  messageId: target.messageId,
                  recipientId: target.recipientId,
                  at: now,
                  feedbackType: finding.feedbackType,
                  reply: `feedback-type=${finding.feedbackType}${finding.userAgent ? ` user-agent=${finding.userAgent}` : ""}`,
                });
          logger.info(
            {
              ...fields,
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
          if (result.applied && finding.kind === "bounce") {
            bounced.push({
              messageId: target.messageId,
              address: target.address,
              reply: finding.diagnostic,
              status: finding.status,
              remoteMta: finding.remoteMta,
              at: now,
            });
          }
        } catch (err) {
          logger.error({ err, ...fields }, "could not record a bounce report");
          return LOCAL_ERROR;
        }
      }
      if (bounced.length > 0 && deps.onBounced) {
        deps.onBounced(bounced).catch((err: unknown) => logger.error({ err }, "could not notify the sender"));
      }
      return { code: 250, enhanced: "2.0.0", text: "Ok: report received" };
    },
  };
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
    onBounced: config.bounces.notifySender
      ? createFailureNotifier({ store, hostname: config.hostname, lifetimeMs: config.queue.maxLifetimeMs })
      : undefined,
    refusal,
  });
}

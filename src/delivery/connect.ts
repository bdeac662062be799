/**
 * Opening one delivery connection for a destination: the MX (or relay) candidates in order, each
 * from the next source address, until one greets and finishes EHLO/STARTTLS/AUTH. RFC 5321 §5.1:
 * a connection failure or a 4xx greeting moves on to the next address.
 *
 * Outcomes: a session; `permanent` when the name has no usable MX (NXDOMAIN, null MX) or when every
 * address tried answered the greeting with 5xx (issue 11: the receiver refuses us outright, so the
 * recipients bounce with that greeting instead of being retried until they expire); `temporary`
 * otherwise (refused, timed out, 4xx greeting, DNS failure, TLS policy not met).
 */
import type { DeliveryConfig } from "../config/delivery-schema.js";
import type { DnsResolver } from "../dns/types.js";
import type { Logger } from "../log.js";
import type { AttemptInfo } from "./jobs.js";
import { type Candidate, type MxOutcome, resolveMx, resolveRelay } from "./mx.js";
import type { ResolvedRoute } from "./routes.js";
import { local, type Reply, SessionError, SmtpSession } from "./smtp-client.js";
import type { SourcePool } from "./sources.js";

export interface ConnectDeps {
  readonly config: DeliveryConfig;
  readonly resolver: DnsResolver;
  readonly hostname: string;
  readonly logger: Logger;
  readonly ca?: string | undefined;
  readonly random?: (() => number) | undefined;
  readonly sources: SourcePool;
}

export type Opened =
  | { readonly kind: "ok"; readonly session: SmtpSession }
  | {
      readonly kind: "permanent" | "temporary";
      readonly reply: Reply;
      readonly attempt: Omit<AttemptInfo, "durationMs">;
      /** The failure is the receiver's greeting (421/554 …), not the network or DNS. */
      readonly atGreeting: boolean;
    };

const NONE = { mxHost: null, ip: null, port: null, sourceIp: null, tls: null };

/** The candidates for a route and recipient domain. */
export function resolveCandidates(
  deps: ConnectDeps,
  route: ResolvedRoute,
  domain: string,
): Promise<MxOutcome> {
  const mxOptions = { forceIpv4: deps.config.forceIpv4, random: deps.random };
  return route.transport === "relay"
    ? resolveRelay(deps.resolver, route.host!, mxOptions)
    : resolveMx(deps.resolver, domain, mxOptions);
}

/** Opens a session for `route`; `resolved` are candidates looked up already (else looked up here). */
export async function openSession(
  deps: ConnectDeps,
  route: ResolvedRoute,
  domain: string,
  resolved: MxOutcome | undefined,
  destination: string,
): Promise<Opened> {
  const { config } = deps;
  const outcome = resolved ?? (await resolveCandidates(deps, route, domain));
  if (outcome.kind === "permanent") {
    return {
      kind: "permanent",
      reply: local(outcome.code, outcome.enhanced, outcome.message),
      attempt: NONE,
      atGreeting: false,
    };
  }
  if (outcome.kind === "temporary") {
    return {
      kind: "temporary",
      reply: local(451, outcome.enhanced, outcome.message),
      attempt: NONE,
      atGreeting: false,
    };
  }
  const candidates = deps.sources.usable(outcome.candidates).slice(0, config.maxAddressesPerAttempt);
  if (candidates.length === 0) {
    return {
      kind: "temporary",
      reply: local(451, "4.4.4", "no address of a usable family (check delivery.sources / forceIpv4)"),
      attempt: NONE,
      atGreeting: false,
    };
  }
  // delivery.mxPorts: tests run several MX hosts on loopback addresses, each on its own port.
  const portOf = (ip: string) => (route.transport === "mx" ? (config.mxPorts[ip] ?? route.port) : route.port);
  let tried = 0;
  let refusedAtGreeting = 0;
  let last: { candidate: Candidate; error: SessionError; source: string | null } | undefined;
  for (const candidate of candidates) {
    const source = deps.sources.next(candidate.ip);
    tried++;
    try {
      const session = await SmtpSession.open({
        host: candidate.host,
        ip: candidate.ip,
        port: portOf(candidate.ip),
        implicitTls: route.implicitTls,
        tlsPolicy: route.tlsPolicy,
        ca: deps.ca,
        localAddress: source?.address,
        ehloName: source?.ehloName ?? deps.hostname,
        auth: route.auth,
        connectTimeoutMs: config.connectTimeoutMs,
        greetingTimeoutMs: config.greetingTimeoutMs,
        commandTimeoutMs: config.commandTimeoutMs,
      });
      return { kind: "ok", session };
    } catch (err) {
      if (!(err instanceof SessionError)) throw err;
      if (err.atGreeting && err.reply.code >= 500) refusedAtGreeting++;
      last = { candidate, error: err, source: source?.address ?? null };
      deps.logger.debug({ destination, error: err.reply.text }, "connection attempt failed");
    }
  }
  const reply = last!.error.reply;
  const text = tried > 1 ? `${reply.text} (after ${tried} addresses)` : reply.text;
  const attempt = {
    mxHost: last!.candidate.host,
    ip: last!.candidate.ip,
    port: portOf(last!.candidate.ip),
    sourceIp: last!.source,
    tls: null,
  };
  // Issue 11: every address answered the greeting with 5xx: the receiver refuses this mail.
  if (refusedAtGreeting === tried) {
    return { kind: "permanent", reply: { ...reply, text }, attempt, atGreeting: true };
  }
  return {
    kind: "temporary",
    reply: { ...reply, code: reply.code >= 500 ? 451 : reply.code, text },
    attempt,
    atGreeting: last!.error.atGreeting,
  };
}

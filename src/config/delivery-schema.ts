/**
 * Configuration of outbound delivery (`delivery`) and of the DNS resolver it uses (`dns`), kept
 * apart from schema.ts so that the delivery engine's many knobs live beside each other. Every field
 * has a doc comment and a default; the defaults deliver straight to each domain's MX on port 25
 * with opportunistic STARTTLS, like an unconfigured Postfix.
 *
 * Security: route passwords are operator secrets; they are only ever sent to the configured relay
 * after TLS unless the route says `security: none` on purpose.
 */
import { isIP } from "node:net";
import { z } from "zod";

const port = z.number().int().min(1).max(65535);
const ms = z.number().int().min(0);
const positive = z.number().int().positive();

/** none: never STARTTLS; opportunistic: STARTTLS when offered, any certificate, plaintext fallback;
 *  required: TLS or defer (any certificate); verify: TLS with a certificate valid for the MX name. */
export const tlsPolicy = z.enum(["none", "opportunistic", "required", "verify"]);
export type TlsPolicy = z.infer<typeof tlsPolicy>;

/** Domain patterns: "example.com", "*.example.com" (subdomains only) or "*" (everything). */
const domainPattern = z
  .string()
  .min(1)
  .refine((p) => p === "*" || /^(\*\.)?[^*\s@]+$/.test(p), {
    message: 'expected a domain, "*.domain" or "*"',
  })
  .transform((p) => p.toLowerCase());

const limitsOverride = {
  /** Most concurrent connections to this destination (overrides delivery.maxConnectionsPerDestination). */
  maxConnections: positive.optional(),
  /** Most messages sent over one connection before it is closed (overrides the default). */
  maxMessagesPerConnection: positive.optional(),
  /** Messages per minute to this destination, 0 = no limit (overrides delivery.maxMessagesPerMinute). */
  maxMessagesPerMinute: z.number().int().min(0).optional(),
  /** TLS policy for this destination (overrides delivery.tlsPolicy). */
  tlsPolicy: tlsPolicy.optional(),
};

const route = z.discriminatedUnion("transport", [
  z.strictObject({
    /** Recipient domains this route applies to: exact, "*.example.com" or "*". */
    match: domainPattern,
    /** Deliver directly to the recipient domain's MX hosts. */
    transport: z.literal("mx"),
    /** Port on the MX hosts (overrides delivery.port). */
    port: port.optional(),
    ...limitsOverride,
  }),
  z.strictObject({
    match: domainPattern,
    /** Hand everything to an upstream smart host (SendGrid, SES, a corporate relay). */
    transport: z.literal("relay"),
    /** Host name or IP address of the relay. */
    host: z.string().min(1),
    /** Port of the relay. */
    port: port.default(587),
    /** starttls: STARTTLS after EHLO (587); tls: implicit TLS (465); none: plaintext. */
    security: z.enum(["starttls", "tls", "none"]).default("starttls"),
    /** Optional SMTP AUTH credentials for the relay. */
    auth: z.strictObject({ user: z.string().min(1), pass: z.string() }).optional(),
    ...limitsOverride,
  }),
]);
export type RouteConfig = z.infer<typeof route>;

/** MX host patterns: "*.google.com" (any host under google.com) or one exact host name. */
const mxPattern = z
  .string()
  .min(1)
  .refine((p) => /^(\*\.)?[^*\s@]+$/.test(p), { message: 'expected a host name or "*.domain"' })
  .transform((p) => p.toLowerCase().replace(/\.$/, ""));

/**
 * A mail provider by its MX hosts (issue 11): every recipient domain whose MX hosts match shares
 * one destination, so these limits hold for the provider as a whole (the thousands of Google
 * Workspace domains share Google's connections), like KumoMTA's provider rules.
 */
const provider = z.strictObject({
  /** Name in logs, events and `petrel queue list` ("google"). */
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]*$/i, { message: "expected a short name (letters, digits, . _ -)" }),
  /** MX host patterns; a domain matches when its most preferred matching MX host does. */
  mx: z.array(mxPattern).min(1),
  /** Most concurrent connections to the provider (default: delivery.maxConnectionsPerDestination). */
  maxConnections: positive.optional(),
  /** Messages over one connection before it is closed (default: delivery.maxMessagesPerConnection). */
  maxMessagesPerConnection: positive.optional(),
  /** Messages per minute to the provider; 0 = no limit (default: delivery.maxMessagesPerMinute). */
  maxMessagesPerMinute: z.number().int().min(0).optional(),
});
export type ProviderConfig = z.infer<typeof provider>;

/**
 * Shipped provider rules (delivery.defaultProviders). Mailbox providers publish almost no numbers
 * for mail *into* their MX hosts; these follow the rules KumoMTA ships in
 * assets/policy-extras/shaping.toml (each from the provider's page cited there). Where nothing is
 * published the number is ours and conservative, and says so.
 */
export const DEFAULT_PROVIDERS: readonly ProviderConfig[] = [
  // Gmail and Google Workspace share MX hosts (KumoMTA shaping.toml, citing
  // https://support.google.com/mail/answer/81126): 5 connections, 50 messages per connection.
  // Google publishes no message rate: 600/min is our conservative choice.
  {
    name: "google",
    mx: ["*.google.com", "*.googlemail.com"],
    maxConnections: 5,
    maxMessagesPerConnection: 50,
    maxMessagesPerMinute: 600,
  },
  // Microsoft consumer (Outlook.com/Hotmail) and Microsoft 365 are separate edge groups (KumoMTA
  // shaping.toml, citing https://sendersupport.olc.protection.outlook.com/pm/Policies): 5
  // connections, 50 per connection each. No published rate: 600/min is our conservative choice.
  {
    name: "outlook",
    mx: ["*.olc.protection.outlook.com"],
    maxConnections: 5,
    maxMessagesPerConnection: 50,
    maxMessagesPerMinute: 600,
  },
  {
    name: "office365",
    mx: ["*.mail.protection.outlook.com", "*.mx.microsoft"],
    maxConnections: 5,
    maxMessagesPerConnection: 50,
    maxMessagesPerMinute: 600,
  },
  // Yahoo/AOL: 20 messages per connection, given by Yahoo to KumoMTA (shaping.toml, "provided by
  // Yahoo! directly", https://senders.yahooinc.com/best-practices). Yahoo publishes no connection
  // count or rate: 5 connections and 300/min are our conservative choice ([TSS04] replies throttle
  // further, delivery.throttle).
  {
    name: "yahoo",
    mx: ["*.yahoodns.net"],
    maxConnections: 5,
    maxMessagesPerConnection: 20,
    maxMessagesPerMinute: 300,
  },
  // Apple iCloud: 10 connections, 5 messages per connection (KumoMTA shaping.toml, citing
  // https://support.apple.com/en-us/102322). No published rate: 300/min is our conservative choice.
  {
    name: "apple",
    mx: ["*.icloud.com"],
    maxConnections: 10,
    maxMessagesPerConnection: 5,
    maxMessagesPerMinute: 300,
  },
  // Comcast: 25 connections, 1,000 messages per connection (KumoMTA shaping.toml, "provided
  // directly by Comcast", https://spa.xfinity.com/postmaster). No published rate: none set.
  { name: "comcast", mx: ["*.comcast.net"], maxConnections: 25, maxMessagesPerConnection: 1000 },
  // Orange: 3 connections (KumoMTA shaping.toml, citing https://messagerie.orange.fr/postmaster.html).
  // No published per-connection count or rate: 20 per connection, 120/min are our conservative choice.
  {
    name: "orange",
    mx: ["*.orange.fr"],
    maxConnections: 3,
    maxMessagesPerConnection: 20,
    maxMessagesPerMinute: 120,
  },
];

/**
 * Adaptive throttling (issue 11): a reply classed `reputation` (Yahoo's "[TSS04] … temporarily
 * deferred", Microsoft's "4.7.650 … IP reputation", Gmail's "4.7.28 … rate limited") lowers that
 * destination's rate and connections at once; clean deliveries bring them back step by step.
 */
const throttle = z
  .strictObject({
    /** Adapt to throttle replies at all. */
    enabled: z.boolean().default(true),
    /** A throttle reply multiplies the rate and the connections by this. */
    factor: z.number().gt(0).lt(1).default(0.5),
    /** Floor of the lowered rate, messages per minute. */
    minMessagesPerMinute: positive.default(1),
    /** Floor of the lowered connections. */
    minConnections: positive.default(1),
    /** No step back up sooner than this after a throttle reply (KumoMTA's automation holds 90 min). */
    holdMs: ms.default(600_000),
    /** Clean deliveries (since the last change) before each step back up. */
    recoverAfter: positive.default(50),
    /** Each step up multiplies the rate and connections by this, until the configured limits. */
    recoverFactor: z.number().gt(1).default(2),
    /** Throttle replies within this long of a lowering do not lower again (they were sent at the old rate). */
    settleMs: ms.default(30_000),
  })
  .prefault({});

const source = z.strictObject({
  /** Local IP address to connect from (must be configured on this host). */
  address: z.string().refine((a) => isIP(a) !== 0, { message: "expected an IP address" }),
  /** Name sent in EHLO from this address (should match its PTR record); default: hostname. */
  ehloName: z.string().min(1).optional(),
});

export const deliverySchema = z
  .strictObject({
    /** Run delivery workers in `petrel serve`. Off = accept and queue only. */
    enabled: z.boolean().default(true),
    /**
     * Run delivery on its own worker thread with its own store connection, so accepting and
     * delivering do not take turns on one event loop (bench:relay: ~1,740 vs ~1,300 msg/s end to
     * end on 2 cores). false = in-process: a little less latency in queue, one core.
     */
    thread: z.boolean().default(true),
    /** TCP port of MX hosts (25; tests point this at a loopback port, like KumoMTA's smtp_port). */
    port: port.default(25),
    /**
     * Port per MX address, overriding `port` (and a route's port) for that address only: tests
     * run several MX hosts on loopback addresses, each on the ephemeral port it bound. {} = none.
     */
    mxPorts: z
      .record(
        z.string().refine((a) => isIP(a) !== 0, { message: "expected an IP address" }),
        port,
      )
      .default({}),
    /** Connect to IPv4 addresses only (for senders without IPv6 PTR records). */
    forceIpv4: z.boolean().default(false),
    /** Default TLS policy towards MX hosts. */
    tlsPolicy: tlsPolicy.default("opportunistic"),
    /** Extra CA certificates (PEM file) trusted for `verify`, beside the system's; "" = none. */
    tlsCaFile: z.string().default(""),
    /** Concurrent connections in total, over all destinations. */
    maxConnections: positive.default(200),
    /** Concurrent connections to one destination (an MX host set, a provider, or a relay). */
    maxConnectionsPerDestination: positive.default(10),
    /** Messages sent over one connection before it is closed and a new one opened. */
    maxMessagesPerConnection: positive.default(100),
    /** Messages per minute to one destination; 0 = no limit (providers set their own). */
    maxMessagesPerMinute: z.number().int().min(0).default(0),
    /**
     * Provider rules by MX host (checked before the shipped ones): destinations whose MX hosts
     * match share one set of connections and limits. Without a match, domains with the same MX
     * host set share a destination.
     */
    providers: z.array(provider).default([]),
    /** Also apply the shipped rules for big providers (Google, Microsoft, Yahoo, Apple …). */
    defaultProviders: z.boolean().default(true),
    throttle,
    /** Recipients of one message in one SMTP transaction (RFC 5321 §4.5.3.1.8 asks servers for ≥ 100). */
    maxRecipientsPerTransaction: positive.default(100),
    /** Close a connection that had nothing to send for this long. */
    idleTimeoutMs: ms.default(5_000),
    /** TCP connect timeout per address. */
    connectTimeoutMs: positive.default(30_000),
    /** Wait for the 220 greeting (RFC 5321 §4.5.3.2.1 suggests 5 minutes; we prefer to move on). */
    greetingTimeoutMs: positive.default(60_000),
    /** Inactivity timeout during a session (RFC 5321 §4.5.3.2: 5 minutes per command). */
    commandTimeoutMs: positive.default(300_000),
    /** MX addresses tried in one attempt before deferring (Postfix's smtp_mx_address_limit). */
    maxAddressesPerAttempt: positive.default(5),
    /** How long a claimed recipient is leased; renewed while work is pending, due again if not. */
    leaseMs: positive.default(120_000),
    /**
     * Cluster (PostgreSQL store, issue 8): how long a connection slot of a destination is leased
     * (renewed every quarter of it while the connection is open). A dead node's slots free
     * themselves within this time; a node that cannot renew stops sending on its connections
     * before it runs out. docs/cluster.md.
     */
    slotLeaseMs: positive.min(1000).default(15_000),
    /** Cluster: how long a destination whose slots are all held by other nodes waits before asking again. */
    slotRetryMs: positive.default(250),
    /** How often an idle worker looks for due mail (a cheap indexed read while nothing is due). */
    pollIntervalMs: positive.default(25),
    /**
     * Least time between the starts of two claims while mail keeps arriving (0 = claim at every
     * wake-up). A wake-up within it waits for its end, so one claim takes what several accept
     * commits made due: fewer, larger claims, content reads and outcome commits. The first mail
     * after a quiet spell is claimed at once; the cost is at most this much more time in queue.
     * bench:relay on PostgreSQL, 5,000 messages: 876-912 -> 1,004-1,040 msg/s end to end, CPU
     * per message Petrel 1.2 -> 1.0 ms, PostgreSQL 0.52 -> 0.40 ms (claims were ~6 recipients:
     * one per accept commit).
     */
    claimGapMs: z.number().int().min(0).max(1000).default(20),
    /**
     * PostgreSQL store (which wakes nodes with NOTIFY as mail becomes due): claims that find
     * nothing space out, doubling from pollIntervalMs up to this. An idle node made 39 claims a
     * second (6.3% of a core, against 2.6% on SQLite); retries coming due and a dead node's
     * expired leases are found at most this much later.
     */
    idlePollMaxMs: z.number().int().positive().max(10_000).default(500),
    /** Most recipients held in memory (claimed, waiting or being delivered) at once. */
    maxInFlight: positive.default(5_000),
    /** Retry delays after each deferral; the last repeats until the message expires. */
    retrySchedule: z
      .array(positive)
      .min(1)
      .default([60_000, 300_000, 900_000, 1_800_000, 3_600_000, 7_200_000]),
    /** Random spread of each retry delay, as a fraction (0.1 = ±10%), so retries do not bunch up. */
    retryJitter: z.number().min(0).max(1).default(0.1),
    /** Consecutive connection-level failures (refused, timeout, 421) before a destination as a whole waits. */
    destinationFailureThreshold: positive.default(3),
    /** Source addresses used round-robin (an egress pool); empty = the system's choice. */
    sources: z.array(source).default([]),
    /** Routes by recipient domain; the most specific match wins; default is direct MX delivery. */
    routes: z.array(route).default([]),
  })
  .prefault({});

export const dnsSchema = z
  .strictObject({
    /** Name servers ("127.0.0.1:5353", "[::1]:53"); empty = the system's (/etc/resolv.conf). */
    servers: z.array(z.string().min(1)).default([]),
    /** Wait for one reply from one server. */
    timeoutMs: positive.default(2_000),
    /** Rounds over the server list before a lookup is a temporary failure. */
    tries: positive.default(2),
  })
  .prefault({});

export type DeliveryConfig = z.infer<typeof deliverySchema>;
export type DnsConfig = z.infer<typeof dnsSchema>;

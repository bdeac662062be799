/**
 * The one configuration schema. Every field has a doc comment and a default, so an empty
 * file (or none) runs Petrel on the embedded defaults. Sources, later winning:
 * defaults < YAML file (--config / PETREL_CONFIG) < PETREL_* environment < command-line flags.
 * Unknown keys are errors (strict objects): a typo must fail at start, not be ignored.
 */
import { BlockList, isIP } from "node:net";
import { availableParallelism, hostname, totalmem } from "node:os";
import { z } from "zod";
import { bouncesSchema, suppressionSchema } from "./bounces-schema.js";
import { deliverySchema, dnsSchema } from "./delivery-schema.js";
import { dkimSchema, domainsSchema, sendingSchema } from "./domains-schema.js";
import { eventsSchema } from "./events-schema.js";
import { httpSchema } from "./http-schema.js";

const port = z.number().int().min(0).max(65535);

const cidr = z
  .string()
  .refine(isCidr, { message: "expected an IPv4 or IPv6 network like 10.0.0.0/8 or ::1/128" });

function isCidr(value: string): boolean {
  const [address, bits, ...rest] = value.split("/");
  if (rest.length > 0 || address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return Number.isInteger(n) && n >= 0 && n <= (family === 4 ? 32 : 128) && /^\d+$/.test(bits);
}

const listener = (defaultPort: number, defaultEnabled: boolean) =>
  z
    .strictObject({
      /** Whether this listener is started. */
      enabled: z.boolean().default(defaultEnabled),
      /** TCP port to listen on. */
      port: port.default(defaultPort),
      /** Expect a PROXY protocol v1/v2 header first, from smtp.proxyProtocol.trustedNetworks only (behind HAProxy). */
      proxyProtocol: z.boolean().default(false),
    })
    .prefault({});

export const configSchema = z
  .strictObject({
    /** Directory for the database, the generated TLS certificate and other state. */
    dataDir: z.string().min(1).default("./data"),
    /** Name used in the SMTP greeting, EHLO replies, Received headers and Message-IDs. */
    hostname: z.string().min(1).default(hostname()),
    log: z
      .strictObject({
        /** pino level: trace, debug, info, warn, error, fatal, silent. */
        level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
        /** "auto" is human-readable on a terminal and JSON otherwise. */
        format: z.enum(["auto", "json", "pretty"]).default("auto"),
      })
      .prefault({}),
    smtp: z
      .strictObject({
        /** Address the submission listeners bind to. */
        host: z.string().default("0.0.0.0"),
        /** Submission with STARTTLS (RFC 6409). */
        submission: listener(587, true),
        /** Submission with implicit TLS (RFC 8314). */
        submissions: listener(465, true),
        /** Extra STARTTLS listener for networks where 587 is blocked (SendGrid's 2525). */
        alternate: listener(2525, false),
        tls: z
          .strictObject({
            /** PEM certificate chain; empty = a self-signed one generated into dataDir/tls. */
            certFile: z.string().default(""),
            /** PEM private key for certFile. */
            keyFile: z.string().default(""),
            /** Lowest TLS version accepted. */
            minVersion: z.enum(["TLSv1.2", "TLSv1.3"]).default("TLSv1.2"),
          })
          .prefault({}),
        limits: z
          .strictObject({
            /** Largest message accepted, in bytes (advertised in EHLO SIZE). */
            maxMessageSize: z
              .number()
              .int()
              .positive()
              .default(30 * 1024 * 1024),
            /** Recipients per message. */
            maxRecipients: z.number().int().positive().default(1000),
            /** Concurrent connections in total. */
            maxConnections: z.number().int().positive().default(2000),
            /** Concurrent connections from one IP address. */
            maxConnectionsPerIp: z.number().int().positive().default(200),
            /** Close a connection that sends nothing for this long (RFC 5321 §4.5.3.2 asks for ≥ 5 min). */
            idleTimeoutMs: z.number().int().positive().default(300_000),
            /** Close any connection after this long, whatever it does (slowloris). */
            sessionTimeoutMs: z.number().int().positive().default(1_800_000),
            /** Close after this many invalid commands in a row. */
            maxInvalidCommands: z.number().int().positive().default(10),
            /** Longest text line in a message, in octets without CRLF (RFC 5322 §2.1.1); 0 = no limit. */
            maxLineLength: z.number().int().min(0).default(998),
            /**
             * A message with a line over maxLineLength: `reencode` fixes it at accept time (the
             * part re-encoded as quoted-printable or base64, a header folded at whitespace; a header
             * line that cannot be folded is still refused), `reject` refuses it with 550 5.6.0.
             */
            longLines: z.enum(["reencode", "reject"]).default("reencode"),
            /** Largest header section of a submitted message, in bytes; over it: 552 5.3.4 (Exim's header_maxsize). */
            maxHeaderBytes: z
              .number()
              .int()
              .positive()
              .default(1024 * 1024),
            /** Header fields in a submitted message; over it: 552 5.3.4. */
            maxHeaderFields: z.number().int().positive().default(1000),
            /** Addresses in one From or Sender field; over it: 550 5.6.0. */
            maxAddressesPerField: z.number().int().positive().default(1000),
            /**
             * NUL bytes in DATA (RFC 5322 §2.1 and RFC 5321 allow none without BINARYMIME):
             * "reject" answers 550 5.6.0; "remove" deletes them. Either way none reaches an MX
             * (a receiver that drops NULs could otherwise see <CR><LF><NUL>.<CR><LF> end the DATA).
             */
            nulBytes: z.enum(["reject", "remove"]).default("reject"),
            /** A TLS handshake (or PROXY header) not finished in this long: the connection is dropped. */
            tlsHandshakeTimeoutMs: z.number().int().positive().default(10_000),
            /** Bytes of message content held in memory across all sessions; beyond it DATA gets 452 4.3.1 (default: a quarter of RAM, at most 1 GB). */
            maxBufferedBytes: z
              .number()
              .int()
              .positive()
              .default(Math.min(1024 ** 3, Math.floor(totalmem() / 4))),
          })
          .prefault({}),
        proxyProtocol: z
          .strictObject({
            /** Balancers allowed to send a PROXY header (CIDRs); a header from anywhere else, or none on a listener that expects one, closes the connection. */
            trustedNetworks: z.array(cidr).default([]),
          })
          .prefault({}),
        /** Let AUTH work without TLS. Only for testing: the key would cross the network in clear. */
        allowInsecureAuth: z.boolean().default(false),
        /** How long SIGTERM waits for transactions in DATA before answering 421 4.3.2. */
        shutdownGraceMs: z.number().int().min(0).default(30_000),
        /**
         * Processes that run the SMTP sessions (TLS, AUTH, DATA) of the submission listeners,
         * each on its own event loop; the main process accepts, applies the caps and commits.
         * 1 = everything in the main process; 0 = one per available core. Default 1: measured on
         * a 2-core host, see docs/architecture.md §1a.
         */
        workers: z.number().int().min(0).max(64).default(1),
      })
      .prefault({}),
    auth: z
      .strictObject({
        /** Networks that may submit without AUTH, each acting as an account (Postfix's mynetworks). */
        trustedNetworks: z
          .array(
            z.strictObject({
              /** CIDR, e.g. 10.1.0.0/16 or 127.0.0.1/32. */
              network: cidr,
              /** The account whose senders and limits apply to mail from this network. */
              account: z.string().min(1).default("default"),
            }),
          )
          .default([]),
        /** Failed AUTH attempts from one IP within failureWindowMs before it is locked out. */
        maxFailures: z.number().int().positive().default(5),
        /** Window for counting failed AUTH attempts. */
        failureWindowMs: z.number().int().positive().default(300_000),
        /** How long an IP that reached maxFailures is refused with 421 4.7.0. */
        lockoutMs: z.number().int().positive().default(300_000),
      })
      .prefault({}),
    queue: z
      .strictObject({
        /** How long a message may stay queued before it expires. */
        maxLifetimeMs: z
          .number()
          .int()
          .positive()
          .default(72 * 3600_000),
        /** Most messages committed in one group commit. */
        maxBatch: z.number().int().positive().default(512),
        /**
         * Under concurrent submissions, how long a group commit of fewer than 8 messages waits
         * for more to join it (one fsync and one commit round trip for more messages; a lone
         * client never waits). 0: commit at once.
         */
        groupCommitDelayMs: z.number().min(0).max(50).default(1),
        /**
         * Scheduled send (send_at, X-Petrel-Send-At): how far ahead a message may be scheduled.
         * Its lifetime (maxLifetimeMs) counts from its send time.
         */
        maxScheduleAheadMs: z
          .number()
          .int()
          .positive()
          .default(72 * 3600_000),
      })
      .prefault({}),
    /** Outbound delivery: routes, TLS policy, limits, retries (src/config/delivery-schema.ts). */
    delivery: deliverySchema,
    /** The DNS resolver used for MX/A/AAAA lookups (src/config/delivery-schema.ts). */
    dns: dnsSchema,
    /** Sending rules: refuse unverified sender domains (src/config/domains-schema.ts). */
    sending: sendingSchema,
    /** DKIM keys for sender domains: Ed25519 beside RSA, selector names (src/config/domains-schema.ts). */
    dkim: dkimSchema,
    /** Sender domains' DNS records (return path, SPF, DMARC) and their re-check (src/config/domains-schema.ts). */
    domains: domainsSchema,
    /** Event log retention, sender metadata limits, webhook batching and retries (src/config/events-schema.ts). */
    events: eventsSchema,
    /** VERP return paths, the bounce listener, extra classification rules, DSNs to senders (src/config/bounces-schema.ts). */
    bounces: bouncesSchema,
    /** Mail to suppressed recipients: dropped (default) or refused at RCPT (src/config/bounces-schema.ts). */
    suppression: suppressionSchema,
    /** The HTTP API, /metrics and health checks (src/config/http-schema.ts). */
    http: httpSchema,
    store: z
      .strictObject({
        /**
         * Storage backend. "sqlite" is embedded: one file in dataDir, one node. "postgres" is
         * for a cluster: every node points at the same database (docs/cluster.md).
         */
        driver: z.enum(["sqlite", "postgres"]).default("sqlite"),
        sqlite: z
          .strictObject({
            /** Database file; relative paths are inside dataDir. */
            file: z.string().default("petrel.db"),
          })
          .prefault({}),
        postgres: z
          .strictObject({
            /**
             * Connection URL (libpq form: postgres://user:password@host:port/database?sslmode=…).
             * A secret when it holds a password: prefer PETREL_STORE__POSTGRES__URL or a
             * password in ~/.pgpass over the config file.
             */
            url: z.string().default("postgres://postgres@127.0.0.1:5432/petrel"),
            /** Connections per process (`petrel serve` opens one pool per thread that uses the store). */
            poolSize: z.number().int().min(1).max(1000).default(10),
            /** A statement running longer than this is cancelled (0 = no limit). */
            statementTimeoutMs: z.number().int().min(0).default(30_000),
            /** How long a query waits for a free pooled connection before failing. */
            connectTimeoutMs: z.number().int().min(100).default(10_000),
          })
          .prefault({}),
      })
      .prefault({}),
    /** This node among the others on one store (issue 8 item 5: `petrel nodes`, readyz, drain). */
    cluster: z
      .strictObject({
        /** The name `petrel nodes` shows for this node; "" = the machine's host name. */
        nodeName: z.string().default(""),
        /** How often the node writes its heartbeat (and so checks that the store takes writes). */
        heartbeatMs: z.number().int().min(100).default(5_000),
        /** A node whose heartbeat is older than this is shown stale (presumed dead). */
        staleAfterMs: z.number().int().min(100).default(20_000),
        /** While the store is unreachable, how often the node tries it again. */
        retryMs: z.number().int().min(50).default(1_000),
      })
      .prefault({}),
  })
  .prefault({});

export type PetrelConfig = z.infer<typeof configSchema>;

/** Compiled form of auth.trustedNetworks for fast per-connection lookups. */
export interface TrustedNetwork {
  readonly network: string;
  readonly account: string;
  readonly list: BlockList;
}

export function compileTrustedNetworks(config: PetrelConfig): TrustedNetwork[] {
  return config.auth.trustedNetworks.map(({ network, account }) => {
    const [address, bits] = network.split("/") as [string, string | undefined];
    const type = isIP(address) === 6 ? "ipv6" : "ipv4";
    const list = new BlockList();
    list.addSubnet(address, bits === undefined ? (type === "ipv4" ? 32 : 128) : Number(bits), type);
    return { network, account, list };
  });
}

/** A matcher for a list of CIDRs (smtp.proxyProtocol.trustedNetworks). */
export function compileNetworks(networks: readonly string[]): (ip: string) => boolean {
  const list = new BlockList();
  for (const network of networks) {
    const [address, bits] = network.split("/") as [string, string | undefined];
    const type = isIP(address) === 6 ? "ipv6" : "ipv4";
    list.addSubnet(address, bits === undefined ? (type === "ipv4" ? 32 : 128) : Number(bits), type);
  }
  return (ip) => list.check(ip, ip.includes(":") ? "ipv6" : "ipv4");
}

/** Paths whose values are secrets, masked by `petrel config`; `*` stands for every array entry. */
export const SECRET_PATHS: readonly string[] = ["delivery.routes.*.auth.pass"];

/** smtp.workers resolved: 0 means one session process per core the host makes available. */
export function smtpWorkerCount(config: Pick<PetrelConfig, "smtp">): number {
  return config.smtp.workers === 0 ? availableParallelism() : config.smtp.workers;
}

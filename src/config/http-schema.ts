/**
 * The HTTP API (issue 9): where it listens, TLS, and who may read /metrics.
 */
import { isIP } from "node:net";
import { z } from "zod";

const network = z.string().refine(
  (value) => {
    const [address, bits, ...rest] = value.split("/");
    if (rest.length > 0 || address === undefined || isIP(address) === 0) return false;
    if (bits === undefined) return true;
    const n = Number(bits);
    return /^\d+$/.test(bits) && n >= 0 && n <= (isIP(address) === 4 ? 32 : 128);
  },
  { message: "expected an IPv4 or IPv6 network like 10.0.0.0/8 or ::1/128" },
);

export const httpSchema = z
  .strictObject({
    /** Whether `petrel serve` runs the HTTP API (and /metrics, /healthz, /readyz). */
    enabled: z.boolean().default(true),
    /** Address to bind; beyond loopback without TLS a warning is logged at start (keys would cross the network in clear). */
    host: z.string().default("127.0.0.1"),
    /** TCP port (env PETREL_HTTP__PORT). */
    port: z.number().int().min(0).max(65535).default(8025),
    tls: z
      .strictObject({
        /** Serve HTTPS, with http.tls.certFile/keyFile or else the SMTP certificate. */
        enabled: z.boolean().default(false),
        /** PEM certificate chain; empty = the SMTP certificate (smtp.tls or the self-signed one). */
        certFile: z.string().default(""),
        /** PEM private key for certFile. */
        keyFile: z.string().default(""),
      })
      .prefault({}),
    /** Networks that may read /metrics (CIDR); empty = anyone who can reach the port. */
    metricsNetworks: z.array(network).default([]),
    /** Serve the web dashboard at / (sign in with an API key with admin or a read scope). */
    dashboard: z.boolean().default(true),
    /** Most messages in one POST /v1/messages/batch. */
    maxBatch: z.number().int().positive().max(500).default(500),
  })
  .prefault({});

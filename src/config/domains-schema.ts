/**
 * Configuration of sender domains: the sending rule (`sending`), DKIM key choices (`dkim`) and
 * what goes into the DNS records Petrel asks operators to publish (`domains`). Kept apart from
 * schema.ts so the sender-domain knobs live beside each other; schema.ts points here.
 *
 * The resolver used to verify records is the shared `dns` section (delivery-schema.ts), and the
 * SPF addresses default to the delivery engine's egress pool (`delivery.sources`), so nothing is
 * configured twice.
 * Security: no secrets here — DKIM private keys live in the store, never in configuration.
 */
import { isIP } from "node:net";
import { z } from "zod";

/** An IPv4/IPv6 address or CIDR range, as it goes into an SPF ip4:/ip6: mechanism. */
const ipOrRange = z.string().refine(
  (value) => {
    const [address = "", bits, ...rest] = value.split("/");
    const family = isIP(address);
    if (family === 0 || rest.length > 0) return false;
    return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
  },
  { message: "expected an IP address or CIDR range like 203.0.113.7 or 2001:db8::/48" },
);

export const sendingSchema = z
  .strictObject({
    /**
     * Refuse mail from a sender domain that was added but is not verified yet (`550 5.7.1` at
     * MAIL FROM, and for From/Sender header addresses at the end of DATA). Single senders
     * (`petrel senders add`) are not affected: they work without DNS, unaligned.
     */
    requireVerifiedDomains: z.boolean().default(true),
  })
  .prefault({});

export const dkimSchema = z
  .strictObject({
    /**
     * Also give new domains (and rotations) an Ed25519 key (RFC 8463) and sign with both it and
     * the RSA 2048 key. Not every receiver verifies Ed25519 yet, so RSA always stays.
     */
    ed25519: z.boolean().default(false),
    /** Selectors are named <prefix><n>: petrel1 for the first key, petrel2 after a rotation. */
    selectorPrefix: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,30}$/, { message: "expected a lower-case DNS label start, e.g. petrel" })
      .default("petrel"),
  })
  .prefault({});

export const domainsSchema = z
  .strictObject({
    returnPath: z
      .strictObject({
        /** Label(s) under each sender domain for the return path: bounces.your-app.com. */
        subdomain: z
          .string()
          .regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/, {
            message: "expected one or more DNS labels, e.g. bounces",
          })
          .default("bounces"),
        /** Host that receives bounces (the return-path MX); "" = `hostname`. */
        inboundHost: z.string().default(""),
      })
      .prefault({}),
    spf: z
      .strictObject({
        /** Addresses Petrel sends from, for ip4:/ip6: mechanisms; empty = `delivery.sources`. */
        ips: z.array(ipOrRange).default([]),
        /**
         * An SPF include, e.g. "_spf.relay.example.com". With no ips and no sources either, the
         * records use include:<hostname>, and the host name must then publish its own SPF
         * record listing Petrel's outbound addresses (e.g. "v=spf1 a -all").
         */
        include: z.string().default(""),
      })
      .prefault({}),
    /** Mailbox for DMARC aggregate reports in the suggested record; "" = dmarc-reports@<domain>. */
    dmarcReports: z.string().default(""),
    /** How often `serve` re-checks the DNS records of verified domains; 0 = never. */
    recheckIntervalMs: z.number().int().min(0).default(86_400_000),
  })
  .prefault({});

export type SendingConfig = z.infer<typeof sendingSchema>;
export type DkimConfig = z.infer<typeof dkimSchema>;
export type DomainsConfig = z.infer<typeof domainsSchema>;

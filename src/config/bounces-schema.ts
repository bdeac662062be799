/**
 * Configuration of bounce handling (issue 5): the VERP return path, the inbound bounce listener,
 * the operator's own classification rules, DSNs to the sender (`bounces`), and what happens to
 * mail for a suppressed recipient (`suppression`). schema.ts points here.
 *
 * The return path's domain comes from `domains.returnPath.subdomain` (the records `petrel domains`
 * asks operators to publish), so it is configured once.
 * Security: no secrets here — the VERP key is generated into the store on first start.
 */
import { z } from "zod";
import { operatorRuleError } from "../bounces/classify.js";
import { BOUNCE_CLASSES, type BounceClass } from "../bounces/rules.js";

const port = z.number().int().min(0).max(65535);

export const bouncesSchema = z
  .strictObject({
    /**
     * VERP: for a verified sender domain, each recipient's envelope sender becomes
     * b+<token>@<domains.returnPath.subdomain>.<From domain>, so an asynchronous bounce names its
     * message and recipient. Each recipient then gets its own SMTP transaction (as Postfix does
     * with VERP). Single senders always keep their own address (no bounce domain to receive at).
     */
    verp: z.boolean().default(true),
    listener: z
      .strictObject({
        /**
         * Receive bounces and complaints for the return paths (the MX of bounces.<domain> points
         * here). It accepts mail only for valid tokens, never relays, and offers no AUTH.
         */
        enabled: z.boolean().default(true),
        /** Address to bind; "" = smtp.host. */
        host: z.string().default(""),
        /** Port 25 is where other MTAs deliver; if it cannot be bound, `serve` says so and runs without it. */
        port: port.default(25),
        /** Largest report accepted, in bytes (a DSN carries at most the returned message). */
        maxMessageSize: z
          .number()
          .int()
          .positive()
          .default(10 * 1024 * 1024),
        /** Concurrent connections in total, and from one IP address. */
        maxConnections: z.number().int().positive().default(200),
        maxConnectionsPerIp: z.number().int().positive().default(20),
      })
      .prefault({}),
    /**
     * Extra classification rules, checked before the built-in table (src/bounces/rules.ts):
     * `match` is an enhanced code ("5.7.1", "x.2.x"), a basic code ("554", "5xx") or a regular
     * expression tested case-insensitively against the reply text.
     */
    rules: z
      .array(
        z.strictObject({
          match: z
            .string()
            .min(1)
            .superRefine((value, ctx) => {
              const error = operatorRuleError(value);
              if (error)
                ctx.addIssue({
                  code: "custom",
                  message: `not a status code or a valid regular expression: ${error}`,
                });
            }),
          class: z.enum(BOUNCE_CLASSES as unknown as readonly [BounceClass, ...BounceClass[]]),
        }),
      )
      .default([]),
    /**
     * Also send an RFC 3464 delivery status notification to the message's envelope sender when a
     * recipient bounces or expires (queued like any message, from the null sender <>). Off by
     * default: events and webhooks are the primary channel. Never sent for mail from <>.
     */
    notifySender: z.boolean().default(false),
  })
  .prefault({});

export const suppressionSchema = z
  .strictObject({
    /**
     * What happens to mail for a suppressed recipient: "drop" accepts it and records it `dropped`
     * with reason `suppressed` (never attempted); "reject" refuses it at RCPT with
     * `550 5.1.1 Recipient is on the suppression list`, so the application learns at once.
     */
    mode: z.enum(["drop", "reject"]).default("drop"),
  })
  .prefault({});

export type BouncesConfig = z.infer<typeof bouncesSchema>;
export type SuppressionConfig = z.infer<typeof suppressionSchema>;

/**
 * Configuration of events and webhooks (issue 5): how long the event log is kept, the limits on
 * what senders attach (X-Petrel-Metadata, X-Petrel-Category), and how webhooks are batched,
 * retried and given up on. schema.ts points here (`events`).
 * Security: no secrets here — webhook signing secrets live in the store.
 */
import { z } from "zod";

const ms = z.number().int().min(0);

export const eventsSchema = z
  .strictObject({
    /**
     * Delete events older than this many days (checked hourly by `serve`); 0 = keep forever.
     * Events an active webhook has not been sent yet are kept whatever their age.
     */
    retentionDays: z.number().min(0).default(30),
    metadata: z
      .strictObject({
        /** Largest X-Petrel-Metadata value accepted (bytes); larger → 550 5.6.0. */
        maxBytes: z.number().int().positive().default(10_240),
        /** Most X-Petrel-Category values per message (each at most 100 characters). */
        maxCategories: z.number().int().positive().default(10),
      })
      .prefault({}),
    webhooks: z
      .strictObject({
        /** Run the webhook dispatcher in `petrel serve`. */
        enabled: z.boolean().default(true),
        /** Most events in one POST. */
        maxBatchEvents: z.number().int().min(1).max(1000).default(100),
        /**
         * Longest an event waits for its batch to fill: a batch is sent when it has
         * maxBatchEvents events or its oldest event is this old.
         */
        batchWindowMs: ms.default(1000),
        /** How often the dispatcher looks for new events and due endpoints. */
        pollIntervalMs: z.number().int().positive().default(50),
        /**
         * While polls find nothing to send (no endpoint, or every cursor at the newest event),
         * the interval doubles up to this; new events are then sent at most this much later,
         * against batchWindowMs (1 s) of batching anyway.
         */
        idlePollMaxMs: z.number().int().positive().default(1000),
        /** A POST without a response within this time counts as failed. */
        timeoutMs: z.number().int().positive().default(10_000),
        /**
         * Issue 8: one node at a time serves an endpoint, under a lease taken (and renewed before
         * each POST) for this long; raised to twice timeoutMs if lower, so a POST always ends
         * within its lease. A dead node's endpoints move to another node after at most this.
         */
        leaseMs: z.number().int().positive().default(30_000),
        /** Wait after the 1st, 2nd, … consecutive failure of an endpoint; the last entry repeats. */
        retrySchedule: z
          .array(z.number().int().positive())
          .min(1)
          .default([5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000]),
        /** Spread of each retry wait as a fraction (0.1 → ±10%). */
        retryJitter: z.number().min(0).max(1).default(0.1),
        /**
         * Let API keys add webhook URLs at loopback, link-local or private addresses (SSRF guard;
         * the CLI may always). For tests and closed networks.
         */
        allowPrivateTargets: z.boolean().default(false),
        /** An endpoint failing without a success for this long is disabled (72 h). */
        disableAfterMs: z
          .number()
          .int()
          .positive()
          .default(72 * 3600_000),
      })
      .prefault({}),
  })
  .prefault({});

export type EventsConfig = z.infer<typeof eventsSchema>;
export type WebhooksConfig = EventsConfig["webhooks"];

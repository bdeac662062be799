/**
 * GET /v1/stats: the key's account's events counted per hour or day (UTC), optionally for one
 * category or recipient domain. Needs `events.read`: the counts are the event log's, and a key
 * that may read the events may read their sums (the dashboard's overview signs in with it).
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { getStats, STATS_INTERVALS } from "../../services/stats.js";
import { accountOf, guarded, problemResponses, type RouteDeps, timeParam, typed } from "../common.js";

const counts = z.object({
  processed: z.number().int(),
  delivered: z.number().int(),
  deferred: z.number().int(),
  bounced: z.object({
    total: z.number().int(),
    hard: z.number().int(),
    soft: z.number().int(),
    classes: z.record(z.string(), z.number().int()).describe("per bounce class (invalid-recipient, …)"),
  }),
  dropped: z.object({
    total: z.number().int(),
    reasons: z.record(z.string(), z.number().int()).describe("per reason (suppressed, operator, …)"),
  }),
  expired: z.number().int(),
  spamreport: z.number().int(),
});

const statsResponse = z.object({
  interval: z.enum(STATS_INTERVALS as [string, ...string[]]),
  since: z.string().describe("the start of the range counted (RFC 3339)"),
  until: z.string().describe("the end of the range, exclusive (RFC 3339)"),
  category: z.string().nullable(),
  domain: z.string().nullable(),
  buckets: z
    .array(counts.extend({ start: z.string().describe("RFC 3339, UTC, a multiple of the interval") }))
    .describe(
      "every bucket of the range, oldest first, empty ones too; the first and last count only inside [since, until)",
    ),
  totals: counts,
});

export function registerStatsRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const r = typed(app);
  const read = guarded(deps, "events.read", ["stats"]);
  r.get(
    "/v1/stats",
    {
      ...read,
      schema: {
        ...read.schema,
        summary: "Event counts per hour or day: processed, delivered, deferred, bounced, dropped…",
        querystring: z.object({
          interval: z.enum(STATS_INTERVALS as [string, ...string[]]).default("hour"),
          since: timeParam.optional().describe("default: a day (hour) or 30 days (day) before until"),
          until: timeParam.optional().describe("exclusive; default now"),
          category: z.string().max(100).optional(),
          domain: z.string().max(253).optional().describe("recipient domain"),
        }),
        response: { 200: statsResponse, ...problemResponses },
      },
    },
    async (request) => {
      const q = request.query;
      return getStats(deps.ctx, {
        account: accountOf(request),
        interval: q.interval,
        ...(q.since === undefined ? {} : { since: q.since }),
        ...(q.until === undefined ? {} : { until: q.until }),
        ...(q.category === undefined ? {} : { category: q.category }),
        ...(q.domain === undefined ? {} : { domain: q.domain }),
      });
    },
  );
}

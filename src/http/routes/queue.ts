/**
 * POST /v1/queue/{action} (issue 9): a queue action — retry, hold, release, delete, cancel — on
 * every message of the key's account that has a recipient matching the filter body
 * (`{"domain": "example.com", "state": "held"}`: release everything held for example.com).
 * Needs `admin`, as the per-message queue actions do. Answers the counts.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { RECIPIENT_STATES } from "../../services/queue.js";
import { BULK_ACTIONS, bulkQueueAction } from "../../services/queue-bulk.js";
import { accountOf, guarded, problemResponses, type RouteDeps, typed } from "../common.js";

export function registerQueueRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const r = typed(app);
  const admin = guarded(deps, "admin", ["queue"]);
  r.post(
    "/v1/queue/:action",
    {
      ...admin,
      schema: {
        ...admin.schema,
        summary: "Retry, hold, release, delete or cancel every message with a recipient matching the filter",
        params: z.object({ action: z.enum(BULK_ACTIONS) }),
        body: z
          .strictObject({
            domain: z.string().max(253).optional().describe("a recipient at this domain"),
            state: z
              .enum(RECIPIENT_STATES as [string, ...string[]])
              .optional()
              .describe("a recipient in this state"),
          })
          .describe("at least one of domain and state; both: one recipient matching both"),
        response: {
          200: z.object({
            action: z.enum(BULK_ACTIONS),
            filter: z.object({ domain: z.string().nullable(), state: z.string().nullable() }),
            messages: z.number().int().describe("messages that matched"),
            recipients: z.number().int().describe("recipients the action changed"),
          }),
          ...problemResponses,
        },
      },
    },
    async (request) => bulkQueueAction(deps.ctx, request.params.action, request.body, accountOf(request)),
  );
}

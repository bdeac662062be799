/**
 * GET /v1/events: the account's event log, oldest first after a cursor (an event id; poll with
 * the last id seen, nothing is ever skipped), or the newest `limit` without one.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { cursorAt, eventFilter, listEvents } from "../../services/events.js";
import { accountOf, guarded, limitParam, type RouteDeps, timeParam, typed } from "../common.js";

export function registerEventRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const r = typed(app);
  const read = guarded(deps, "events.read", ["events"]);
  r.get(
    "/v1/events",
    {
      ...read,
      schema: {
        ...read.schema,
        summary: "Events after a cursor (oldest first), or the newest ones",
        querystring: z.object({
          type: z.string().max(200).optional().describe("comma-separated event types"),
          message: z.string().max(64).optional(),
          recipient: z.string().max(320).optional(),
          since: timeParam.optional(),
          cursor: z.string().max(64).optional().describe("the id of the last event seen"),
          limit: limitParam(1000, 100),
        }),
      },
    },
    async (request) => {
      const q = request.query;
      const filter = await eventFilter(deps.ctx, {
        account: accountOf(request),
        ...(q.message ? { message: q.message } : {}),
        ...(q.recipient ? { recipient: q.recipient } : {}),
        ...(q.type ? { types: q.type } : {}),
      });
      const after = q.cursor ?? (q.since === undefined ? undefined : cursorAt(q.since));
      const events = await listEvents(deps.ctx, {
        ...filter,
        limit: q.limit,
        ...(after === undefined ? { newest: true } : { afterId: after }),
      });
      return { events, next_cursor: events.at(-1)?.id ?? q.cursor ?? null };
    },
  );
}

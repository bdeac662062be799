/**
 * Reading messages and acting on them: GET /v1/messages (newest first, cursor), GET
 * /v1/messages/{id} (per-recipient attempts and explanation), GET /v1/messages/{id}/raw, and the
 * queue actions retry, hold, release, delete, and cancel (scheduled send: drops the recipients
 * not yet attempted; `mail.send` is enough, so the app that scheduled a message can take it back).
 * Another account's message is 404.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { getMessageView, searchMessages } from "../../services/messages.js";
import {
  cancelMessage,
  deleteMessage,
  holdMessage,
  messageContent,
  releaseMessage,
  retryMessages,
  SHOWN_STATES,
} from "../../services/queue.js";
import {
  accountOf,
  guarded,
  limitParam,
  problemResponses,
  type RouteDeps,
  timeParam,
  typed,
} from "../common.js";

const idParams = z.object({ id: z.string().min(1).max(64) });
const actionResult = z.object({ id: z.string().nullable(), recipients: z.number().int() });

export function registerMessageRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const r = typed(app);
  const read = guarded(deps, "messages.read", ["messages"]);
  const admin = guarded(deps, "admin", ["queue"]);

  r.get(
    "/v1/messages",
    {
      ...read,
      schema: {
        ...read.schema,
        summary: "Search messages, newest first",
        querystring: z.object({
          from: z.string().max(320).optional(),
          to: z.string().max(320).optional(),
          state: z.enum(SHOWN_STATES as [string, ...string[]]).optional(),
          category: z.string().max(100).optional(),
          since: timeParam.optional(),
          until: timeParam.optional(),
          limit: limitParam(500, 50),
          cursor: z.string().max(64).optional(),
        }),
      },
    },
    async (request) => {
      const q = request.query;
      const page = await searchMessages(deps.ctx, { account: accountOf(request), ...q });
      return { messages: page.messages, next_cursor: page.nextCursor };
    },
  );

  r.get(
    "/v1/messages/:id",
    {
      ...read,
      schema: {
        ...read.schema,
        summary: "One message: envelope, headers, and each recipient's attempts and explanation",
        params: idParams,
      },
    },
    async (request) => getMessageView(deps.ctx, request.params.id, accountOf(request)),
  );

  r.get(
    "/v1/messages/:id/raw",
    {
      ...read,
      schema: { ...read.schema, summary: "The stored (signed) message", params: idParams },
    },
    async (request, reply) => {
      const content = await messageContent(deps.ctx, request.params.id, accountOf(request));
      return reply.type("message/rfc822").send(content);
    },
  );

  for (const [action, fn, summary] of [
    ["retry", (id: string, account: string) => retryMessages(deps.ctx, { id }, account), "Make it due now"],
    [
      "hold",
      (id: string, account: string) => holdMessage(deps.ctx, id, account),
      "Hold its pending recipients",
    ],
    [
      "release",
      (id: string, account: string) => releaseMessage(deps.ctx, id, account),
      "Release held recipients",
    ],
    [
      "delete",
      (id: string, account: string) => deleteMessage(deps.ctx, id, account),
      "Drop every recipient not yet final",
    ],
  ] as const) {
    r.post(
      `/v1/messages/:id/${action}`,
      {
        ...admin,
        schema: {
          ...admin.schema,
          summary,
          params: idParams,
          response: { 200: actionResult, ...problemResponses },
        },
      },
      async (request) => fn(request.params.id, accountOf(request)),
    );
  }

  const send = guarded(deps, "mail.send", ["sending"]);
  r.post(
    "/v1/messages/:id/cancel",
    {
      ...send,
      schema: {
        ...send.schema,
        summary:
          "Cancel a (scheduled) message: every recipient not yet attempted is dropped (reason cancelled)",
        params: idParams,
        response: { 200: actionResult, ...problemResponses },
      },
    },
    async (request) => cancelMessage(deps.ctx, request.params.id, accountOf(request)),
  );
}

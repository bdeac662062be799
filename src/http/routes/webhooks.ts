/**
 * Webhook endpoints of the key's account, by id: add (the secret shown once), list, show,
 * deliveries, test, enable, remove.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { createResolver } from "../../dns/resolver.js";
import { PetrelError } from "../../errors.js";
import {
  addWebhook,
  enableWebhook,
  getWebhook,
  listDeliveries,
  listWebhooks,
  removeWebhook,
  replayWebhook,
  testWebhook,
} from "../../services/webhooks.js";
import { EVENT_TYPES } from "../../store/types.js";
import { accountOf, guarded, limitParam, type RouteDeps, typed } from "../common.js";

const idParams = z.object({ id: z.coerce.number().int().positive() });

export function registerWebhookRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const r = typed(app);
  const scope = guarded(deps, "webhooks.write", ["webhooks"]);
  const { dns } = deps.config;
  const resolver = createResolver({
    servers: dns.servers,
    timeoutMs: dns.timeoutMs,
    tries: dns.tries,
    cache: false,
  });
  const ref = (request: { params: { id: number } } & Parameters<typeof accountOf>[0]) => ({
    account: accountOf(request),
    id: request.params.id,
  });

  r.get(
    "/v1/webhooks",
    { ...scope, schema: { ...scope.schema, summary: "The account's endpoints (secrets masked)" } },
    async (request) => ({
      webhooks: await listWebhooks(deps.ctx, accountOf(request)),
    }),
  );

  r.post(
    "/v1/webhooks",
    {
      ...scope,
      schema: {
        ...scope.schema,
        summary: "Add an endpoint; the response shows its signing secret once",
        body: z.strictObject({
          url: z.string().min(8).max(2000),
          events: z
            .array(z.enum(EVENT_TYPES as [string, ...string[]]))
            .optional()
            .describe("event types; all when left out"),
        }),
      },
    },
    async (request, reply) => {
      const added = await addWebhook(deps.ctx, {
        account: accountOf(request),
        url: request.body.url,
        publicOnly: resolver,
        ...(request.body.events ? { events: request.body.events } : {}),
      });
      const { secretPrefix: _prefix, ...webhook } = added.webhook;
      return reply.code(201).send({ ...webhook, secret: added.secret });
    },
  );

  r.get(
    "/v1/webhooks/:id",
    { ...scope, schema: { ...scope.schema, summary: "One endpoint", params: idParams } },
    async (request) => getWebhook(deps.ctx, ref(request)),
  );

  r.get(
    "/v1/webhooks/:id/deliveries",
    {
      ...scope,
      schema: {
        ...scope.schema,
        summary: "Recent POSTs, newest first, with status codes",
        params: idParams,
        querystring: z.object({ limit: limitParam(500, 20) }),
      },
    },
    async (request) => ({ deliveries: await listDeliveries(deps.ctx, ref(request), request.query.limit) }),
  );

  r.post(
    "/v1/webhooks/:id/test",
    { ...scope, schema: { ...scope.schema, summary: "POST a signed test event now", params: idParams } },
    async (request) =>
      testWebhook(deps.ctx, ref(request), { timeoutMs: deps.config.events.webhooks.timeoutMs }),
  );

  r.post(
    "/v1/webhooks/:id/replay",
    {
      ...scope,
      schema: {
        ...scope.schema,
        summary: "Send the events after a time or an event id again",
        params: idParams,
        body: z.strictObject({
          since: z
            .union([z.number().describe("unix seconds"), z.string().max(40)])
            .describe("RFC 3339 time, unix seconds, or an event id (the events after it)"),
        }),
      },
    },
    async (request) => {
      const { since } = request.body;
      const at =
        typeof since === "number"
          ? since * 1000
          : /^\d{4}-\d\d-\d\d/.test(since)
            ? Date.parse(since)
            : undefined;
      if (at !== undefined && Number.isNaN(at)) throw new PetrelError("invalid-input", "since: not a time");
      return replayWebhook(deps.ctx, ref(request), at === undefined ? { afterId: String(since) } : { at });
    },
  );

  r.post(
    "/v1/webhooks/:id/enable",
    { ...scope, schema: { ...scope.schema, summary: "Re-enable a disabled endpoint", params: idParams } },
    async (request, reply) => {
      await enableWebhook(deps.ctx, ref(request));
      return reply.code(204).send();
    },
  );

  r.delete(
    "/v1/webhooks/:id",
    { ...scope, schema: { ...scope.schema, summary: "Remove an endpoint", params: idParams } },
    async (request, reply) => {
      await removeWebhook(deps.ctx, ref(request));
      return reply.code(204).send();
    },
  );
}

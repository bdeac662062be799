/**
 * The account's suppression list: search, add, remove, CSV export and import (all or nothing).
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import {
  addSuppressions,
  exportSuppressions,
  findSuppression,
  importSuppressions,
  listSuppressions,
  removeSuppression,
} from "../../services/suppressions.js";
import { accountOf, guarded, limitParam, type RouteDeps, typed } from "../common.js";

const addressParams = z.object({ address: z.string().min(3).max(320) });

export function registerSuppressionRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const r = typed(app);
  const read = guarded(deps, "suppressions.read", ["suppressions"]);
  const write = guarded(deps, "suppressions.write", ["suppressions"]);
  // CSV bodies for import (text/csv), read as a string; bounded by the body limit.
  app.addContentTypeParser(
    "text/csv",
    { parseAs: "string", bodyLimit: 32 * 1024 * 1024 },
    (_req, body, done) => done(null, body),
  );

  r.get(
    "/v1/suppressions",
    {
      ...read,
      schema: {
        ...read.schema,
        summary: "Suppressed addresses (search by part of the address, filter by reason)",
        querystring: z.object({
          search: z.string().max(320).optional(),
          reason: z.string().max(40).optional(),
          limit: limitParam(10000, 1000),
        }),
      },
    },
    async (request) => ({
      suppressions: await listSuppressions(deps.ctx, { account: accountOf(request), ...request.query }),
    }),
  );

  r.get(
    "/v1/suppressions/export",
    { ...read, schema: { ...read.schema, summary: "The list as CSV (RFC 4180)" } },
    async (request, reply) =>
      reply.type("text/csv; charset=utf-8").send(await exportSuppressions(deps.ctx, accountOf(request))),
  );

  r.get(
    "/v1/suppressions/:address",
    { ...read, schema: { ...read.schema, summary: "One suppressed address", params: addressParams } },
    async (request) => findSuppression(deps.ctx, accountOf(request), request.params.address),
  );

  r.post(
    "/v1/suppressions",
    {
      ...write,
      schema: {
        ...write.schema,
        summary: "Suppress addresses",
        body: z.strictObject({
          addresses: z.array(z.string().min(3).max(320)).min(1).max(10000),
          note: z.string().max(500).optional(),
        }),
      },
    },
    async (request) =>
      addSuppressions(deps.ctx, {
        account: accountOf(request),
        addresses: request.body.addresses,
        note: request.body.note ?? null,
      }),
  );

  r.post(
    "/v1/suppressions/import",
    {
      ...write,
      schema: {
        ...write.schema,
        summary: "Add every address of a CSV body (text/csv), all or nothing",
        body: z.string().max(32 * 1024 * 1024),
      },
    },
    async (request) => importSuppressions(deps.ctx, accountOf(request), request.body),
  );

  r.delete(
    "/v1/suppressions/:address",
    {
      ...write,
      schema: { ...write.schema, summary: "Remove an address from the list", params: addressParams },
    },
    async (request, reply) => {
      await removeSuppression(deps.ctx, accountOf(request), request.params.address);
      return reply.code(204).send();
    },
  );
}

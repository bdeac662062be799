/**
 * API keys and accounts: /v1/keys (create shows the key once; list; revoke) within the key's
 * account; /v1/accounts (create, list) for admin keys. A key can grant only scopes it holds.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { SCOPES } from "../../auth/scopes.js";
import { createAccount, listAccounts } from "../../services/accounts.js";
import { createKey, listKeys, revokeKey } from "../../services/keys.js";
import { accountOf, guarded, type RouteDeps, typed } from "../common.js";

export function registerKeyRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const r = typed(app);
  const keys = guarded(deps, "keys.write", ["keys"]);
  const admin = guarded(deps, "admin", ["accounts"]);

  r.get(
    "/v1/keys",
    { ...keys, schema: { ...keys.schema, summary: "The account's keys (never the keys themselves)" } },
    async (request) => ({
      keys: await listKeys(deps.ctx, accountOf(request)),
    }),
  );

  r.post(
    "/v1/keys",
    {
      ...keys,
      schema: {
        ...keys.schema,
        summary: "Create a key; the response shows it once",
        body: z.strictObject({
          name: z.string().min(1).max(200),
          scopes: z.array(z.enum(SCOPES)).min(1).optional().describe("default [mail.send]"),
        }),
      },
    },
    async (request, reply) => {
      const { key, secret } = await createKey(deps.ctx, {
        name: request.body.name,
        account: accountOf(request),
        scopes: request.body.scopes,
        grantor: request.apiKey!.scopes,
      });
      return reply.code(201).send({ ...key, key: secret });
    },
  );

  r.delete(
    "/v1/keys/:name",
    {
      ...keys,
      schema: {
        ...keys.schema,
        summary: "Revoke a key",
        params: z.object({ name: z.string().min(1).max(200) }),
      },
    },
    async (request, reply) => {
      await revokeKey(deps.ctx, request.params.name, accountOf(request));
      return reply.code(204).send();
    },
  );

  r.get("/v1/accounts", { ...admin, schema: { ...admin.schema, summary: "Every account" } }, async () => ({
    accounts: await listAccounts(deps.ctx),
  }));

  r.post(
    "/v1/accounts",
    {
      ...admin,
      schema: {
        ...admin.schema,
        summary: "Create an account",
        body: z.strictObject({ name: z.string().min(1).max(100) }),
      },
    },
    async (request, reply) => reply.code(201).send(await createAccount(deps.ctx, request.body.name)),
  );
}

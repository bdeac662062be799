/**
 * What every route file gets: the services' context, the accept path's dependencies, the scope
 * check, and small zod pieces shared by the schemas (declared once: validation and OpenAPI).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { AcceptDeps } from "../app/accept.js";
import type { Scope } from "../auth/scopes.js";
import type { ServiceContext } from "../services/context.js";
import { type AuthDeps, keyOf, needs } from "./auth.js";
import type { HttpMetrics } from "./metrics.js";
import { problemSchema } from "./problems.js";

export interface RouteDeps extends AuthDeps, AcceptDeps {
  readonly ctx: ServiceContext;
  readonly metrics: HttpMetrics;
  /** Whether the API is served over TLS (the Received field's protocol). */
  readonly tls: boolean;
}

export function typed(app: FastifyInstance) {
  return app.withTypeProvider<ZodTypeProvider>();
}

/** The route options of a scoped route: the check, and the OpenAPI security and error responses. */
export function guarded(deps: RouteDeps, scope: Scope, tags: string[]) {
  return {
    preHandler: needs(deps, scope),
    schema: {
      tags,
      security: [{ bearer: [] }],
      description: `Needs the \`${scope}\` scope (or \`admin\`).`,
    },
  };
}

export const problemResponses = {
  400: problemSchema,
  401: problemSchema,
  403: problemSchema,
  404: problemSchema,
} as const;

/** The account the request's key belongs to: every service call is scoped to it. */
export function accountOf(request: FastifyRequest): string {
  return keyOf(request).accountName;
}

/** RFC 3339 or unix seconds → ms. */
export const timeParam = z
  .string()
  .max(40)
  .describe("RFC 3339 time or unix seconds")
  .transform((value, ctx) => {
    const ms = /^\d{1,12}(\.\d+)?$/.test(value) ? Number(value) * 1000 : Date.parse(value);
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: "custom", message: "expected an RFC 3339 time or unix seconds" });
      return z.NEVER;
    }
    return ms;
  });

export const limitParam = (max: number, fallback: number) =>
  z.coerce.number().int().min(1).max(max).default(fallback).describe(`at most ${max}`);

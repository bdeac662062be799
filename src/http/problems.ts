/**
 * RFC 9457 problem details: every error the API returns is `application/problem+json` with a
 * stable `type` (urn:petrel:problem:<name>, the names of src/errors.ts, listed in the README),
 * a `title` per type, the `status`, and a `detail` sentence for this occurrence.
 * Unknown errors are logged with the request id and answered with a generic 500: their text may
 * carry internals (SQL, paths), never shown to a client.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { z } from "zod";
import { PetrelError, type ProblemType } from "../errors.js";

export const PROBLEM_PREFIX = "urn:petrel:problem:";

const TITLES: Record<ProblemType | "internal", string> = {
  "invalid-input": "Invalid input",
  "header-injection": "Header injection refused",
  unauthorized: "Missing or invalid API key",
  "missing-scope": "The API key lacks a scope",
  "sender-not-allowed": "Sender not allowed",
  "not-found": "Not found",
  conflict: "Conflict",
  "idempotency-conflict": "Idempotency key reused with a different request",
  "payload-too-large": "Message too large",
  "recipients-refused": "Every recipient was refused",
  "rate-limited": "Too many failed authentications",
  unavailable: "Not ready",
  "temporary-failure": "Temporary failure, retry later",
  "invalid-config": "Invalid request",
  internal: "Internal error",
};

/** The JSON schema of a problem body, for the OpenAPI document. */
export const problemSchema = z
  .object({
    type: z.string().describe("urn:petrel:problem:<name>, stable"),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
  })
  .catchall(z.unknown())
  .describe("RFC 9457 problem details");

export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
  readonly [extra: string]: unknown;
}

export function problemOf(err: PetrelError): Problem {
  return {
    ...err.extra,
    type: PROBLEM_PREFIX + err.type,
    title: TITLES[err.type],
    status: err.status,
    detail: err.message,
  };
}

export function sendProblem(reply: FastifyReply, problem: Problem): FastifyReply {
  return reply.code(problem.status).type("application/problem+json").send(problem);
}

/** Fastify's error handler: PetrelError → its problem; validation → invalid-input; else 500. */
export function handleError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof PetrelError) return sendProblem(reply, problemOf(error));
  if (hasZodFastifySchemaValidationErrors(error)) {
    const issues = error.validation.map((v) => ({
      where: error.validationContext ?? "body",
      path: v.instancePath || "/",
      message: v.message ?? "invalid",
    }));
    const first = issues[0];
    return sendProblem(reply, {
      type: `${PROBLEM_PREFIX}invalid-input`,
      title: TITLES["invalid-input"],
      status: 400,
      detail: first ? `${first.where} ${first.path}: ${first.message}` : "invalid request",
      issues,
    });
  }
  const status = error.statusCode ?? 500;
  if (status === 413 || error.code === "FST_ERR_CTP_BODY_TOO_LARGE")
    return sendProblem(
      reply,
      problemOf(new PetrelError("payload-too-large", "the request body is too large")),
    );
  if (status >= 400 && status < 500) {
    // Fastify's own client errors: malformed JSON, unsupported media type, bad content length.
    return sendProblem(reply, {
      type: `${PROBLEM_PREFIX}invalid-input`,
      title: TITLES["invalid-input"],
      status: status === 415 ? 415 : 400,
      detail: error.message,
    });
  }
  request.log.error({ err: error, reqId: request.id }, "request failed");
  return sendProblem(reply, {
    type: `${PROBLEM_PREFIX}internal`,
    title: TITLES.internal,
    status: 500,
    detail: `internal error (request ${request.id})`,
  });
}

/**
 * POST /v1/messages (JSON, composed by MailComposer), /v1/messages/mime (raw RFC 5322 with an
 * envelope) and /v1/messages/batch (up to http.maxBatch messages, committed together by the
 * group commit, one result per item). 202 {id, recipients:[{address, state}]}.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { Idempotency } from "../../app/idempotency.js";
import { PetrelError } from "../../errors.js";
import { type Composed, composeMessage, rawMessage, type SendOrigin, submit } from "../../services/send.js";
import { guarded, problemResponses, type RouteDeps, typed } from "../common.js";
import { problemOf, problemSchema } from "../problems.js";

const address = z.string().min(3).max(998).describe('"a@example.com" or "Name <a@example.com>"');
/** Scheduled send (issue 9); the range (not past, at most queue.maxScheduleAheadMs ahead) is the accept path's. */
const sendAt = z
  .union([z.string().max(40), z.number().nonnegative()])
  .describe("when to send: RFC 3339 time or unix seconds, at most queue.maxScheduleAheadMs (72 h) ahead");

export const messageSchema = z
  .strictObject({
    from: address,
    to: z.array(address).max(1000).optional(),
    cc: z.array(address).max(1000).optional(),
    bcc: z.array(address).max(1000).optional(),
    reply_to: address.optional(),
    subject: z.string().max(998).optional(),
    text: z.string().optional(),
    html: z.string().optional(),
    attachments: z
      .array(
        z.strictObject({
          filename: z.string().min(1).max(255),
          content: z.string().describe("base64"),
          content_type: z.string().max(255).optional(),
          content_id: z.string().max(255).optional(),
        }),
      )
      .max(100)
      .optional(),
    headers: z.record(z.string().max(76), z.string().max(998)).optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
    categories: z.array(z.string().max(100)).max(10).optional(),
    send_at: sendAt.optional(),
  })
  .describe("A message to compose");

const rawSchema = z.strictObject({
  from: address.describe("envelope sender (MAIL FROM)"),
  to: z.array(address).min(1).max(1000).describe("envelope recipients (RCPT TO)"),
  raw: z.string().min(1).describe("the RFC 5322 message"),
  send_at: sendAt.optional(),
});

const sendResult = z.object({
  id: z.string(),
  recipients: z.array(
    z.object({ address: z.string(), state: z.enum(["queued", "scheduled", "dropped", "refused"]) }),
  ),
  send_at: z.string().optional().describe("scheduled send: when it will be sent (RFC 3339)"),
});

function originOf(deps: RouteDeps, request: FastifyRequest): SendOrigin {
  const key = request.apiKey!;
  return {
    submitter: { accountId: key.accountId, accountName: key.accountName, apiKeyId: key.id, label: key.name },
    clientIp: request.ip,
    protocol: deps.tls ? "HTTPS" : "HTTP",
  };
}

async function timed<T>(deps: RouteDeps, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    const result = await fn();
    deps.metrics.accept("http", (performance.now() - started) / 1000);
    return result;
  } catch (err) {
    deps.metrics.reject("http", err instanceof PetrelError ? err.type : "internal");
    throw err;
  }
}

/**
 * With an Idempotency-Key header, the first answer to this account's key (same route and body)
 * is repeated for 24 h; a different request with the key is 409 idempotency-conflict.
 */
async function idempotent<T>(
  deps: RouteDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  fn: () => Promise<T>,
): Promise<FastifyReply> {
  const header = request.headers["idempotency-key"];
  const key = Array.isArray(header) ? header[0] : header;
  if (key === undefined || !deps.idempotency) return reply.code(status).send(await fn());
  if (!Idempotency.valid(key))
    throw new PetrelError("invalid-input", "Idempotency-Key: 1 to 256 printable ASCII characters");
  const hash = createHash("sha256")
    .update(`${request.routeOptions.url}\n${JSON.stringify(request.body)}`)
    .digest("hex");
  const { value, replayed } = await deps.idempotency.once(request.apiKey!.accountId, `http:${key}`, hash, fn);
  if (replayed) reply.header("idempotent-replayed", "true");
  return reply.code(status).send(value);
}

export function registerSendRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const r = typed(app);
  const bodyLimit = Math.ceil(deps.config.smtp.limits.maxMessageSize * 1.4) + 1024 * 1024;
  const scope = guarded(deps, "mail.send", ["sending"]);

  r.post(
    "/v1/messages",
    {
      ...scope,
      bodyLimit,
      schema: {
        ...scope.schema,
        summary: "Send a message (composed from JSON)",
        body: messageSchema,
        response: { 202: sendResult, ...problemResponses, 413: problemSchema, 422: problemSchema },
      },
    },
    async (request, reply) =>
      idempotent(deps, request, reply, 202, () =>
        timed(deps, async () => submit(deps, originOf(deps, request), await composeMessage(request.body))),
      ),
  );

  r.post(
    "/v1/messages/mime",
    {
      ...scope,
      bodyLimit,
      schema: {
        ...scope.schema,
        summary: "Send a raw RFC 5322 message with its envelope",
        body: rawSchema,
        response: { 202: sendResult, ...problemResponses, 413: problemSchema, 422: problemSchema },
      },
    },
    async (request, reply) =>
      idempotent(deps, request, reply, 202, () =>
        timed(deps, () => submit(deps, originOf(deps, request), rawMessage(request.body))),
      ),
  );

  const item = z.union([
    z.object({
      ok: z.literal(true),
      id: z.string(),
      recipients: sendResult.shape.recipients,
      send_at: sendResult.shape.send_at,
    }),
    z.object({ ok: z.literal(false), problem: problemSchema }),
  ]);
  r.post(
    "/v1/messages/batch",
    {
      ...scope,
      bodyLimit: Math.max(bodyLimit, 64 * 1024 * 1024),
      schema: {
        ...scope.schema,
        summary: "Send up to 500 messages in one request (one result per item)",
        body: z.strictObject({ messages: z.array(messageSchema).min(1).max(deps.config.http.maxBatch) }),
        response: { 200: z.object({ results: z.array(item) }), ...problemResponses },
      },
    },
    async (request, reply) =>
      idempotent(deps, request, reply, 200, async () => {
        const origin = originOf(deps, request);
        // All items go to the spool at once: its group commit makes one transaction of them.
        const results = await Promise.all(
          request.body.messages.map(async (message) => {
            try {
              const composed: Composed = await composeMessage(message);
              const sent = await timed(deps, () => submit(deps, origin, composed));
              return { ok: true as const, ...sent };
            } catch (err) {
              if (err instanceof PetrelError) return { ok: false as const, problem: problemOf(err) };
              throw err;
            }
          }),
        );
        return { results };
      }),
  );
}

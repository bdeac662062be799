/**
 * The HTTP API server (issue 9): Fastify 5 inside `petrel serve`. Routes are versioned under
 * /v1, one file per resource in routes/, each a thin adapter over src/services. Schemas are zod
 * (fastify-type-provider-zod), declared once for validation and the OpenAPI 3.1 document at
 * /v1/openapi.json (@fastify/swagger). Errors are RFC 9457 problems (problems.ts).
 *
 * Security: bound to 127.0.0.1 by default; a warning at start when bound beyond loopback without
 * TLS (API keys would cross the network in clear). Request logs never carry the Authorization
 * header (Fastify's default serializers log method, URL and IP only).
 */
import { readFileSync } from "node:fs";
import swagger from "@fastify/swagger";
import Fastify, { type FastifyInstance, LogController } from "fastify";
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import type { PetrelConfig } from "../config/schema.js";
import type { Logger } from "../log.js";
import type { RouteDeps } from "./common.js";
import { registerDashboard } from "./dashboard/index.js";
import { handleError, PROBLEM_PREFIX } from "./problems.js";
import { registerDomainRoutes } from "./routes/domains.js";
import { registerEventRoutes } from "./routes/events.js";
import { type HealthDeps, registerHealthRoutes } from "./routes/health.js";
import { registerKeyRoutes } from "./routes/keys.js";
import { registerMessageRoutes } from "./routes/messages-read.js";
import { registerSendRoutes } from "./routes/messages-send.js";
import { registerQueueRoutes } from "./routes/queue.js";
import { registerStatsRoutes } from "./routes/stats.js";
import { registerSuppressionRoutes } from "./routes/suppressions.js";
import { registerWebhookRoutes } from "./routes/webhooks.js";

export type HttpDeps = Omit<RouteDeps, "tls"> & HealthDeps;

export interface HttpTls {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
}

/** Every route the app registered (method and URL), for comparing with the OpenAPI document. */
const ROUTES = new WeakMap<FastifyInstance, Array<{ method: string; url: string }>>();

export function registeredRoutes(app: FastifyInstance): ReadonlyArray<{ method: string; url: string }> {
  return ROUTES.get(app) ?? [];
}

export async function buildHttpApp(deps: HttpDeps, tls?: HttpTls): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: "http" }),
    // One line per request would double the log volume of a send; errors are logged by handleError.
    logController: new LogController({ disableRequestLogging: true }),
    // The body limit of the send routes follows smtp.limits.maxMessageSize (set per route).
    bodyLimit: 1024 * 1024,
    trustProxy: false,
    ...(tls ? { https: { key: tls.key, cert: tls.cert } } : {}),
  }) as unknown as FastifyInstance;
  const routes: Array<{ method: string; url: string }> = [];
  ROUTES.set(app, routes);
  app.addHook("onRoute", (route) => {
    // Hidden routes (the dashboard's pages, the document itself) are not part of the API.
    if ((route.schema as { hide?: boolean } | undefined)?.hide) return;
    for (const method of [route.method].flat())
      if (method !== "HEAD") routes.push({ method, url: route.url });
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .type("application/problem+json")
      .send({
        type: `${PROBLEM_PREFIX}not-found`,
        title: "Not found",
        status: 404,
        detail: `no route ${request.method} ${request.url.split("?")[0]}`,
      }),
  );
  const routeDeps: RouteDeps & HealthDeps = { ...deps, tls: tls !== undefined };
  app.addHook("onResponse", async (request, reply) => {
    deps.metrics.request(request.routeOptions.url ?? "unmatched", reply.statusCode);
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Petrel HTTP API",
        version: "1",
        description:
          "Send mail, read messages and events, manage keys, domains, suppressions and webhooks. " +
          `Errors are RFC 9457 problems whose type is ${PROBLEM_PREFIX}<name>.`,
      },
      components: {
        securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "an API key" } },
      },
    },
    transform: jsonSchemaTransform,
  });

  registerSendRoutes(app, routeDeps);
  registerMessageRoutes(app, routeDeps);
  registerEventRoutes(app, routeDeps);
  registerStatsRoutes(app, routeDeps);
  registerQueueRoutes(app, routeDeps);
  registerKeyRoutes(app, routeDeps);
  registerDomainRoutes(app, routeDeps);
  registerSuppressionRoutes(app, routeDeps);
  registerWebhookRoutes(app, routeDeps);
  registerHealthRoutes(app, routeDeps);
  app.get("/v1/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  if (deps.config.http.dashboard) await registerDashboard(app, routeDeps);
  await app.ready();
  return app;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

export interface RunningHttp {
  readonly app: FastifyInstance;
  readonly port: number;
  close(): Promise<void>;
}

/** TLS material for http.tls: its own files, or the SMTP certificate. */
export function httpTls(config: PetrelConfig, smtpCertificate: HttpTls): HttpTls | undefined {
  const { tls } = config.http;
  if (!tls.enabled) return undefined;
  if (tls.certFile && tls.keyFile)
    return { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) };
  return smtpCertificate;
}

export async function startHttp(deps: HttpDeps, logger: Logger, tls?: HttpTls): Promise<RunningHttp> {
  const { host, port } = deps.config.http;
  const app = await buildHttpApp(deps, tls);
  await app.listen({ host, port });
  const address = app.server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  if (!tls && !isLoopback(host))
    logger.warn(
      { host, port: bound },
      "the HTTP API listens beyond loopback without TLS: API keys cross the network in clear (set http.tls.enabled)",
    );
  logger.info({ listener: "http", port: bound, tls: tls !== undefined }, "listening");
  return { app, port: bound, close: () => app.close() };
}

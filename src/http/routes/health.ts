/**
 * GET /healthz (the process answers), GET /readyz (the store answers and the listeners are
 * bound; 503 with the reason otherwise), GET /metrics (Prometheus text; restricted to
 * http.metricsNetworks when set).
 */
import { BlockList, isIP } from "node:net";
import type { FastifyInstance } from "fastify";
import { PetrelError } from "../../errors.js";
import type { RouteDeps } from "../common.js";

export interface HealthDeps {
  /** Why Petrel is not ready (a listener not bound…), or null. */
  readonly notReady: () => string | null;
}

function networks(list: readonly string[]): BlockList | undefined {
  if (list.length === 0) return undefined;
  const blocks = new BlockList();
  for (const network of list) {
    const [address, bits] = network.split("/") as [string, string | undefined];
    const type = isIP(address) === 6 ? "ipv6" : "ipv4";
    blocks.addSubnet(address, bits === undefined ? (type === "ipv4" ? 32 : 128) : Number(bits), type);
  }
  return blocks;
}

export function registerHealthRoutes(app: FastifyInstance, deps: RouteDeps & HealthDeps): void {
  app.get("/healthz", { schema: { tags: ["health"], summary: "The process is up" } }, async () => ({
    status: "ok",
  }));

  app.get(
    "/readyz",
    { schema: { tags: ["health"], summary: "The store answers and the listeners are bound" } },
    async () => {
      const reason = deps.notReady();
      if (reason !== null) throw new PetrelError("unavailable", reason);
      try {
        await deps.store.getAccount("default");
      } catch (err) {
        throw new PetrelError("unavailable", "the store does not answer", { cause: err });
      }
      return { status: "ready" };
    },
  );

  const allowed = networks(deps.config.http.metricsNetworks);
  app.get(
    "/metrics",
    { schema: { tags: ["health"], summary: "Prometheus metrics (petrel_*)" } },
    async (request, reply) => {
      if (allowed) {
        const ip = request.ip.replace(/^::ffff:/, "");
        if (!allowed.check(ip, isIP(ip) === 6 ? "ipv6" : "ipv4"))
          throw new PetrelError(
            "missing-scope",
            "metrics are not served to this network (http.metricsNetworks)",
            {
              extra: { scope: "http.metricsNetworks" },
            },
          );
      }
      return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.render());
    },
  );
}

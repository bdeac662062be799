/**
 * Sender domains (/v1/domains: add, list, show, records as table/zone/json, verify, rotate,
 * retire a selector, remove) and single senders (/v1/senders), within the key's account.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { formatJson, formatTable, formatZone } from "../../dkim/records.js";
import { createResolver } from "../../dns/resolver.js";
import {
  addDomain,
  domainRecords,
  listDomains,
  removeDomain,
  retireSelector,
  rotateDkim,
  showDomain,
  verifyDomain,
} from "../../services/domains.js";
import { addSender, listSenders, removeSender } from "../../services/senders.js";
import { accountOf, guarded, type RouteDeps, typed } from "../common.js";

const domainParams = z.object({ domain: z.string().min(1).max(253) });

export function registerDomainRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const r = typed(app);
  const read = guarded(deps, "domains.read", ["domains"]);
  const write = guarded(deps, "domains.write", ["domains"]);
  const { dns } = deps.config;
  // Verification must see what is published now: no cache.
  const resolver = createResolver({
    servers: dns.servers,
    timeoutMs: dns.timeoutMs,
    tries: dns.tries,
    cache: false,
  });

  r.get(
    "/v1/domains",
    { ...read, schema: { ...read.schema, summary: "The account's sender domains" } },
    async (request) => ({
      domains: await listDomains(deps.ctx, accountOf(request)),
    }),
  );

  r.post(
    "/v1/domains",
    {
      ...write,
      schema: {
        ...write.schema,
        summary: "Add a sender domain with DKIM keys; returns the records to publish",
        body: z.strictObject({ domain: z.string().min(1).max(253) }),
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        .send(await addDomain(deps.ctx, { domain: request.body.domain, account: accountOf(request) })),
  );

  r.get(
    "/v1/domains/:domain",
    {
      ...read,
      schema: { ...read.schema, summary: "A domain's keys, last check and events", params: domainParams },
    },
    async (request) => showDomain(deps.ctx, request.params.domain, accountOf(request)),
  );

  r.get(
    "/v1/domains/:domain/records",
    {
      ...read,
      schema: {
        ...read.schema,
        summary: "The DNS records to publish",
        params: domainParams,
        querystring: z.object({ format: z.enum(["json", "table", "zone"]).default("json") }),
      },
    },
    async (request, reply) => {
      const records = await domainRecords(deps.ctx, request.params.domain, accountOf(request));
      const { format } = request.query;
      if (format === "json") return reply.type("application/json").send(formatJson(records));
      return reply
        .type("text/plain; charset=utf-8")
        .send(format === "zone" ? formatZone(records) : formatTable(records));
    },
  );

  r.post(
    "/v1/domains/:domain/verify",
    {
      ...write,
      schema: {
        ...write.schema,
        summary: "Look the records up now and record the result",
        params: domainParams,
      },
    },
    async (request) => verifyDomain({ ...deps.ctx, resolver }, request.params.domain, accountOf(request)),
  );

  r.post(
    "/v1/domains/:domain/rotate",
    { ...write, schema: { ...write.schema, summary: "Create the next DKIM selector", params: domainParams } },
    async (request) => rotateDkim(deps.ctx, request.params.domain, accountOf(request)),
  );

  r.delete(
    "/v1/domains/:domain/selectors/:selector",
    {
      ...write,
      schema: {
        ...write.schema,
        summary: "Delete a DKIM key that no longer signs (or a pending one)",
        params: domainParams.extend({ selector: z.string().min(1).max(63) }),
      },
    },
    async (request) =>
      retireSelector(deps.ctx, request.params.domain, request.params.selector, accountOf(request)),
  );

  r.delete(
    "/v1/domains/:domain",
    {
      ...write,
      schema: { ...write.schema, summary: "Remove a sender domain and its keys", params: domainParams },
    },
    async (request, reply) => {
      await removeDomain(deps.ctx, request.params.domain, accountOf(request));
      return reply.code(204).send();
    },
  );

  r.get(
    "/v1/senders",
    { ...read, schema: { ...read.schema, summary: "The account's single senders" } },
    async (request) => ({
      senders: await listSenders(deps.ctx, accountOf(request)),
    }),
  );

  r.post(
    "/v1/senders",
    {
      ...write,
      schema: {
        ...write.schema,
        summary: "Add a single sender address",
        body: z.strictObject({ address: z.string().min(3).max(320) }),
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        .send(await addSender(deps.ctx, { address: request.body.address, account: accountOf(request) })),
  );

  r.delete(
    "/v1/senders/:address",
    {
      ...write,
      schema: {
        ...write.schema,
        summary: "Remove a single sender",
        params: z.object({ address: z.string().min(3).max(320) }),
      },
    },
    async (request, reply) => {
      await removeSender(deps.ctx, request.params.address, accountOf(request));
      return reply.code(204).send();
    },
  );
}

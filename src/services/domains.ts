/**
 * Sender domains as a resource: the operations `petrel domains` and /v1/domains share. The DKIM
 * key life cycle and verification live in src/domains/service.ts (also used by serve's periodic
 * re-check); this module adds input checks, account scope and the listings.
 * Security: private keys leave only through exportKey(), on purpose (the CLI's export-key).
 */
import type { DnsRecordSpec } from "../dkim/records.js";
import { DomainsService, type RotateResult, type VerifyReport } from "../domains/service.js";
import { PetrelError } from "../errors.js";
import type { DkimKeyInfo, DomainEvent, SenderDomain, SenderDomainDetail } from "../store/types.js";
import { conflicts, requireAccount, type ServiceContext } from "./context.js";
import { validDomain } from "./validate.js";

function service(ctx: ServiceContext): DomainsService {
  return new DomainsService({
    store: ctx.store,
    config: ctx.config,
    ...(ctx.resolver ? { resolver: ctx.resolver } : {}),
    ...(ctx.now ? { now: ctx.now } : {}),
  });
}

/** The domain's detail (in `account` only, when given), or not-found. */
async function requireDomain(
  ctx: ServiceContext,
  value: string,
  account?: string,
): Promise<SenderDomainDetail> {
  const domain = validDomain(value);
  const detail = await service(ctx).get(domain);
  if (account !== undefined && detail.accountName !== account)
    throw new PetrelError("not-found", `no domain ${domain} (add it with: petrel domains add ${domain})`);
  return detail;
}

export async function addDomain(
  ctx: ServiceContext,
  input: { readonly domain: string; readonly account: string },
): Promise<{ domain: SenderDomain; records: DnsRecordSpec[] }> {
  const domain = validDomain(input.domain);
  const account = await requireAccount(ctx.store, input.account);
  return conflicts(service(ctx).add(account.id, domain));
}

export async function domainRecords(
  ctx: ServiceContext,
  value: string,
  account?: string,
): Promise<DnsRecordSpec[]> {
  const detail = await requireDomain(ctx, value, account);
  return service(ctx).records(detail.domain);
}

export type DomainWithKeys = SenderDomain & { readonly keys: DkimKeyInfo[] };

export async function listDomains(ctx: ServiceContext, account?: string): Promise<DomainWithKeys[]> {
  const accountId = account === undefined ? undefined : (await requireAccount(ctx.store, account)).id;
  const list = await ctx.store.listDomains(accountId);
  return Promise.all(list.map(async (d) => ({ ...d, keys: await ctx.store.listDkimKeys(d.domain) })));
}

export type DomainShow = SenderDomainDetail & {
  readonly keys: DkimKeyInfo[];
  readonly events: DomainEvent[];
};

/** A domain's keys, last check and events (no DNS lookups). */
export async function showDomain(ctx: ServiceContext, value: string, account?: string): Promise<DomainShow> {
  const detail = await requireDomain(ctx, value, account);
  const keys = await ctx.store.listDkimKeys(detail.domain);
  const events = await ctx.store.listDomainEvents(detail.domain, 20);
  return { ...detail, keys, events };
}

/** Looks the records up through ctx.resolver and records the result. */
export async function verifyDomain(
  ctx: ServiceContext,
  value: string,
  account?: string,
): Promise<VerifyReport> {
  const detail = await requireDomain(ctx, value, account);
  return conflicts(service(ctx).verify(detail.domain));
}

export async function rotateDkim(
  ctx: ServiceContext,
  value: string,
  account?: string,
): Promise<RotateResult> {
  const detail = await requireDomain(ctx, value, account);
  return conflicts(service(ctx).rotate(detail.domain));
}

export async function retireSelector(
  ctx: ServiceContext,
  value: string,
  selector: string,
  account?: string,
): Promise<DkimKeyInfo> {
  const detail = await requireDomain(ctx, value, account);
  return service(ctx).retireSelector(detail.domain, selector);
}

/** A DKIM private key PEM (a secret), for moving the domain to another system. */
export async function exportKey(
  ctx: ServiceContext,
  value: string,
  selector?: string,
): Promise<{ selector: string; pem: string }> {
  return service(ctx).exportKey(validDomain(value), selector);
}

export async function removeDomain(ctx: ServiceContext, value: string, account?: string): Promise<string> {
  const domain = validDomain(value);
  if (account !== undefined) await requireDomain(ctx, domain, account);
  if (!(await ctx.store.removeDomain(domain))) throw new PetrelError("not-found", `no domain ${value}`);
  return domain;
}

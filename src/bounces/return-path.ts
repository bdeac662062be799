/**
 * Chooses the envelope sender (return path) of each delivery: `b+<token>@bounces.<From domain>`
 * (VERP, see verp.ts) when the message's From domain is a verified sender domain — whose
 * `bounces.<domain>` MX `petrel domains verify` has seen pointing at Petrel — and the submitted
 * envelope sender otherwise: single senders (no bounce domain of theirs reaches Petrel), domains
 * not verified yet, and the null sender of a DSN, which must stay <> (RFC 5321 §4.5.5: no bounce
 * about a bounce).
 *
 * Invariants: a return path is decided per delivery attempt (a domain verified after the message
 * was accepted gets VERP from its next attempt); domain statuses are cached for STATUS_TTL_MS, so
 * a busy queue costs one store read per domain per minute, not one per message.
 * Security: the From domain comes from the stored (already accepted and verified) message.
 */
import { domainOf } from "../address.js";
import { headerSenders, readHeaderSection } from "../message/headers.js";
import type { Store } from "../store/types.js";
import { bounceDomain, type VerpCodec } from "./verp.js";

const STATUS_TTL_MS = 60_000;
const MAX_CACHED = 10_000;

export interface ReturnPathRecipient {
  readonly id: number;
  readonly address: string;
}

export interface ReturnPaths {
  /** The envelope sender per recipient address, or undefined to keep `mailFrom` for all. */
  forMessage(
    messageId: string,
    mailFrom: string,
    content: Buffer,
    recipients: readonly ReturnPathRecipient[],
  ): Promise<ReadonlyMap<string, string> | undefined>;
}

export interface ReturnPathOptions {
  readonly store: Pick<Store, "getDomain">;
  readonly codec: VerpCodec;
  /** domains.returnPath.subdomain */
  readonly subdomain: string;
  readonly now?: () => number;
}

export function createReturnPaths(options: ReturnPathOptions): ReturnPaths {
  const now = options.now ?? Date.now;
  const verified = new Map<string, { readonly ok: boolean; readonly until: number }>();

  async function isVerified(domain: string): Promise<boolean> {
    const cached = verified.get(domain);
    if (cached && cached.until > now()) return cached.ok;
    const found = await options.store.getDomain(domain);
    // A failing domain still sends (one DNS mishap should not stop mail), so it keeps VERP too.
    const ok = found !== undefined && (found.status === "verified" || found.status === "failing");
    if (verified.size >= MAX_CACHED) verified.clear();
    verified.set(domain, { ok, until: now() + STATUS_TTL_MS });
    return ok;
  }

  return {
    async forMessage(messageId, mailFrom, content, recipients) {
      if (mailFrom === "") return undefined;
      const from = headerSenders(readHeaderSection(content)).from[0];
      const domain = from ? domainOf(from) : "";
      if (domain === "" || !(await isVerified(domain))) return undefined;
      const bounces = bounceDomain(domain, options.subdomain);
      return new Map(recipients.map((r) => [r.address, options.codec.address(messageId, r.id, bounces)]));
    },
  };
}

/**
 * Delivery statistics (issue 9, GET /v1/stats and `petrel stats`): one account's events counted
 * per hour or per day (UTC buckets) — processed, delivered, deferred, bounced (by class and
 * hard/soft), dropped (by reason), expired, spamreport — optionally only for one category or one
 * recipient domain.
 *
 * The counts are the event log's (one event per recipient state change), so a recipient deferred
 * three times counts three deferrals, and the numbers agree with GET /v1/events and /metrics.
 * The store counts through the index events(account_id, at): the time range bounds the read.
 */
import { PetrelError } from "../errors.js";
import type { EventCount } from "../store/types.js";
import { nowOf, requireAccount, type ServiceContext } from "./context.js";
import { validDomain } from "./validate.js";

export type StatsInterval = "hour" | "day";

export const STATS_INTERVALS: readonly StatsInterval[] = ["hour", "day"];

const BUCKET_MS: Record<StatsInterval, number> = { hour: 3_600_000, day: 86_400_000 };
/** The range when `since` is not given: the last day in hours, the last 30 days in days. */
const DEFAULT_SPAN_MS: Record<StatsInterval, number> = { hour: 86_400_000, day: 30 * 86_400_000 };
/** At most this many buckets per answer (about six weeks of hours, or 2.7 years of days). */
export const MAX_BUCKETS = 1000;

export interface StatsQuery {
  /** The account counted (the API passes the key's own account). */
  readonly account: string;
  readonly interval?: string;
  /**
   * ms; default: `until` minus a day (hour) or 30 days (day). Buckets start at multiples of the
   * interval (UTC); the first and last ones count only the part inside [since, until).
   */
  readonly since?: number;
  /** ms, exclusive; default now. */
  readonly until?: number;
  readonly category?: string;
  readonly domain?: string;
}

export interface StatsCounts {
  processed: number;
  delivered: number;
  deferred: number;
  bounced: { total: number; hard: number; soft: number; classes: Record<string, number> };
  dropped: { total: number; reasons: Record<string, number> };
  expired: number;
  spamreport: number;
}

export interface StatsBucket extends StatsCounts {
  /** Start of the bucket, RFC 3339 (UTC). */
  readonly start: string;
}

export interface Stats {
  readonly interval: StatsInterval;
  /** RFC 3339: the range counted, [since, until). */
  readonly since: string;
  readonly until: string;
  readonly category: string | null;
  readonly domain: string | null;
  /** Every bucket of the range, oldest first, empty ones included (zeros). */
  readonly buckets: StatsBucket[];
  readonly totals: StatsCounts;
}

function emptyCounts(): StatsCounts {
  return {
    processed: 0,
    delivered: 0,
    deferred: 0,
    bounced: { total: 0, hard: 0, soft: 0, classes: {} },
    dropped: { total: 0, reasons: {} },
    expired: 0,
    spamreport: 0,
  };
}

/** Adds one store count to `to` (types stats do not report, such as throttled, are skipped). */
function add(to: StatsCounts, row: EventCount): void {
  switch (row.type) {
    case "processed":
    case "delivered":
    case "deferred":
    case "expired":
    case "spamreport":
      to[row.type] += row.count;
      return;
    case "bounce": {
      to.bounced.total += row.count;
      if (row.bounceHard === true) to.bounced.hard += row.count;
      else to.bounced.soft += row.count;
      const cls = row.bounceClass ?? "unknown";
      to.bounced.classes[cls] = (to.bounced.classes[cls] ?? 0) + row.count;
      return;
    }
    case "dropped": {
      to.dropped.total += row.count;
      const reason = row.reason ?? "unknown";
      to.dropped.reasons[reason] = (to.dropped.reasons[reason] ?? 0) + row.count;
      return;
    }
    default:
      return;
  }
}

export function parseInterval(value: string | undefined): StatsInterval {
  const interval = (value ?? "hour").trim().toLowerCase();
  if (!STATS_INTERVALS.includes(interval as StatsInterval))
    throw new PetrelError("invalid-input", `interval must be one of ${STATS_INTERVALS.join(", ")}`);
  return interval as StatsInterval;
}

export async function getStats(ctx: ServiceContext, query: StatsQuery): Promise<Stats> {
  const interval = parseInterval(query.interval);
  const bucketMs = BUCKET_MS[interval];
  const until = Math.floor(query.until ?? nowOf(ctx));
  const since = Math.floor(query.since ?? until - DEFAULT_SPAN_MS[interval]);
  if (!Number.isFinite(since) || !Number.isFinite(until) || since < 0)
    throw new PetrelError("invalid-input", "since and until must be valid times");
  if (since >= until) throw new PetrelError("invalid-input", "since must be before until");
  const first = Math.floor(since / bucketMs) * bucketMs;
  const count = Math.ceil((until - first) / bucketMs);
  if (count > MAX_BUCKETS)
    throw new PetrelError(
      "invalid-input",
      `the range holds ${count} ${interval}s; at most ${MAX_BUCKETS} per request (use interval=day or a shorter range)`,
    );
  const category = query.category?.trim() || undefined;
  if (category !== undefined && category.length > 100)
    throw new PetrelError("invalid-input", "category is longer than 100 characters");
  const domain = query.domain?.trim() ? validDomain(query.domain) : undefined;
  const account = await requireAccount(ctx.store, query.account);

  const rows = await ctx.store.countEvents({
    accountId: account.id,
    since,
    until,
    bucketMs,
    ...(category === undefined ? {} : { category }),
    ...(domain === undefined ? {} : { domain }),
  });
  const buckets: StatsBucket[] = [];
  const byStart = new Map<number, StatsBucket>();
  for (let i = 0; i < count; i++) {
    const start = first + i * bucketMs;
    const bucket: StatsBucket = { start: new Date(start).toISOString(), ...emptyCounts() };
    buckets.push(bucket);
    byStart.set(start, bucket);
  }
  const totals = emptyCounts();
  for (const row of rows) {
    const bucket = byStart.get(row.bucket);
    if (!bucket) continue; // cannot happen: the store counts inside [first, until)
    add(bucket, row);
    add(totals, row);
  }
  return {
    interval,
    since: new Date(since).toISOString(),
    until: new Date(until).toISOString(),
    category: category ?? null,
    domain: domain ?? null,
    buckets,
    totals,
  };
}

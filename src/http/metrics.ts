/**
 * Prometheus metrics (issue 9), names prefixed `petrel_`, on a registry of our own (no global).
 *
 * Where the counts come from: accepted/rejected messages are counted where they are accepted (the
 * SMTP hooks and the HTTP send routes, both in this process). Recipient outcomes are counted from
 * the event log: the delivery thread, the commit thread (drops at accept) and the bounce listener
 * all write their events in the transaction of the change, so reading new events after a cursor
 * at each scrape counts what every thread did, exactly once, without messages between threads.
 * Counters start at zero when the process starts (the cursor starts at the newest event).
 * Labels are bounded: bounce classes and drop reasons map onto fixed sets.
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { decodeTime } from "ulidx";
import { BOUNCE_CLASSES } from "../bounces/rules.js";
import type { PetrelEvent, RecipientState, Store } from "../store/types.js";

const DROP_REASONS = new Set(["suppressed", "operator", "cancelled"]);
const BOUNCE_CLASS_SET: ReadonlySet<string> = new Set(BOUNCE_CLASSES);
const STATES: readonly RecipientState[] = [
  "queued",
  "delivering",
  "deferred",
  "delivered",
  "bounced",
  "expired",
  "dropped",
  "held",
];

export interface MetricsSources {
  readonly store: Store;
  /** Open inbound SMTP connections. */
  readonly inboundConnections?: () => number;
}

export class HttpMetrics {
  readonly registry = new Registry();
  private readonly accepted: Counter<"via">;
  private readonly rejected: Counter<"via" | "reason">;
  private readonly acceptLatency: Histogram<"via">;
  private readonly recipients: Counter<"outcome">;
  private readonly bounced: Counter<"class">;
  private readonly dropped: Counter<"reason">;
  private readonly spamreports: Counter;
  private readonly toDelivery: Histogram;
  private readonly httpRequests: Counter<"route" | "status">;
  private cursor: string | undefined;
  private catchingUp: Promise<void> | undefined;
  private readonly sources: MetricsSources;

  constructor(sources: MetricsSources) {
    this.sources = sources;
    const registers = [this.registry];
    this.accepted = new Counter({
      name: "petrel_messages_accepted_total",
      help: "Messages accepted (committed), by interface",
      labelNames: ["via"],
      registers,
    });
    this.rejected = new Counter({
      name: "petrel_messages_rejected_total",
      help: "Messages refused at accept, by interface and reason (enhanced status code or problem type)",
      labelNames: ["via", "reason"],
      registers,
    });
    this.acceptLatency = new Histogram({
      name: "petrel_accept_latency_seconds",
      help: "From the end of DATA (or the request body) to the 250/202, durable commit included",
      labelNames: ["via"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.recipients = new Counter({
      name: "petrel_recipients_total",
      help: "Recipient outcomes from the event log: delivered, deferred, bounced, dropped, expired",
      labelNames: ["outcome"],
      registers,
    });
    this.bounced = new Counter({
      name: "petrel_recipients_bounced_total",
      help: "Bounced recipients by bounce class",
      labelNames: ["class"],
      registers,
    });
    this.dropped = new Counter({
      name: "petrel_recipients_dropped_total",
      help: "Dropped recipients by reason",
      labelNames: ["reason"],
      registers,
    });
    this.spamreports = new Counter({
      name: "petrel_spamreports_total",
      help: "Complaints (ARF reports) received",
      registers,
    });
    this.toDelivery = new Histogram({
      name: "petrel_accept_to_delivery_seconds",
      help: "From acceptance to the delivered event",
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400],
      registers,
    });
    this.httpRequests = new Counter({
      name: "petrel_http_requests_total",
      help: "HTTP API requests by route and status",
      labelNames: ["route", "status"],
      registers,
    });
    const store = sources.store;
    new Gauge({
      name: "petrel_queue_recipients",
      help: "Recipients in the store by state",
      labelNames: ["state"],
      registers,
      async collect() {
        const counts = await store.queueCounts();
        for (const s of STATES) this.set({ state: s }, counts.byState[s] ?? 0);
      },
    });
    new Gauge({
      name: "petrel_destinations_backed_off",
      help: "Destinations currently in backoff",
      registers,
      async collect() {
        this.set((await store.listDestinationBackoffs(Date.now())).length);
      },
    });
    const inbound = sources.inboundConnections;
    if (inbound) {
      new Gauge({
        name: "petrel_inbound_connections",
        help: "Open inbound SMTP connections",
        registers,
        collect() {
          this.set(inbound());
        },
      });
    }
  }

  /** Start counting events after the newest one now (call once at start). */
  async start(): Promise<void> {
    this.cursor = (await this.sources.store.listEvents({ limit: 1, newest: true }))[0]?.id ?? "";
  }

  accept(via: "smtp" | "http", seconds: number): void {
    this.accepted.inc({ via });
    this.acceptLatency.observe({ via }, seconds);
  }

  reject(via: "smtp" | "http", reason: string): void {
    this.rejected.inc({ via, reason });
  }

  request(route: string, status: number): void {
    this.httpRequests.inc({ route, status: String(status) });
  }

  /** Counts the events written since the last call (every thread's), then renders the registry. */
  async render(): Promise<string> {
    await this.catchUp();
    return this.registry.metrics();
  }

  private catchUp(): Promise<void> {
    this.catchingUp ??= (async () => {
      try {
        if (this.cursor === undefined) await this.start();
        for (;;) {
          const events = await this.sources.store.listEvents({ afterId: this.cursor!, limit: 5000 });
          for (const e of events) this.count(e);
          if (events.length > 0) this.cursor = events.at(-1)!.id;
          if (events.length < 5000) break;
        }
      } finally {
        this.catchingUp = undefined;
      }
    })();
    return this.catchingUp;
  }

  private count(e: PetrelEvent): void {
    switch (e.type) {
      case "delivered": {
        this.recipients.inc({ outcome: "delivered" });
        const accepted = safeTime(e.messageId);
        if (accepted !== undefined) this.toDelivery.observe(Math.max(0, (e.timestamp - accepted) / 1000));
        break;
      }
      case "deferred":
      case "expired":
        this.recipients.inc({ outcome: e.type });
        break;
      case "bounce":
        this.recipients.inc({ outcome: "bounced" });
        this.bounced.inc({ class: BOUNCE_CLASS_SET.has(e.bounceClass ?? "") ? e.bounceClass! : "other" });
        break;
      case "dropped":
        this.recipients.inc({ outcome: "dropped" });
        this.dropped.inc({ reason: DROP_REASONS.has(e.reason ?? "") ? e.reason! : "other" });
        break;
      case "spamreport":
        this.spamreports.inc();
        break;
      default:
        break;
    }
  }
}

function safeTime(queueId: string): number | undefined {
  try {
    return decodeTime(queueId);
  } catch {
    return undefined;
  }
}

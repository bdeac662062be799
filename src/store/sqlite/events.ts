/**
 * The event log in SQLite (Store part EventStore, issue 5; postgres/events.ts is its twin):
 * appending events inside the transaction of the state change they record, and reading them back
 * with the sender's metadata and categories.
 *
 * Invariants:
 * - Events are only appended, by code that holds the write lock (an IMMEDIATE transaction, or a
 *   deferred one after its first write): the newest id is read under that lock, so ids increase
 *   in commit order across every connection (src/events/event-id.ts). Reading it before the
 *   first write of a deferred transaction could fail with SQLITE_BUSY_SNAPSHOT, hence the rule.
 * - An event is never updated; pruning deletes only events every active webhook has passed.
 * - metadata/categories live on the message (one copy), and are joined in when events are read.
 */
import type Database from "better-sqlite3";
import { eventIdsAfter } from "../../events/event-id.js";
import {
  COUNT_COLUMNS,
  domainPattern,
  enhancedCodeOf,
  type MetadataCache,
  toEvent,
  toEventCount,
  toEvents,
} from "../event-rows.js";
import type {
  EventCount,
  EventCountQuery,
  EventFilter,
  EventStore,
  NewEvent,
  PetrelEvent,
} from "../types.js";

type Row = Record<string, unknown>;

/** Writes events inside a caller's write transaction (see the invariants above). */
export interface EventWriter {
  /** A generator of ids for one transaction: call once per transaction, under the write lock. */
  ids(now?: number): () => string;
  /** Appends events; returns their ids. Must run inside a transaction holding the write lock. */
  insert(events: readonly NewEvent[], nextId?: () => string): string[];
}

export function prepareEventWriter(db: Database.Database): EventWriter {
  const last = db.prepare("SELECT id FROM events ORDER BY id DESC LIMIT 1").pluck();
  const insert = db.prepare(
    `INSERT INTO events (id, type, message_id, account_id, recipient, at, attempt, next_attempt_at, mx_host,
       ip, reply, enhanced_code, bounce_class, bounce_hard, reason)
     VALUES (@id, @type, @message, COALESCE(@account, (SELECT account_id FROM messages WHERE id = @message)),
       @recipient, @at, @attempt, @next, @mx, @ip, @reply, @enhanced, @class, @hard, @reason)`,
  );
  const ids = (now = Date.now()) => eventIdsAfter(last.get() as string | undefined, now);
  return {
    ids,
    insert(events, nextId) {
      if (events.length === 0) return [];
      const next = nextId ?? ids();
      return events.map((e) => {
        const id = next();
        insert.run({
          id,
          type: e.type,
          message: e.messageId,
          account: e.accountId ?? null,
          recipient: e.recipient,
          at: e.at,
          attempt: e.attempt ?? null,
          next: e.nextAttemptAt ?? null,
          mx: e.mxHost ?? null,
          ip: e.ip ?? null,
          reply: e.reply ?? null,
          enhanced: e.enhancedCode ?? enhancedCodeOf(e.reply),
          class: e.bounceClass ?? null,
          hard: e.bounceHard === undefined || e.bounceHard === null ? null : e.bounceHard ? 1 : 0,
          reason: e.reason ?? null,
        });
        return id;
      });
    },
  };
}

const EVENT_SELECT = `SELECT e.id, e.type, e.message_id, e.recipient, e.at, e.attempt, e.next_attempt_at,
    e.mx_host, e.ip, e.reply, e.enhanced_code, e.bounce_class, e.bounce_hard, e.reason, e.account_id,
    a.name AS account_name, m.metadata, m.categories
  FROM events e LEFT JOIN accounts a ON a.id = e.account_id LEFT JOIN messages m ON m.id = e.message_id`;

/**
 * A row of EVENT_SELECT read in raw mode (an array, in the column order above) as the object
 * toEvent() takes. better-sqlite3 builds each row object by setting its properties one by one,
 * each name looked up again (3.6 µs a row of these 18 columns here, 1.8 raw with this literal):
 * for the webhooks' scan, which reads every event once per endpoint.
 */
function eventRow(c: unknown[]): Row {
  return {
    id: c[0],
    type: c[1],
    message_id: c[2],
    recipient: c[3],
    at: c[4],
    attempt: c[5],
    next_attempt_at: c[6],
    mx_host: c[7],
    ip: c[8],
    reply: c[9],
    enhanced_code: c[10],
    bounce_class: c[11],
    bounce_hard: c[12],
    reason: c[13],
    account_id: c[14],
    account_name: c[15],
    metadata: c[16],
    categories: c[17],
  };
}

export type EventReader = ReturnType<typeof createEventReader>;

/** EventStore's reads and the webhook batches' scan (webhooks.ts). */
export function createEventReader(db: Database.Database) {
  const writer = prepareEventWriter(db);
  const record = db.transaction((events: readonly NewEvent[]) => writer.insert(events));
  const statements = new Map<string, Database.Statement>();
  const prepared = (sql: string) => {
    let statement = statements.get(sql);
    if (!statement) {
      statement = db.prepare(sql);
      statements.set(sql, statement);
    }
    return statement;
  };

  // `+?`, like list()'s `+@limit`: a bound LIMIT that does not make SQLite compile the
  // statement again at each run (connection.ts, "A bound LIMIT"). Raw rows: see eventRow().
  const scanStatement = db.prepare(`${EVENT_SELECT} WHERE e.id > ? ORDER BY e.id LIMIT +?`).raw(true);
  // eventRow() goes by position: a column added to EVENT_SELECT but not there fails here, at once.
  const columns = scanStatement.columns().map((c) => c.name);
  const mapped = Object.keys(eventRow(columns));
  if (columns.join() !== mapped.join()) throw new Error(`eventRow() does not match EVENT_SELECT: ${columns}`);

  return {
    record(events: readonly NewEvent[]): string[] {
      return events.length === 0 ? [] : record.immediate(events);
    },
    list(filter: EventFilter = {}): PetrelEvent[] {
      const where: string[] = [];
      const params: Record<string, unknown> = { limit: filter.limit ?? 1000 };
      if (filter.afterId !== undefined) {
        where.push("e.id > @after");
        params.after = filter.afterId;
      }
      if (filter.upToId !== undefined) {
        where.push("e.id <= @upTo");
        params.upTo = filter.upToId;
      }
      if (filter.messageId !== undefined) {
        where.push("e.message_id = @message");
        params.message = filter.messageId;
      }
      if (filter.recipient !== undefined) {
        where.push("e.recipient = @recipient COLLATE NOCASE");
        params.recipient = filter.recipient;
      }
      if (filter.accountId !== undefined) {
        // "+": never through events_account_at (made for count(), ordered by time): with it the
        // planner reads every event of the account and sorts them, where the primary key in id
        // order stops at `limit` (the newest event of an account, or the page after a cursor:
        // 226 ms instead of 2 ms with 100,000 events, bench:dashboard).
        where.push("+e.account_id = @account");
        params.account = filter.accountId;
      }
      if (filter.types !== undefined) {
        where.push("e.type IN (SELECT value FROM json_each(@types))");
        params.types = JSON.stringify(filter.types);
      }
      const order = filter.newest ? "DESC" : "ASC";
      // `+@limit`: compiled once, not at every call (connection.ts, "A bound LIMIT").
      const sql = `${EVENT_SELECT}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY e.id ${order} LIMIT +@limit`;
      const rows = prepared(sql).all(params) as Row[];
      if (filter.newest) rows.reverse();
      return toEvents(rows);
    },
    /**
     * Counts per bucket (GET /v1/stats). The range condition on the leading columns of
     * events_account_at bounds the read to the account's events in [since, until); the
     * category and domain conditions filter inside that range.
     */
    count(query: EventCountQuery): EventCount[] {
      const where = ["e.account_id = @account", "e.at >= @since", "e.at < @until"];
      const params: Record<string, unknown> = {
        account: query.accountId,
        since: query.since,
        until: query.until,
        bucket: query.bucketMs,
      };
      let from = "events e INDEXED BY events_account_at";
      if (query.category !== undefined) {
        from += " JOIN messages m ON m.id = e.message_id";
        where.push("EXISTS (SELECT 1 FROM json_each(m.categories) c WHERE c.value = @category)");
        params.category = query.category;
      }
      if (query.domain !== undefined) {
        // LIKE is case-insensitive for ASCII in SQLite: domains are compared as A-labels.
        where.push("e.recipient LIKE @domain ESCAPE '\\'");
        params.domain = domainPattern(query.domain);
      }
      const sql = `SELECT (e.at / CAST(@bucket AS INTEGER)) * CAST(@bucket AS INTEGER) AS bucket, ${COUNT_COLUMNS}
        FROM ${from} WHERE ${where.join(" AND ")}
        GROUP BY 1, 2, 3, 4, 5 ORDER BY 1`;
      return (prepared(sql).all(params) as Row[]).map(toEventCount);
    },
    /**
     * Events with an id greater than `after`, oldest first, at most `scan` of them, for webhook
     * batches: `take` says whether an event is wanted and whether to go on. Rows are read in
     * chunks of `chunk` (the batch size: an endpoint that takes every event reads one chunk), so
     * a batch that fills early reads little further. Returns the last id looked at.
     */
    scanAfter(
      after: string,
      scan: number,
      chunk: number,
      take: (event: PetrelEvent) => "take" | "skip" | "stop",
    ): string {
      const cache: MetadataCache = new Map();
      let last = after;
      let read = 0;
      while (read < scan) {
        const rows = scanStatement.all(last, Math.min(chunk, scan - read)) as unknown[][];
        read += rows.length;
        for (const row of rows) {
          const event = toEvent(eventRow(row), cache);
          if (take(event) === "stop") return last;
          last = event.id;
        }
        if (rows.length < chunk) break;
      }
      return last;
    },
  };
}

export function createEventStore(db: Database.Database): EventStore {
  const reader = createEventReader(db);
  return {
    async recordEvents(events: readonly NewEvent[]): Promise<string[]> {
      return reader.record(events);
    },
    async listEvents(filter?: EventFilter): Promise<PetrelEvent[]> {
      return reader.list(filter);
    },
    async countEvents(query: EventCountQuery): Promise<EventCount[]> {
      return reader.count(query);
    },
  };
}

/**
 * Event rows as both backends return them (same column names), mapped to PetrelEvent, and the
 * small rules both apply when writing them.
 */
import type { EventCount, EventType, PetrelEvent } from "./types.js";

type Row = Record<string, unknown>;

const ENHANCED = /^[245]\d\d[ -]([245]\.\d{1,3}\.\d{1,3})(?:\s|$)/;

/** The enhanced status code at the start of an SMTP reply text ("550 5.1.1 …" → "5.1.1"). */
export function enhancedCodeOf(reply: string | null | undefined): string | null {
  if (!reply) return null;
  return ENHANCED.exec(reply)?.[1] ?? null;
}

export type MetadataCache = Map<string, { metadata: Record<string, unknown> | null; categories: string[] }>;

/** Rows to events; metadata is parsed once per message. */
export function toEvents(rows: readonly Row[]): PetrelEvent[] {
  const cache: MetadataCache = new Map();
  return rows.map((row) => toEvent(row, cache));
}

export function toEvent(row: Row, cache: MetadataCache): PetrelEvent {
  const messageId = String(row.message_id);
  let extra = cache.get(messageId);
  if (!extra) {
    extra = {
      metadata: row.metadata ? (JSON.parse(String(row.metadata)) as Record<string, unknown>) : null,
      categories: row.categories ? (JSON.parse(String(row.categories)) as string[]) : [],
    };
    cache.set(messageId, extra);
  }
  // SQLite stores 0/1, PostgreSQL a boolean.
  const hard = row.bounce_hard as number | boolean | null;
  return {
    id: String(row.id),
    type: row.type as EventType,
    timestamp: Number(row.at),
    messageId,
    account: String(row.account_name ?? row.account_id),
    recipient: String(row.recipient),
    attempt: (row.attempt as number | null) ?? null,
    nextAttemptAt: (row.next_attempt_at as number | null) ?? null,
    mxHost: (row.mx_host as string | null) ?? null,
    ip: (row.ip as string | null) ?? null,
    reply: (row.reply as string | null) ?? null,
    enhancedCode: (row.enhanced_code as string | null) ?? null,
    bounceClass: (row.bounce_class as string | null) ?? null,
    bounceHard: hard === null || hard === undefined ? null : hard === 1 || hard === true,
    reason: (row.reason as string | null) ?? null,
    metadata: extra.metadata,
    categories: extra.categories,
  };
}

/** A row of countEvents() (bucket, type, bounce_class, bounce_hard, reason, n) to an EventCount. */
export function toEventCount(row: Row): EventCount {
  const hard = row.bounce_hard as number | boolean | null;
  return {
    // PostgreSQL returns bigint and count(*) as strings.
    bucket: Number(row.bucket),
    type: row.type as EventType,
    bounceClass: (row.bounce_class as string | null) ?? null,
    bounceHard: hard === null || hard === undefined ? null : hard === 1 || hard === true,
    reason: (row.reason as string | null) ?? null,
    count: Number(row.n),
  };
}

/**
 * LIKE pattern for "recipient at this domain": the text after the last "@" equals `domain`
 * (LIKE's wildcards in the domain escaped with "\").
 */
export function domainPattern(domain: string): string {
  return `%@${domain.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}`;
}

/**
 * The columns of countEvents(): the class and hardness only for bounces, the reason only for
 * drops (other types carry a reason too — a spamreport's feedback type — that stats do not split).
 */
export const COUNT_COLUMNS = `e.type,
    CASE WHEN e.type = 'bounce' THEN e.bounce_class END AS bounce_class,
    CASE WHEN e.type = 'bounce' THEN e.bounce_hard END AS bounce_hard,
    CASE WHEN e.type = 'dropped' THEN e.reason END AS reason,
    count(*) AS n`;

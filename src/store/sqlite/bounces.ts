/**
 * Asynchronous bounces and complaints in SQLite (Store part BounceStore, issue 5;
 * postgres/bounces.ts is its twin): what the bounce listener writes once a
 * report arrived for a valid VERP token. One IMMEDIATE transaction per report holds the recipient's
 * state change, its event and any suppression, so none of them can exist without the others.
 *
 * Invariants:
 * - A bounce moves a `delivered` recipient to `bounced` (the remote accepted, then gave up: a late
 *   DSN), with a `bounce` event, an attempt row (so `petrel queue show` tells the story) and, when
 *   hard, a suppression citing that event. A recipient in any other state is left alone and
 *   nothing is written: a duplicate DSN for one already bounced changes nothing.
 * - A complaint writes one `spamreport` event per recipient and message (a repeated report is a
 *   no-op) and suppresses the address; the recipient's delivery state does not change.
 * - Nothing here trusts the report for *which* recipient: the caller passes the recipient the
 *   token names, checked to exist and to belong to that message.
 * - Issue 11: one report's records and the DSNs to senders they cause share one transaction; a
 *   DSN is queued only when the bounce of one of its recipients applied.
 */
import type Database from "better-sqlite3";
import type {
  BounceStore,
  BounceTarget,
  InboundReportRecord,
  InboundReportResult,
  OutcomeNotification,
  RecipientState,
} from "../types.js";
import { prepareEventWriter } from "./events.js";
import { prepareEnqueue } from "./messages.js";
import { prepareSuppressionWriter } from "./suppressions.js";

type Row = Record<string, unknown>;

export function createBounceStore(db: Database.Database): BounceStore {
  const events = prepareEventWriter(db);
  const suppressions = prepareSuppressionWriter(db);
  const enqueue = prepareEnqueue(db);
  const s = {
    target: db.prepare(
      `SELECT r.id, r.message_id, r.address, r.state, r.attempts, m.account_id, m.mail_from, m.received_at
       FROM recipients r JOIN messages m ON m.id = r.message_id WHERE r.id = ? AND r.message_id = ?`,
    ),
    bounce: db.prepare(
      `UPDATE recipients SET state = 'bounced', last_reply = @reply, updated_at = @now
       WHERE id = @id AND state = 'delivered'`,
    ),
    attempt: db.prepare(
      `INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, mx_host, reply)
       VALUES (@id, @message, @at, 0, 'bounced', @mx, @reply)`,
    ),
    complained: db.prepare(
      `SELECT 1 FROM events WHERE message_id = ? AND recipient = ? AND type = 'spamreport' LIMIT 1`,
    ),
  };

  function target(messageId: string, recipientId: number): (BounceTarget & { attempts: number }) | undefined {
    const row = s.target.get(recipientId, messageId) as Row | undefined;
    if (!row) return undefined;
    return {
      recipientId: Number(row.id),
      messageId: String(row.message_id),
      accountId: Number(row.account_id),
      address: String(row.address),
      state: row.state as RecipientState,
      mailFrom: String(row.mail_from),
      receivedAt: Number(row.received_at),
      attempts: Number(row.attempts),
    };
  }

  const recordOne = (r: InboundReportRecord): InboundReportResult => {
    const t = target(r.messageId, r.recipientId);
    if (!t) return { applied: false, eventId: null, suppressed: false, reason: "unknown recipient" };
    const now = Date.now();
    if (r.kind === "bounce") {
      const reply = r.reply.slice(0, 1000);
      if (s.bounce.run({ id: t.recipientId, reply, now }).changes === 0) {
        return { applied: false, eventId: null, suppressed: false, reason: `recipient is ${t.state}` };
      }
      s.attempt.run({ id: t.recipientId, message: t.messageId, at: r.at, mx: r.remoteMta, reply });
      const [eventId] = events.insert([
        {
          type: "bounce",
          messageId: t.messageId,
          accountId: t.accountId,
          recipient: t.address,
          at: now,
          attempt: t.attempts,
          mxHost: r.remoteMta,
          reply,
          enhancedCode: r.enhancedCode,
          bounceClass: r.bounceClass,
          bounceHard: r.bounceHard,
          reason: "dsn",
        },
      ]);
      const suppressed =
        r.bounceHard &&
        suppressions.add({
          accountId: t.accountId,
          address: t.address,
          reason: r.bounceClass,
          eventId,
          messageId: t.messageId,
          detail: reply,
        });
      return { applied: true, eventId: eventId ?? null, suppressed, reason: "bounced" };
    }
    if (s.complained.get(t.messageId, t.address)) {
      return { applied: false, eventId: null, suppressed: false, reason: "complaint already recorded" };
    }
    const [eventId] = events.insert([
      {
        type: "spamreport",
        messageId: t.messageId,
        accountId: t.accountId,
        recipient: t.address,
        at: now,
        reply: r.reply?.slice(0, 1000) ?? null,
        reason: r.feedbackType,
      },
    ]);
    const suppressed = suppressions.add({
      accountId: t.accountId,
      address: t.address,
      reason: "spamreport",
      eventId,
      messageId: t.messageId,
      detail: r.reply?.slice(0, 1000) ?? `feedback type ${r.feedbackType}`,
    });
    return { applied: true, eventId: eventId ?? null, suppressed, reason: "complaint" };
  };

  const record = db.transaction(
    (records: readonly InboundReportRecord[], notifications: readonly OutcomeNotification[]) => {
      const results = records.map(recordOne);
      const bounced = new Set<number>();
      records.forEach((r, i) => {
        if (r.kind === "bounce" && results[i]!.applied) bounced.add(r.recipientId);
      });
      // After the bounce events: enqueue continues the event ids from the newest one written.
      const due = notifications.filter((n) => n.recipientIds.some((id) => bounced.has(id)));
      if (due.length > 0) enqueue(due.map((n) => n.message));
      return results;
    },
  );

  return {
    async getBounceTarget(messageId: string, recipientId: number): Promise<BounceTarget | undefined> {
      const t = target(messageId, recipientId);
      if (!t) return undefined;
      const { attempts: _attempts, ...rest } = t;
      return rest;
    },
    async recordInboundReport(
      records: readonly InboundReportRecord[],
      notifications: readonly OutcomeNotification[] = [],
    ): Promise<InboundReportResult[]> {
      if (records.length === 0) return [];
      return record.immediate(records, notifications);
    },
  };
}

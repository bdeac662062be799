/**
 * Asynchronous bounces and complaints in PostgreSQL (Store part BounceStore; sqlite/bounces.ts is
 * its twin). One transaction per report holds the recipient's state change, its event and any
 * suppression; the recipient row is locked first (FOR UPDATE), so two nodes receiving the same
 * report at once apply it once. Issue 11: the DSNs to senders the report's bounces cause are
 * inserted in that transaction (`insertMessages`), only for a bounce that applied.
 */
import type {
  BounceStore,
  BounceTarget,
  InboundReportRecord,
  InboundReportResult,
  OutcomeNotification,
  RecipientState,
} from "../types.js";
import { type Client, type Pool, transaction } from "./connection.js";
import { writeEvents } from "./events.js";
import { earliest, insertMessages } from "./messages.js";
import { RECIPIENT_STATE } from "./queue.js";
import { insertSuppressions } from "./suppressions.js";

type Target = BounceTarget & { readonly attempts: number };

async function findTarget(
  client: Client | Pool,
  messageId: string,
  recipientId: number,
  lock: boolean,
): Promise<Target | undefined> {
  const { rows } = await client.query(
    `SELECT r.id, r.message_id, r.address, ${RECIPIENT_STATE} AS state, r.attempts, m.account_id, m.mail_from, m.received_at
     FROM recipients r JOIN messages m ON m.id = r.message_id LEFT JOIN queue q ON q.recipient_id = r.id
     WHERE r.id = $1 AND r.message_id = $2 ${lock ? "FOR UPDATE OF r" : ""}`,
    [recipientId, messageId],
  );
  const row = rows[0];
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

/** `onDue` hears of a DSN's due time before it commits (claim-watermark.ts), as enqueueMessages does. */
export function createBounceStore(pool: Pool, onDue: (at: number) => void = () => {}): BounceStore {
  return {
    async getBounceTarget(messageId: string, recipientId: number): Promise<BounceTarget | undefined> {
      const t = await findTarget(pool, messageId, recipientId, false);
      if (!t) return undefined;
      const { attempts: _attempts, ...rest } = t;
      return rest;
    },

    async recordInboundReport(
      records: readonly InboundReportRecord[],
      notifications: readonly OutcomeNotification[] = [],
    ): Promise<InboundReportResult[]> {
      if (records.length === 0) return [];
      return transaction(pool, async (client) => {
        const results: InboundReportResult[] = [];
        const bounced = new Set<number>();
        for (const r of records) {
          const result = await recordOne(client, r);
          if (r.kind === "bounce" && result.applied) bounced.add(r.recipientId);
          results.push(result);
        }
        const due = notifications.filter((n) => n.recipientIds.some((id) => bounced.has(id)));
        if (due.length > 0) {
          onDue(earliest(due, (n) => n.message.receivedAt));
          // Last: insertMessages writes its events under the event lock and sends the wake-up.
          await insertMessages(
            client,
            due.map((n) => n.message),
          );
        }
        return results;
      });
    },
  };
}

/** One record in the caller's transaction; the recipient row is locked first. */
async function recordOne(client: Client, r: InboundReportRecord): Promise<InboundReportResult> {
  const t = await findTarget(client, r.messageId, r.recipientId, true);
  if (!t) return { applied: false, eventId: null, suppressed: false, reason: "unknown recipient" };
  const now = Date.now();
  if (r.kind === "bounce") {
    const reply = r.reply.slice(0, 1000);
    const moved = await client.query(
      "UPDATE recipients SET state = 'bounced', last_reply = $2, updated_at = $3 WHERE id = $1 AND state = 'delivered'",
      [t.recipientId, reply, now],
    );
    if ((moved.rowCount ?? 0) === 0) {
      return { applied: false, eventId: null, suppressed: false, reason: `recipient is ${t.state}` };
    }
    await client.query(
      `INSERT INTO delivery_attempts (recipient_id, message_id, at, duration_ms, status, mx_host, reply)
             VALUES ($1, $2, $3, 0, 'bounced', $4, $5)`,
      [t.recipientId, t.messageId, r.at, r.remoteMta, reply],
    );
    const [eventId] = await writeEvents(
      client,
      [
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
      ],
      now,
    );
    const suppressed =
      r.bounceHard &&
      (
        await insertSuppressions(client, [
          {
            accountId: t.accountId,
            address: t.address,
            reason: r.bounceClass,
            eventId,
            messageId: t.messageId,
            detail: reply,
          },
        ])
      ).size > 0;
    return { applied: true, eventId: eventId ?? null, suppressed, reason: "bounced" };
  }
  const complained = await client.query(
    "SELECT 1 FROM events WHERE message_id = $1 AND recipient = $2 AND type = 'spamreport' LIMIT 1",
    [t.messageId, t.address],
  );
  if (complained.rows.length > 0) {
    return { applied: false, eventId: null, suppressed: false, reason: "complaint already recorded" };
  }
  const [eventId] = await writeEvents(
    client,
    [
      {
        type: "spamreport",
        messageId: t.messageId,
        accountId: t.accountId,
        recipient: t.address,
        at: now,
        reply: r.reply?.slice(0, 1000) ?? null,
        reason: r.feedbackType,
      },
    ],
    now,
  );
  const added = await insertSuppressions(client, [
    {
      accountId: t.accountId,
      address: t.address,
      reason: "spamreport",
      eventId,
      messageId: t.messageId,
      detail: r.reply?.slice(0, 1000) ?? `feedback type ${r.feedbackType}`,
    },
  ]);
  return { applied: true, eventId: eventId ?? null, suppressed: added.size > 0, reason: "complaint" };
}

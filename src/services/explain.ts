/**
 * One sentence per recipient saying why it is not delivered yet or why it failed (issue 9):
 * "deferred 3 times: 452 4.2.2 mailbox full at mx1.example.com; next attempt 14:05 UTC;
 * expires in 61 h", "waiting: destination example.com backed off after 3 refused connections
 * until 14:02 UTC", "held by an operator". The HTTP API (GET /v1/messages/{id}) and
 * `petrel queue show` print the same sentence. A pure function over plain data.
 */
import type { DeliveryAttempt, DestinationBackoff, RecipientDetail } from "../store/types.js";

/** "14:05 UTC" today, else "2026-12-03 14:05 UTC". */
export function clock(ms: number, now: number): string {
  const iso = new Date(ms).toISOString();
  const sameDay = iso.slice(0, 10) === new Date(now).toISOString().slice(0, 10);
  return `${sameDay ? "" : `${iso.slice(0, 10)} `}${iso.slice(11, 16)} UTC`;
}

/** "61 h", "25 min", "40 s". */
function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

function at(attempt: DeliveryAttempt | undefined): string {
  return attempt?.mxHost ? ` at ${attempt.mxHost}` : "";
}

export interface ExplainInput {
  readonly recipient: RecipientDetail;
  /** This recipient's attempts, oldest first. */
  readonly attempts: readonly DeliveryAttempt[];
  readonly expiresAt: number;
  /** Destination backoff in force for the recipient's domain, if any. */
  readonly backoff?: DestinationBackoff | undefined;
  readonly now: number;
}

export function explainRecipient(input: ExplainInput): string {
  const { recipient: r, attempts, now } = input;
  const last = attempts.at(-1);
  const reply = last?.reply ?? r.lastReply ?? "";
  const expires = `expires in ${duration(input.expiresAt - now)}`;
  switch (r.state) {
    case "delivered":
      return `delivered${last ? ` ${clock(last.at, now)}` : ""}${at(last)}: ${reply}`.trim();
    case "bounced":
      return `bounced${at(last)}: ${reply}`.trim();
    case "expired":
      return `expired after ${r.attempts} attempt${r.attempts === 1 ? "" : "s"}${reply ? `; last reply: ${reply}` : ""}`;
    case "dropped":
      return `dropped: ${reply || "not attempted"}`;
    case "held":
      return "held by an operator";
    case "delivering":
      return `being delivered now (attempt ${r.attempts + 1})`;
    case "scheduled":
      // Issue 9, scheduled send: next_attempt_at is the send_at.
      return `scheduled for ${clock(r.nextAttemptAt ?? now, now)}`;
    case "queued":
    case "deferred": {
      if (input.backoff && input.backoff.until > now) {
        const b = input.backoff;
        return `waiting: destination ${b.domain} backed off after ${b.failures} refused connection${b.failures === 1 ? "" : "s"} until ${clock(b.until, now)}; ${expires}`;
      }
      const next = r.nextAttemptAt;
      if (r.state === "queued" && r.attempts === 0) {
        return next !== null && next > now
          ? `scheduled for ${clock(next, now)}`
          : "queued: first attempt due now";
      }
      const when = next === null || next <= now ? "next attempt due now" : `next attempt ${clock(next, now)}`;
      return `deferred ${r.attempts} time${r.attempts === 1 ? "" : "s"}: ${reply}${at(last)}; ${when}; ${expires}`;
    }
  }
}

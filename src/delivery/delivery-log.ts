/**
 * One Postfix-style line per attempt per recipient (design convention 10), e.g.
 *   01J…: to=<ann@example.com>, relay=mx1.example.com[192.0.2.1]:25, delay=0.42, tls=TLSv1.3
 *   TLS_AES_256_GCM_SHA384, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4XyZ)
 * so operators can grep a queue ID or an address through the log as they would with Postfix.
 * Security: the remote reply is untrusted text; control characters are replaced before logging.
 */
import type { OutcomeState } from "../store/types.js";

export interface DeliveryLogFields {
  readonly queueId: string;
  readonly to: string;
  readonly mxHost: string | null;
  readonly ip: string | null;
  readonly port: number | null;
  /** Seconds from receipt to this attempt's end. */
  readonly delay: number;
  readonly tls: string | null;
  readonly dsn: string;
  readonly state: OutcomeState;
  readonly reply: string;
}

const STATUS: Record<OutcomeState, string> = {
  delivered: "sent",
  deferred: "deferred",
  bounced: "bounced",
  expired: "expired",
};

export function deliveryLogLine(f: DeliveryLogFields): string {
  const relay = f.mxHost ? `${f.mxHost}[${f.ip ?? "?"}]:${f.port ?? "?"}` : "none";
  const reply = f.reply.replace(/[\x00-\x1f\x7f]/g, " ");
  return (
    `${f.queueId}: to=<${f.to}>, relay=${relay}, delay=${f.delay.toFixed(2)}, tls=${f.tls ?? "none"}, ` +
    `dsn=${f.dsn}, status=${STATUS[f.state]} (${reply})`
  );
}

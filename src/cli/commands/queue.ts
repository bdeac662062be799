/**
 * `petrel queue`: inspect the spool — what is queued, for whom, in which state — and act on it:
 * retry now, hold and release, delete (drop, recorded as "dropped by operator").
 * The actions work while `petrel serve` runs: they change the store, which the workers read.
 * Thin over src/services/queue.ts.
 */
import type { Command } from "commander";
import { displayAddress } from "../../address.js";
import { listQueue, SHOWN_STATES as STATES, showMessage, stateFilter } from "../../services/queue.js";
import type { DestinationThrottle, QueueCounts, RecipientState } from "../../store/types.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { age, isoTime, printFields, printJson, printTable } from "../output.js";
import { registerQueueActions } from "./queue-actions.js";

export function registerQueue(program: Command): void {
  const queue = program.command("queue").description("inspect queued messages");
  withCommonOptions(
    queue
      .command("list")
      .description("list queued messages (ID, age, from, recipients, state)")
      .option("-s, --state <state>", `only messages with a recipient in this state (${STATES.join(", ")})`)
      .option("--domain <domain>", "only messages with a recipient at this domain")
      .option("-l, --limit <n>", "at most this many messages", (v) => Number.parseInt(v, 10), 1000)
      .option("--json", "print JSON"),
  ).action(
    async (options: CommonOptions & { state?: string; domain?: string; limit: number; json?: boolean }) => {
      stateFilter(options.state, 0); // validated before opening the store
      await withServices(options, async (ctx) => {
        const {
          counts,
          messages: list,
          throttles,
        } = await listQueue(ctx, {
          ...(options.state ? { state: options.state } : {}),
          ...(options.domain ? { domain: options.domain } : {}),
          limit: options.limit,
        });
        if (options.json) return printJson({ counts, messages: list, throttles });
        printCounts(counts);
        printThrottles(throttles);
        if (list.length === 0) {
          process.stdout.write("The queue is empty.\n");
          return;
        }
        printTable(
          ["ID", "AGE", "SIZE", "FROM", "RCPTS", "STATE", "RECIPIENTS"],
          list.map((m) => [
            m.id,
            age(m.receivedAt),
            m.size,
            m.mailFrom,
            m.recipientCount,
            stateSummary(m.states),
            abbreviate(m.recipients),
          ]),
        );
      });
    },
  );
  withCommonOptions(
    queue
      .command("show")
      .description("show one message: envelope and each recipient's state")
      .argument("<id>", "queue ID")
      .option("--json", "print JSON"),
  ).action(async (id: string, options: CommonOptions & { json?: boolean }) => {
    await withServices(options, async (ctx) => {
      const shown = await showMessage(ctx, id);
      if (options.json) return printJson(shown);
      const { attempts, headers, ...message } = shown;
      const out = process.stdout;
      printFields([
        ["ID", message.id],
        ["Subject", headers.subject],
        ["From", headers.from],
        ["Message-ID", headers.messageId],
        ["Mail from", displayAddress(message.mailFrom)],
        ["Size", `${message.size} bytes`],
        ["Account", message.accountName],
        ["Key", message.apiKeyName ?? "(trusted network)"],
        ["Client", message.clientIp],
        ["Received", isoTime(message.receivedAt)],
        ["Expires", isoTime(message.expiresAt)],
      ]);
      out.write("\n");
      printTable(
        ["RECIPIENT", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST REPLY"],
        message.recipientDetails.map((r) => [
          displayAddress(r.address),
          r.state,
          r.attempts,
          isoTime(r.nextAttemptAt),
          r.lastReply ?? "-",
        ]),
      );
      out.write("\nWhy:\n");
      for (const r of message.recipientDetails) out.write(`  ${r.address}: ${r.explanation}\n`);
      if (attempts.length > 0) {
        out.write("\nAttempts:\n");
        printTable(
          ["TIME", "RECIPIENT", "STATUS", "RELAY", "TLS", "REPLY"],
          attempts.map((a) => [
            isoTime(a.at),
            displayAddress(a.recipient),
            a.status,
            a.mxHost ? `${a.mxHost}[${a.ip}]:${a.port}` : "-",
            a.tls ?? "-",
            a.reply,
          ]),
        );
      }
    });
  });
  registerQueueActions(queue);
}

/** Counts by state, then by destination (with any destination backoff), as `postqueue -p` sums up. */
function printCounts(counts: QueueCounts): void {
  const states = Object.entries(counts.byState);
  const out = process.stdout;
  out.write(
    `Recipients by state: ${states.length ? states.map(([s, n]) => `${s} ${n}`).join(", ") : "none"}\n`,
  );
  if (counts.byDestination.length > 0) {
    out.write("\n");
    printTable(
      ["DESTINATION", "PENDING", "BACKOFF UNTIL"],
      counts.byDestination.map((d) => [
        d.domain,
        Object.entries(d.states)
          .map(([s, n]) => `${s}:${n}`)
          .join(","),
        isoTime(d.backoffUntil),
      ]),
    );
  }
  out.write("\n");
}

/** Issue 11: destinations slowed by adaptive throttling, with the reply that caused it. */
function printThrottles(throttles: readonly DestinationThrottle[]): void {
  if (throttles.length === 0) return;
  const limits = (l: DestinationThrottle["limits"]) =>
    `${l.messagesPerMinute > 0 ? `${l.messagesPerMinute}/min` : "no rate limit"}, ${l.connections} conn`;
  process.stdout.write("Throttled destinations (adaptive throttling):\n");
  printTable(
    ["DESTINATION", "DOMAINS", "NOW", "CONFIGURED", "SINCE", "BECAUSE OF"],
    throttles.map((t) => [
      t.provider ?? t.destination,
      abbreviate(t.domains),
      limits(t.limits),
      limits(t.configured),
      isoTime(t.since),
      t.reply,
    ]),
  );
  process.stdout.write("\n");
}

function stateSummary(states: Partial<Record<RecipientState, number>>): string {
  const entries = Object.entries(states);
  return entries.length === 1 ? entries[0]![0] : entries.map(([s, n]) => `${s}:${n}`).join(",");
}

function abbreviate(recipients: readonly string[]): string {
  return recipients.length <= 2
    ? recipients.join(", ")
    : `${recipients.slice(0, 2).join(", ")} +${recipients.length - 2}`;
}

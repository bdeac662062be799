/**
 * `petrel events tail`: the event log — every recipient state change (processed, deferred,
 * delivered, bounce, expired, dropped, spamreport) with its details and the sender's metadata.
 * `--follow` keeps printing new events as they are committed (polling the store, which `serve`
 * writes), like `tail -f`; `--json` prints one JSON object per line, as webhooks send them.
 */
import type { Command } from "commander";
import { PetrelError } from "../../errors.js";
import { eventFilter, listEvents, newestEventId, parseEventTypes } from "../../services/events.js";
import { EVENT_TYPES, type PetrelEvent } from "../../store/types.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { isoTime } from "../output.js";

interface TailOptions extends CommonOptions {
  follow?: boolean;
  message?: string;
  recipient?: string;
  type?: string;
  account?: string;
  lines: number;
  interval: number;
  json?: boolean;
}

export function registerEvents(program: Command): void {
  const events = program.command("events").description("the event log: what happened to each recipient");
  withCommonOptions(
    events
      .command("tail")
      .description("print the latest events (and, with --follow, new ones as they happen)")
      .option("-f, --follow", "keep printing new events until interrupted")
      .option("-m, --message <id>", "only events of this message (queue ID)")
      .option("-r, --recipient <address>", "only events of this recipient")
      .option("-t, --type <types>", `only these types, comma-separated (${EVENT_TYPES.join(", ")})`)
      .option("-a, --account <account>", "only events of this account")
      .option(
        "-n, --lines <n>",
        "how many of the latest events to print first",
        (v) => Number.parseInt(v, 10),
        20,
      )
      .option(
        "--interval <ms>",
        "with --follow: how often to look for new events",
        (v) => Number.parseInt(v, 10),
        500,
      )
      .option("--json", "one JSON object per line (the webhook format)"),
  ).action(async (options: TailOptions) => {
    parseEventTypes(options.type); // before opening the store
    if (!Number.isInteger(options.lines) || options.lines < 0)
      throw new PetrelError("invalid-input", "--lines must be a number ≥ 0");
    await withServices(options, async (ctx) => {
      const filter = await eventFilter(ctx, {
        ...(options.account ? { account: options.account } : {}),
        ...(options.message ? { message: options.message } : {}),
        ...(options.recipient ? { recipient: options.recipient } : {}),
        ...(options.type ? { types: options.type } : {}),
      });
      const print = options.json ? printJsonLine : printLine;
      const first =
        options.lines > 0 ? await listEvents(ctx, { ...filter, limit: options.lines, newest: true }) : [];
      first.forEach(print);
      if (!options.follow) {
        if (first.length === 0 && !options.json) process.stderr.write("No events.\n");
        return;
      }
      // The cursor starts at the newest event of any kind, so only new events follow.
      let after = first.at(-1)?.id ?? (await newestEventId(ctx));
      // On stderr, so that --json output stays one event per line; scripts can wait for it.
      process.stderr.write("Following new events (Ctrl-C to stop)\n");
      let stop = false;
      const interrupted = new Promise<void>((resolve) => {
        const done = () => {
          stop = true;
          resolve();
        };
        process.once("SIGINT", done).once("SIGTERM", done);
      });
      while (!stop) {
        // Up to the newest event now (of any kind), so that the cursor moves past events the
        // filter does not match too, and the next poll reads only what is new.
        const bound = await newestEventId(ctx);
        const batch =
          bound > after
            ? await listEvents(ctx, { ...filter, afterId: after, upToId: bound, limit: 1000 })
            : [];
        batch.forEach(print);
        const full = batch.length === 1000;
        if (bound > after) after = full ? batch.at(-1)!.id : bound;
        if (!full) {
          await Promise.race([interrupted, new Promise((resolve) => setTimeout(resolve, options.interval))]);
        }
      }
    });
  });
}

function printJsonLine(event: PetrelEvent): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function printLine(event: PetrelEvent): void {
  process.stdout.write(
    `${isoTime(event.timestamp)}  ${event.type.padEnd(10)}  ${event.messageId}  ${event.recipient}  ${detail(event)}\n`,
  );
}

/** The part of an event that says why: attempt and next try, relay and reply, class, reason. */
function detail(e: PetrelEvent): string {
  const parts: string[] = [];
  if (e.type === "deferred") parts.push(`attempt ${e.attempt}, next ${isoTime(e.nextAttemptAt)}`);
  if (e.type === "bounce" && e.bounceClass)
    parts.push(`${e.bounceClass} (${e.bounceHard ? "hard" : "soft"})`);
  if (e.reason) parts.push(`reason=${e.reason}`);
  if (e.mxHost) parts.push(`relay=${e.mxHost}[${e.ip ?? "?"}]`);
  if (e.reply) parts.push(`(${e.reply})`);
  if (e.categories.length > 0) parts.push(`categories=${e.categories.join(",")}`);
  if (e.metadata) parts.push(`metadata=${JSON.stringify(e.metadata)}`);
  return parts.join(" ");
}

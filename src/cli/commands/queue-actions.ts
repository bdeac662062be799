/**
 * `petrel queue retry|hold|release|delete|cancel`: the operator's hands on the queue, on one
 * message (by queue ID) or, with --domain and/or --state, on every message with a recipient
 * matching them (`petrel queue release --domain example.com --state held`; --account limits it
 * to one account). Each is one store call per message; `serve` picks the change up at its next
 * claim (retry and release make mail due now). Deleting drops every recipient not yet final and
 * records "dropped by operator" for each, so nothing accepted disappears without a final record;
 * cancelling drops only those not yet attempted (reason cancelled). Thin over
 * src/services/queue.ts and queue-bulk.ts.
 */
import type { Command } from "commander";
import { PetrelError } from "../../errors.js";
import type { ServiceContext } from "../../services/context.js";
import {
  cancelMessage,
  deleteMessage,
  holdMessage,
  RECIPIENT_STATES,
  releaseMessage,
  retryMessages,
} from "../../services/queue.js";
import { type BulkAction, bulkQueueAction } from "../../services/queue-bulk.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { printJson } from "../output.js";

type ActionOptions = CommonOptions & {
  json?: boolean;
  all?: boolean;
  domain?: string;
  state?: string;
  account?: string;
};

function report(options: ActionOptions, result: Record<string, unknown>, text: string): void {
  if (options.json) printJson(result);
  else process.stdout.write(`${text}\n`);
}

interface ActionSpec {
  readonly name: BulkAction;
  readonly description: string;
  /** What the text report says of the recipients changed. */
  readonly done: string;
  readonly one: (ctx: ServiceContext, id: string) => Promise<{ id: string | null; recipients: number }>;
}

const ACTIONS: readonly ActionSpec[] = [
  {
    name: "retry",
    description: "make deferred mail due now (one message, --all, or by filter), lifting destination backoff",
    done: "due now",
    one: (ctx, id) => retryMessages(ctx, { id }),
  },
  {
    name: "hold",
    description: "hold messages: their queued and deferred recipients wait until released",
    done: "held",
    one: holdMessage,
  },
  {
    name: "release",
    description: "release held messages: due now (or at their send time, if scheduled and still ahead)",
    done: "released",
    one: releaseMessage,
  },
  {
    name: "delete",
    description: 'delete messages: recipients not yet delivered end as "dropped by operator"',
    done: "dropped",
    one: (ctx, id) => deleteMessage(ctx, id),
  },
  {
    name: "cancel",
    description: 'cancel (scheduled) messages: recipients not yet attempted end "dropped", reason cancelled',
    done: "cancelled",
    one: cancelMessage,
  },
];

export function registerQueueActions(queue: Command): void {
  for (const spec of ACTIONS) {
    const command = queue
      .command(spec.name)
      .description(spec.description)
      .argument("[id]", "queue ID (or use --domain/--state for every matching message)")
      .option("--domain <domain>", "every message with a recipient at this domain")
      .option(
        "--state <state>",
        `every message with a recipient in this state (${RECIPIENT_STATES.join(", ")})`,
      )
      .option("-a, --account <account>", "with --domain/--state: only this account's messages")
      .option("--json", "print JSON");
    if (spec.name === "retry") command.option("--all", "every queued and deferred message");
    withCommonOptions(command).action(async (id: string | undefined, options: ActionOptions) => {
      const bulk = options.domain !== undefined || options.state !== undefined;
      if (id && (bulk || options.all))
        throw new PetrelError("invalid-input", "give a queue ID or a filter (--domain, --state), not both");
      if (!id && !bulk && !options.all)
        throw new PetrelError(
          "invalid-input",
          `give a queue ID or a filter (--domain, --state)${spec.name === "retry" ? " or --all" : ""}`,
        );
      await withServices(options, async (ctx) => {
        if (bulk) {
          const result = await bulkQueueAction(
            ctx,
            spec.name,
            { domain: options.domain, state: options.state },
            options.account,
          );
          report(
            options,
            { ...result },
            `${result.messages} message(s) matched, ${result.recipients} recipient(s) ${spec.done}`,
          );
          return;
        }
        const result = id ? await spec.one(ctx, id) : await retryMessages(ctx, { all: true });
        report(options, { ...result }, `${result.recipients} recipient(s) ${spec.done}`);
      });
    });
  }
}

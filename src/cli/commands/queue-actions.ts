/**
 * `petrel queue retry|hold|release|delete`: the operator's hands on the queue. Each is one store
 * call; `serve` picks the change up at its next claim (retry and release make mail due now).
 * Deleting drops every recipient not yet final and records "dropped by operator" for each, so
 * nothing accepted disappears without a final record. Thin over src/services/queue.ts.
 */
import type { Command } from "commander";
import { PetrelError } from "../../errors.js";
import {
  cancelMessage,
  deleteMessage,
  holdMessage,
  releaseMessage,
  retryMessages,
} from "../../services/queue.js";
import { type CommonOptions, withCommonOptions, withServices } from "../context.js";
import { printJson } from "../output.js";

type ActionOptions = CommonOptions & { json?: boolean };

function report(options: ActionOptions, result: Record<string, unknown>, text: string): void {
  if (options.json) printJson(result);
  else process.stdout.write(`${text}\n`);
}

export function registerQueueActions(queue: Command): void {
  withCommonOptions(
    queue
      .command("retry")
      .description("make deferred mail due now (one message, or --all), lifting destination backoff")
      .argument("[id]", "queue ID")
      .option("--all", "every queued and deferred message")
      .option("--json", "print JSON"),
  ).action(async (id: string | undefined, options: ActionOptions & { all?: boolean }) => {
    if (!id && !options.all) throw new PetrelError("invalid-input", "give a queue ID or --all");
    await withServices(options, async (ctx) => {
      const result = await retryMessages(ctx, id ? { id } : { all: true });
      report(options, { ...result }, `${result.recipients} recipient(s) due now`);
    });
  });

  withCommonOptions(
    queue
      .command("hold")
      .description("hold a message: its queued and deferred recipients wait until released")
      .argument("<id>", "queue ID")
      .option("--json", "print JSON"),
  ).action(async (id: string, options: ActionOptions) => {
    await withServices(options, async (ctx) => {
      const result = await holdMessage(ctx, id);
      report(options, { ...result }, `${result.recipients} recipient(s) held`);
    });
  });

  withCommonOptions(
    queue
      .command("release")
      .description("release a held message: due now")
      .argument("<id>", "queue ID")
      .option("--json", "print JSON"),
  ).action(async (id: string, options: ActionOptions) => {
    await withServices(options, async (ctx) => {
      const result = await releaseMessage(ctx, id);
      report(options, { ...result }, `${result.recipients} recipient(s) released`);
    });
  });

  withCommonOptions(
    queue
      .command("delete")
      .description('delete a message: recipients not yet delivered end as "dropped by operator"')
      .argument("<id>", "queue ID")
      .option("--json", "print JSON"),
  ).action(async (id: string, options: ActionOptions) => {
    await withServices(options, async (ctx) => {
      const result = await deleteMessage(ctx, id);
      report(options, { ...result }, `${result.recipients} recipient(s) dropped`);
    });
  });

  withCommonOptions(
    queue
      .command("cancel")
      .description(
        'cancel a (scheduled) message: recipients not yet attempted end "dropped", reason cancelled',
      )
      .argument("<id>", "queue ID")
      .option("--json", "print JSON"),
  ).action(async (id: string, options: ActionOptions) => {
    await withServices(options, async (ctx) => {
      const result = await cancelMessage(ctx, id);
      report(options, { ...result }, `${result.recipients} recipient(s) cancelled`);
    });
  });
}

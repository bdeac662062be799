/**
 * `petrel queue retry|hold|release|delete`: the operator's hands on the queue. Each is one store
 * call; `serve` picks the change up at its next claim (retry and release make mail due now).
 * Deleting drops every recipient not yet final and records "dropped by operator" for each, so
 * nothing accepted disappears without a final record.
 */
import type { Command } from "commander";
import { UsageError } from "../../errors.js";
import type { Store } from "../../store/types.js";
import { type CommonOptions, withCommonOptions, withStore } from "../context.js";
import { printJson } from "../output.js";

type ActionOptions = CommonOptions & { json?: boolean };

async function requireMessage(store: Store, id: string): Promise<void> {
  if (!(await store.getMessage(id))) throw new UsageError(`no message ${id}`);
}

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
    if (!id && !options.all) throw new UsageError("give a queue ID or --all");
    await withStore(options, async (store) => {
      if (id) await requireMessage(store, id);
      const recipients = await store.retryNow(id ? { messageId: id } : { all: true }, Date.now());
      report(options, { id: id ?? null, recipients }, `${recipients} recipient(s) due now`);
    });
  });

  withCommonOptions(
    queue
      .command("hold")
      .description("hold a message: its queued and deferred recipients wait until released")
      .argument("<id>", "queue ID")
      .option("--json", "print JSON"),
  ).action(async (id: string, options: ActionOptions) => {
    await withStore(options, async (store) => {
      await requireMessage(store, id);
      const recipients = await store.holdMessage(id, Date.now());
      report(options, { id, recipients }, `${recipients} recipient(s) held`);
    });
  });

  withCommonOptions(
    queue
      .command("release")
      .description("release a held message: due now")
      .argument("<id>", "queue ID")
      .option("--json", "print JSON"),
  ).action(async (id: string, options: ActionOptions) => {
    await withStore(options, async (store) => {
      await requireMessage(store, id);
      const recipients = await store.releaseMessage(id, Date.now());
      report(options, { id, recipients }, `${recipients} recipient(s) released`);
    });
  });

  withCommonOptions(
    queue
      .command("delete")
      .description('delete a message: recipients not yet delivered end as "dropped by operator"')
      .argument("<id>", "queue ID")
      .option("--json", "print JSON"),
  ).action(async (id: string, options: ActionOptions) => {
    await withStore(options, async (store) => {
      await requireMessage(store, id);
      const recipients = await store.dropMessage(id, Date.now(), "dropped by operator");
      report(options, { id, recipients }, `${recipients} recipient(s) dropped`);
    });
  });
}

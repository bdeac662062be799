/**
 * `petrel nodes` (the cluster's nodes, with what each is doing) and `petrel drain` (stop this
 * data directory's serve gracefully). Thin over src/services/nodes.ts; docs/cluster.md.
 */
import type { Command } from "commander";
import { PetrelError } from "../../errors.js";
import { drainNode, listNodes } from "../../services/nodes.js";
import { type CommonOptions, configFrom, withCommonOptions, withServices } from "../context.js";
import { age, isoTime, printJson, printTable } from "../output.js";

export function registerNodes(program: Command): void {
  withCommonOptions(
    program
      .command("nodes")
      .description(
        "list the nodes on this store: id, host, version, started, last heartbeat, state, SMTP connections in, deliveries in flight (stale = no heartbeat for cluster.staleAfterMs)",
      )
      .option("--json", "print JSON"),
  ).action(async (options: CommonOptions & { json?: boolean }) => {
    await withServices(options, async (ctx) => {
      const nodes = await listNodes(ctx);
      if (options.json) return printJson(nodes);
      if (nodes.length === 0) {
        process.stdout.write("No node is registered (no petrel serve has run on this store).\n");
        return;
      }
      printTable(
        ["ID", "HOST", "VERSION", "STARTED", "HEARTBEAT", "STATE", "CONNECTIONS", "DELIVERIES"],
        nodes.map((n) => [
          n.id,
          n.name,
          n.version,
          isoTime(n.startedAt),
          `${age(n.heartbeatAt)} ago`,
          n.stale ? "stale" : n.state,
          n.connections,
          n.deliveries,
        ]),
      );
    });
  });

  withCommonOptions(
    program
      .command("drain")
      .description(
        "drain the petrel serve of this data directory (as SIGTERM does): stop accepting (421 4.3.2), finish or give back deliveries, leave `petrel nodes`, exit; waits until it has exited",
      )
      .option("--timeout <seconds>", "give up waiting after this long (default: smtp.shutdownGraceMs + 60 s)")
      .option("--json", "print JSON"),
  ).action(async (options: CommonOptions & { json?: boolean; timeout?: string }) => {
    const config = configFrom(options);
    const timeoutMs =
      options.timeout === undefined ? config.smtp.shutdownGraceMs + 60_000 : Number(options.timeout) * 1000;
    const result = await drainNode(config, timeoutMs);
    if (options.json) printJson(result);
    else if (result.drained)
      process.stdout.write(
        `Drained petrel serve (pid ${result.pid}) in ${(result.waitedMs / 1000).toFixed(1)} s\n`,
      );
    if (!result.drained)
      throw new PetrelError(
        "temporary-failure",
        `petrel serve (pid ${result.pid}) is still draining after ${(result.waitedMs / 1000).toFixed(1)} s`,
      );
  });
}

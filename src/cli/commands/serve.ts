/**
 * `petrel serve`: runs the relay until SIGTERM/SIGINT, then shuts down gracefully
 * (stop accepting, let DATA transactions finish within smtp.shutdownGraceMs, close the store).
 */
import type { Command } from "commander";
import { createLogger, LogSink } from "../../log.js";
import { listenerAddresses, removeListening, writeListening } from "../../services/listeners.js";
import { configFrom, withCommonOptions } from "../context.js";

interface ServeOptions {
  config?: string;
  dataDir?: string;
  host?: string;
  hostname?: string;
  submissionPort?: number;
  tlsPort?: number;
  alternatePort?: number;
}

const toPort = (value: string) => Number.parseInt(value, 10);

export function registerServe(program: Command): void {
  withCommonOptions(
    program
      .command("serve")
      .description("run the relay: SMTP submission on 587 (STARTTLS) and 465 (implicit TLS)")
      .option("--host <address>", "address to listen on (smtp.host)")
      .option("--hostname <name>", "name in the greeting and Received headers (hostname)")
      .option(
        "--submission-port <port>",
        "STARTTLS submission port (smtp.submission.port, default 587)",
        toPort,
      )
      .option("--tls-port <port>", "implicit TLS port (smtp.submissions.port, default 465)", toPort)
      .option(
        "--alternate-port <port>",
        "enable the alternate STARTTLS listener on this port (e.g. 2525)",
        toPort,
      ),
  ).action(async (options: ServeOptions) => {
    const config = configFrom(options, {
      "smtp.host": options.host,
      hostname: options.hostname,
      "smtp.submission.port": options.submissionPort,
      "smtp.submissions.port": options.tlsPort,
      "smtp.alternate.port": options.alternatePort,
      "smtp.alternate.enabled": options.alternatePort === undefined ? undefined : true,
    });
    const logSink = new LogSink();
    // Loaded here, not at the top: every other command (run by scripts and tests) would otherwise
    // pay for loading the server stack (Fastify, the OpenAPI tooling, prom-client) at each start.
    const { startPetrel } = await import("../../app/petrel.js");
    const logger = createLogger(config, logSink);
    const petrel = await startPetrel(config, logger, { logStats: logSink.stats });
    // Issue 11: the bound addresses, for `petrel send` and other clients (src/services/listeners.ts).
    writeListening(config, listenerAddresses(config, petrel.smtp.addresses, petrel.bounces?.port));
    logger.info({ dataDir: config.dataDir, store: petrel.store.kind }, "petrel is running");
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        logger.info({ signal }, "shutting down");
        process.off("SIGTERM", stop).off("SIGINT", stop);
        resolve();
      };
      process.on("SIGTERM", stop).on("SIGINT", stop);
    });
    removeListening(config);
    await petrel.close();
    logger.flush();
  });
}

/**
 * `petrel send`: submits a test message through the running server over SMTP (STARTTLS on the
 * submission port, AUTH with --key or PETREL_API_KEY), exactly as an application would. It
 * connects where the running `petrel serve` of this data directory listens (listening.json,
 * src/services/listeners.ts), else to the configured submission port.
 */
import { existsSync, readFileSync } from "node:fs";
import type { Command } from "commander";
import nodemailer from "nodemailer";
import { selfSignedPaths } from "../../app/certificate.js";
import { UsageError } from "../../errors.js";
import { submissionTarget } from "../../services/listeners.js";
import { type CommonOptions, configFrom, withCommonOptions } from "../context.js";

interface SendOptions extends CommonOptions {
  from: string;
  to: string[];
  subject: string;
  body: string;
  key?: string;
  server?: string;
  port?: number;
}

export function registerSend(program: Command): void {
  withCommonOptions(
    program
      .command("send")
      .description("send a test message through the running server (STARTTLS + AUTH on the submission port)")
      .requiredOption("-f, --from <address>", "sender (a verified domain or single sender)")
      .requiredOption("-t, --to <address...>", "recipient(s)")
      .option("-s, --subject <text>", "subject", "Test message from Petrel")
      .option("-b, --body <text>", "plain-text body", "This is a test message sent with petrel send.")
      .option(
        "-k, --key <key>",
        "API key (env: PETREL_API_KEY); without one, only a trusted network can send",
      )
      .option("--server <host>", "server to connect to (default: where petrel serve listens, else 127.0.0.1)")
      .option(
        "-p, --port <port>",
        "port (default: the port petrel serve listens on, else smtp.submission.port)",
        (v) => Number.parseInt(v, 10),
      ),
  ).action(async (options: SendOptions) => {
    const config = configFrom(options);
    const key = options.key ?? process.env.PETREL_API_KEY;
    const { certFile } = selfSignedPaths(config);
    const ca = config.smtp.tls.certFile
      ? undefined
      : existsSync(certFile)
        ? readFileSync(certFile)
        : undefined;
    const target = submissionTarget(config, { server: options.server, port: options.port });
    const transport = nodemailer.createTransport({
      host: target.host,
      port: target.port,
      secure: target.implicitTls,
      requireTLS: !target.implicitTls,
      tls: { ca, servername: ca ? "localhost" : undefined },
      auth: key ? { user: "apikey", pass: key } : undefined,
    });
    try {
      const info = await transport.sendMail({
        from: options.from,
        to: options.to,
        subject: options.subject,
        text: options.body,
      });
      process.stdout.write(`${info.response}\n`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ECONNREFUSED" || code === "ESOCKET") {
        const where =
          target.source === "serve"
            ? "where petrel serve said it listens"
            : target.source === "options"
              ? "given with --server/--port"
              : "from the configuration (no running petrel serve found for this data directory)";
        throw new UsageError(
          `cannot connect to ${target.host}:${target.port}, ${where}: ${(err as Error).message}`,
        );
      }
      throw err;
    } finally {
      transport.close();
    }
  });
}

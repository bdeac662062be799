/**
 * Structured logs through pino: human-readable on a terminal, JSON lines otherwise (for log
 * shippers). Secrets never reach a log call; see the Security lines of the modules that hold them.
 */
import pino, { type Logger } from "pino";
import pretty from "pino-pretty";
import type { PetrelConfig } from "./config/schema.js";

export type { Logger };

export function createLogger(config: Pick<PetrelConfig, "log">): Logger {
  const { level, format } = config.log;
  const usePretty = format === "pretty" || (format === "auto" && process.stdout.isTTY === true);
  if (usePretty) {
    return pino(
      { level },
      pretty({ colorize: true, sync: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" }),
    );
  }
  return pino({ level, base: undefined }, pino.destination({ dest: 1, sync: false }));
}

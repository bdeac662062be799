/**
 * Structured logs through pino: human-readable on a terminal, JSON lines otherwise (for log
 * shippers). Secrets never reach a log call; see the Security lines of the modules that hold them.
 * Lines go through LogSink (src/log-sink.ts): a full or broken stdout drops and counts lines, it
 * never stops or kills the process.
 */
import pino, { type Logger } from "pino";
import { prettyFactory } from "pino-pretty";
import type { PetrelConfig } from "./config/schema.js";
import { LogSink, type LogStats } from "./log-sink.js";

export type { Logger, LogStats };
export { LogSink };

/** `sink`: pass one to read its counters (`sink.stats`, for /metrics). */
export function createLogger(config: Pick<PetrelConfig, "log">, sink = new LogSink()): Logger {
  const { level, format } = config.log;
  const usePretty = format === "pretty" || (format === "auto" && process.stdout.isTTY === true);
  if (usePretty) {
    const pretty = prettyFactory({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" });
    return pino({ level }, {
      write: (line: string) => sink.write(pretty(line)),
      flush: (cb: (err?: Error) => void) => sink.flush(cb),
      flushSync: () => sink.flushSync(),
    } as unknown as pino.DestinationStream);
  }
  return pino({ level, base: undefined }, sink);
}

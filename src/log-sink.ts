/**
 * Where log lines go: stdout (fd 1), written asynchronously in batches, with a bounded buffer.
 *
 * Why not pino.destination (sonic-boom): on a full filesystem its asynchronous write emits an
 * unhandled 'error' that ends the process (ENOSPC), and its flushSync retries a failing write
 * forever (stdout to /dev/full: ports bound, nothing accepted, SIGTERM ignored — issue 13). A log
 * must never be the reason mail stops.
 *
 * Lines wait up to COALESCE_MS for others to join their write (issue 12): each write goes through
 * libuv's thread pool, and waking a pool thread and being woken by its completion cost ~30 µs of
 * CPU each on this machine (a worker-thread ping-pong here: 68 µs CPU per round trip). With a
 * write per line the seed load (bench:seed: three lines per session) made ~1.5 writes per
 * message; coalesced, at most one per COALESCE_MS.
 *
 * Invariants: at most one write in flight and at most MAX_BUFFERED bytes waiting; beyond that, and
 * whenever the destination fails, lines are dropped and counted (`LogStats`). The first failure
 * is reported once on stderr (itself guarded: stderr may be full too), and the recovery once.
 * flushSync (at exit) tries each waiting batch once and gives up at the first error.
 */
import { write, writeSync } from "node:fs";

/** Counters for /metrics: lines written and dropped, and failures of the destination. */
export interface LogStats {
  written: number;
  dropped: number;
  failures: number;
  /** Writes made (each carries every line waiting): fewer than lines under load. */
  writes: number;
}

const MAX_BUFFERED = 8 * 1024 * 1024;
const EAGAIN_RETRY_MS = 10;
/** How long flush() waits for the destination at most. */
const FLUSH_BUDGET_MS = 2000;
/** How long flushSync keeps retrying EAGAIN on a non-blocking pipe before giving up. */
const FLUSH_SYNC_BUDGET_MS = 1000;
/** How long a line may wait for others before it is written (a log line is not a commit). */
const COALESCE_MS = 10;

export class LogSink {
  readonly stats: LogStats = { written: 0, dropped: 0, failures: 0, writes: 0 };
  private pending: string[] = [];
  private pendingBytes = 0;
  private writing = false;
  private failing = false;
  /** The coalescing wait before the next write, while one is scheduled. */
  private due: NodeJS.Timeout | undefined;

  constructor(
    private readonly fd = 1,
    private readonly reportFd = 2,
  ) {}

  /** pino calls this with one serialised line (newline included). */
  write(line: string): boolean {
    if (this.pendingBytes + line.length > MAX_BUFFERED) {
      this.stats.dropped++;
      return true;
    }
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (!this.writing) this.schedule();
    return true;
  }

  /**
   * pino's logger.flush(cb): calls back when what is waiting has been written (or dropped), or
   * after FLUSH_BUDGET_MS at the latest — a stuck destination must not hold up the exit.
   */
  flush(cb: (err?: Error) => void = () => {}): void {
    const deadline = Date.now() + FLUSH_BUDGET_MS;
    if (this.due !== undefined) this.writeNow();
    const check = (): void => {
      if ((!this.writing && this.pending.length === 0) || Date.now() >= deadline) cb();
      else setTimeout(check, 5);
    };
    check();
  }

  /** At exit: one attempt per waiting batch, never an endless retry. */
  flushSync(): void {
    clearTimeout(this.due);
    this.due = undefined;
    const deadline = Date.now() + FLUSH_SYNC_BUDGET_MS;
    while (this.pending.length > 0) {
      const [batch, lines] = this.take();
      let buf = Buffer.from(batch);
      try {
        while (buf.length > 0) {
          try {
            buf = buf.subarray(writeSync(this.fd, buf));
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "EAGAIN" || Date.now() > deadline) throw err;
          }
        }
        this.stats.written += lines;
      } catch (err) {
        this.failed(err as NodeJS.ErrnoException, lines);
        this.stats.dropped += this.pending.length;
        this.pending = [];
        this.pendingBytes = 0;
        return;
      }
    }
  }

  private take(): [string, number] {
    const lines = this.pending.length;
    const batch = lines === 1 ? this.pending[0]! : this.pending.join("");
    this.pending = [];
    this.pendingBytes = 0;
    return [batch, lines];
  }

  /** The next write, after the coalescing wait (ref'd: a process ending on its own writes it first). */
  private schedule(): void {
    if (this.due === undefined) this.due = setTimeout(this.writeNow, COALESCE_MS);
  }

  private readonly writeNow = (): void => {
    clearTimeout(this.due);
    this.due = undefined;
    if (!this.writing) this.writeNext();
  };

  private writeNext(): void {
    if (this.pending.length === 0) {
      this.writing = false;
      return;
    }
    this.writing = true;
    const [batch, lines] = this.take();
    this.writeBuffer(Buffer.from(batch), lines);
  }

  private writeBuffer(buf: Buffer, lines: number): void {
    this.stats.writes++;
    write(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (err) {
        if (err.code === "EAGAIN") {
          setTimeout(() => this.writeBuffer(buf, lines), EAGAIN_RETRY_MS).unref();
          return;
        }
        this.failed(err, lines);
      } else if (n < buf.length) {
        this.writeBuffer(buf.subarray(n), lines);
        return;
      } else {
        this.stats.written += lines;
        if (this.failing) {
          this.failing = false;
          this.report(`petrel: log output works again (${this.stats.dropped} lines were dropped)\n`);
        }
      }
      // Lines that came during this write wait for their own coalescing turn.
      this.writing = false;
      if (this.pending.length > 0) this.schedule();
    });
  }

  private failed(err: NodeJS.ErrnoException, lines: number): void {
    this.stats.dropped += lines;
    this.stats.failures++;
    if (this.failing) return;
    this.failing = true;
    this.report(
      `petrel: cannot write log output (${err.code ?? err.message}); dropping log lines until it works again\n`,
    );
  }

  private report(text: string): void {
    try {
      writeSync(this.reportFd, text);
    } catch {
      // stderr fails too: nothing else to tell; the counters still say it.
    }
  }
}

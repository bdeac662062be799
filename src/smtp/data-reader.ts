/**
 * DATA body reader: finds the end-of-data mark, removes dot-stuffing and normalises line
 * endings, across arbitrary TCP chunk boundaries (RFC 5321 §4.1.1.4, §4.5.2).
 *
 * Invariants (SMTP smuggling defence, CVE-2023-51764 class):
 *  - Lines are delimited by CRLF only. The message ends only at <CR><LF>.<CR><LF> (or ".<CR><LF>"
 *    as the very first line); a bare LF or bare CR never ends a line for that purpose.
 *  - A dot at the start of a line (after CRLF) is removed (unstuffing), except when it is
 *    followed by a bare CR or LF: that is a malformed end mark, kept as content so the
 *    recipient sees exactly what was sent.
 *  - Every bare LF and bare CR in the content becomes CRLF; nothing is passed on raw.
 *  - `size` counts raw bytes received (before unstuffing), excluding the final ".<CR><LF>".
 *  - NUL bytes (RFC 5322 §2.1 and RFC 5321 allow none without BINARYMIME) never reach the
 *    content: with "reject" the reader marks `nul` and stops holding content (the session answers
 *    550 5.6.0); with "remove" they are dropped from the content. A receiver that discards NULs
 *    would otherwise see <CR><LF><NUL>.<CR><LF> end the DATA (SMTP smuggling through Petrel).
 *    They never take part in finding the end mark.
 * Once the size or line limit is exceeded (or a NUL seen with "reject") the reader keeps scanning
 * for the end mark but stops holding content. Performance: scans with Buffer.indexOf and keeps
 * zero-copy views of the input chunks while the content is small; from HEADROOM_MIN_BYTES on, it
 * is copied once into one buffer that grows in place, with room in front for the fields Petrel
 * prepends (message/headroom.ts), so a large message is held once, never joined at the end.
 * Security: the input is untrusted; memory held is bounded by maxSize plus one chunk (twice that
 * for content made only of bare line ends, each written as CRLF).
 */

import { GrowingContent } from "../message/headroom.js";

/**
 * Contents from this size on are copied into a GrowingContent (with headroom; they move to the
 * commit thread uncopied).
 */
const HEADROOM_MIN_BYTES = 64 * 1024;

const CR = 13;
const LF = 10;
const DOT = 46;

/** The address space reserved for a growing content is capped (it grows past it by moving once). */
const MAX_RESERVATION = 1024 * 1024 * 1024;

/** Runs shorter than this are copied (keep()); a block holds many of them. */
const SMALL_RUN = 256;
const SMALL_BLOCK = 64 * 1024;

const CRLF = Buffer.from("\r\n");
const DOT_CRLF = Buffer.from(".\r\n");

// Scanner states: what the bytes just before the current position were.
const NORMAL = 0; // inside a line
const LINE_START = 1; // just after CRLF (or at the start of the data)
const AFTER_DOT = 2; // after CRLF "." (the dot is held back)
const AFTER_DOT_CR = 3; // after CRLF "." CR (both held back)
const AFTER_CR = 4; // a CR ended the previous chunk (held back)

export class DataReader {
  /** Raw bytes of content received so far. */
  size = 0;
  tooBig = false;
  lineTooLong = false;
  /** A NUL byte was received (only set with nulBytes "reject"). */
  nul = false;
  /** NUL bytes dropped (nulBytes "remove"). */
  nulRemoved = 0;
  // nulBytes "remove": the chunk being fed, and the offset of its next NUL (-1: none left).
  private chunk: Buffer | null = null;
  private nextNul = -1;
  // Short runs of content are copied into `small` (see keep()); [smallStart, smallEnd) not yet in parts.
  private small: Buffer | null = null;
  private smallStart = 0;
  private smallEnd = 0;
  /** Evicted by the memory budget (buffer-budget.ts): the reply is 452 4.3.1. */
  overBudget = false;
  private parts: Buffer[] = [];
  /** The content once it reached HEADROOM_MIN_BYTES (parts is empty from then on). */
  private growing: GrowingContent | null = null;
  private held = 0;
  private state = LINE_START;
  private lineLen = 0;
  private discard = false;

  constructor(
    private readonly maxSize: number,
    /** Octets per line excluding CRLF; 0 = unlimited. */
    private readonly maxLine: number,
    private readonly nulBytes: "reject" | "remove" = "reject",
  ) {}

  /**
   * Scans `buf` from `start`. Returns the index just after the end-of-data mark, or -1 when the
   * whole buffer was consumed without finding it.
   */
  feed(buf: Buffer, start: number): number {
    const len = buf.length;
    const maxLine = this.maxLine;
    let i = start;
    let seg = start; // start of input not yet copied into parts
    let state = this.state;
    let lineLen = this.lineLen;
    let nextCr = -2; // cached indexOf results: -2 unknown, -1 none left in buf
    let nextLf = -2;
    let end = -1;
    // One memchr per chunk; a NUL found may lie after the end mark, which is checked below.
    const firstNul = this.nul ? -1 : buf.indexOf(0, start);
    this.chunk = firstNul !== -1 && this.nulBytes === "remove" ? buf : null;
    this.nextNul = firstNul;
    scan: while (i < len) {
      switch (state) {
        case NORMAL: {
          if (nextCr !== -1 && nextCr < i) nextCr = buf.indexOf(CR, i);
          if (nextLf !== -1 && nextLf < i) nextLf = buf.indexOf(LF, i);
          const j = nextCr === -1 ? nextLf : nextLf === -1 ? nextCr : Math.min(nextCr, nextLf);
          if (j === -1) {
            lineLen += len - i;
            if (maxLine > 0 && lineLen > maxLine) this.lineTooLong = true;
            i = len;
            break;
          }
          lineLen += j - i;
          if (maxLine > 0 && lineLen > maxLine) this.lineTooLong = true;
          lineLen = 0;
          if (buf[j] === LF) {
            // Bare LF (a CRLF is consumed at its CR): content, written as CRLF, not a line start.
            this.emit(buf, seg, j);
            this.emit(CRLF, 0, 2);
            seg = i = j + 1;
          } else if (j + 1 === len) {
            this.emit(buf, seg, j);
            seg = i = len;
            state = AFTER_CR;
          } else if (buf[j + 1] === LF) {
            i = j + 2;
            state = LINE_START;
          } else {
            this.emit(buf, seg, j); // bare CR
            this.emit(CRLF, 0, 2);
            seg = i = j + 1;
          }
          break;
        }
        case LINE_START:
          if (buf[i] === DOT) {
            this.emit(buf, seg, i);
            seg = ++i;
            state = AFTER_DOT;
          } else state = NORMAL;
          break;
        case AFTER_DOT: {
          const b = buf[i];
          if (b === CR) {
            seg = ++i;
            state = AFTER_DOT_CR;
          } else if (b === LF) {
            // ".<LF>" at a line start: a would-be end mark, kept as content.
            this.emit(DOT_CRLF, 0, 3);
            seg = ++i;
            state = NORMAL;
          } else state = NORMAL; // stuffed dot: dropped, seg already excludes it
          break;
        }
        case AFTER_DOT_CR:
          if (buf[i] === LF) {
            end = i + 1;
            break scan;
          }
          this.emit(DOT_CRLF, 0, 3); // ".<CR>x": dot kept, bare CR normalised
          state = NORMAL;
          break;
        case AFTER_CR:
          this.emit(CRLF, 0, 2);
          if (buf[i] === LF) {
            seg = ++i;
            state = LINE_START;
          } else state = NORMAL;
          break;
      }
    }
    if (end === -1) {
      this.emit(buf, seg, len);
      this.size += len - start;
    } else {
      this.size += end - start - 3; // the final ".<CR><LF>" is not content
    }
    this.chunk = null;
    this.state = state;
    this.lineLen = lineLen;
    if (this.size > this.maxSize) this.tooBig = true;
    if (firstNul !== -1 && (end === -1 || firstNul < end) && this.nulBytes === "reject") this.nul = true;
    if ((this.tooBig || this.lineTooLong || this.nul) && !this.discard) {
      this.discard = true;
      this.letGo();
    }
    return end;
  }

  /** True once content is no longer kept (too big, line too long, over budget). */
  get discarding(): boolean {
    return this.discard;
  }

  /** Stops keeping content (memory budget): what was held is let go at once. */
  drop(): void {
    this.overBudget = true;
    this.discard = true;
    this.letGo();
  }

  /** Lets go of what is held (the session ended mid-DATA); the reader keeps nothing more. */
  dispose(): void {
    this.discard = true;
    this.letGo();
  }

  /**
   * Whether content() copies what is held (a small content: its parts are joined); a large one
   * is already in its one buffer. For the memory budget (session.ts).
   */
  get contentCopies(): boolean {
    return this.growing === null;
  }

  /**
   * The message content; call once, after feed() found the end mark. A large one is the buffer
   * it was copied into as it arrived, with room in front for the header fields prepended later
   * (message/headroom.ts).
   */
  content(): Buffer {
    let out: Buffer;
    if (this.growing !== null) out = this.growing.finish();
    else {
      this.flushSmall();
      out = Buffer.concat(this.parts, this.held);
    }
    this.parts = [];
    this.small = null;
    this.growing = null;
    return out;
  }

  private letGo(): void {
    this.parts = [];
    this.held = 0;
    this.small = null;
    this.smallStart = this.smallEnd = 0;
    this.growing?.discard();
    this.growing = null;
  }

  private emit(buf: Buffer, from: number, to: number): void {
    if (to > from && !this.discard) {
      if (buf === this.chunk) {
        // The cached offset moves only forward, so finding NULs costs one pass over the chunk.
        if (this.nextNul !== -1 && this.nextNul < from) this.nextNul = buf.indexOf(0, from);
        if (this.nextNul !== -1 && this.nextNul < to) {
          this.emitWithoutNul(buf, from, to);
          return;
        }
      }
      this.keep(buf, from, to);
    }
  }

  /** emit() for a segment holding NULs: the runs between them, in order. */
  private emitWithoutNul(buf: Buffer, from: number, to: number): void {
    let runStart = from;
    let z = this.nextNul;
    for (; z !== -1 && z < to; z = buf.indexOf(0, z + 1)) {
      if (z > runStart) this.keep(buf, runStart, z);
      this.nulRemoved++;
      runStart = z + 1;
    }
    this.nextNul = z;
    if (to > runStart) this.keep(buf, runStart, to);
  }

  /**
   * Holds bytes of content: a long run as a view of the input chunk, a short one copied into a
   * shared block. One view per short line (10 MB of bare LFs or of stuffed dots: millions of
   * views and CRLF parts) held the event loop for 1.5 s; copies keep the part count at most
   * one per SMALL_RUN bytes.
   */
  private keep(buf: Buffer, from: number, to: number): void {
    const n = to - from;
    this.held += n;
    if (this.growing !== null) {
      this.growing.append(buf, from, to);
      return;
    }
    if (n >= SMALL_RUN) {
      this.flushSmall();
      this.parts.push(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
      if (this.held >= HEADROOM_MIN_BYTES) this.startGrowing();
      return;
    }
    let small = this.small;
    if (small === null || this.smallEnd + n > small.length) {
      this.flushSmall();
      small = this.small = Buffer.allocUnsafe(SMALL_BLOCK);
      this.smallStart = this.smallEnd = 0;
    }
    if (n === 1) small[this.smallEnd] = buf[from]!;
    else buf.copy(small, this.smallEnd, from, to);
    this.smallEnd += n;
    if (this.held >= HEADROOM_MIN_BYTES) this.startGrowing();
  }

  /** The content became large: from now on it is copied into one buffer as it arrives. */
  private startGrowing(): void {
    this.flushSmall();
    const growing = new GrowingContent(Math.min(this.maxSize, MAX_RESERVATION));
    for (const p of this.parts) growing.append(p, 0, p.length);
    this.growing = growing;
    this.parts = [];
    this.small = null;
    this.smallStart = this.smallEnd = 0;
  }

  private flushSmall(): void {
    if (this.small !== null && this.smallEnd > this.smallStart) {
      this.parts.push(this.small.subarray(this.smallStart, this.smallEnd));
      this.smallStart = this.smallEnd;
    }
  }
}

/**
 * Received bytes not yet processed by a session, as a list of chunks, with the two ways of
 * taking from it: command lines (LF-terminated, length-capped) and raw DATA bytes.
 *
 * Invariants: chunks are never copied except to join a line split across chunks; a line longer
 * than its cap is reported once (TOO_LONG) and the rest of it, up to the next LF, is dropped
 * as it arrives, so memory for a line stays bounded by the cap plus one chunk.
 * Security: input is untrusted; a line is decoded only after its length was checked.
 */

import { isUtf8 } from "node:buffer";

export const TOO_LONG = Symbol("too-long");
export const BAD_UTF8 = Symbol("bad-utf8");

export type LineResult = string | null | typeof TOO_LONG | typeof BAD_UTF8;

export class InputQueue {
  /** Bytes held. */
  size = 0;
  private chunks: Buffer[] = [];
  private pos = 0; // offset into chunks[0]
  private discardLine = false;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  clear(): void {
    this.chunks = [];
    this.pos = 0;
    this.size = 0;
    this.discardLine = false;
  }

  /** The first chunk and the offset of its first unprocessed byte, for the DATA reader. */
  head(): { buf: Buffer; pos: number } | undefined {
    const buf = this.chunks[0];
    return buf === undefined ? undefined : { buf, pos: this.pos };
  }

  /** Marks n bytes of the first chunk as processed. */
  consume(n: number): void {
    this.pos += n;
    this.size -= n;
    if (this.pos >= this.chunks[0]!.length) {
      this.chunks.shift();
      this.pos = 0;
    }
  }

  /**
   * The next complete line without its CRLF (or bare LF), null when more input is needed,
   * TOO_LONG when a line exceeds `limit(firstChunk, offset)` octets including its end.
   */
  nextLine(limit: (buf: Buffer, pos: number) => number): LineResult {
    for (;;) {
      const head = this.chunks[0];
      if (head === undefined) return null;
      const start = this.pos;
      const lf = head.indexOf(10, start);
      if (lf === -1) {
        const second = this.chunks[1];
        if (second !== undefined) {
          // A line split across chunks: join just the partial line with the next chunk.
          this.chunks.splice(0, 2, Buffer.concat([head.subarray(start), second]));
          this.pos = 0;
          continue;
        }
        const pending = head.length - start;
        if (this.discardLine) {
          this.consume(pending);
          return null;
        }
        if (pending >= limit(head, start)) {
          this.consume(pending);
          this.discardLine = true; // what follows, up to the next LF, is the same line
          return TOO_LONG;
        }
        return null;
      }
      this.consume(lf + 1 - start);
      if (this.discardLine) {
        this.discardLine = false;
        continue;
      }
      if (lf + 1 - start > limit(head, start)) return TOO_LONG;
      const end = lf > start && head[lf - 1] === 13 ? lf - 1 : lf;
      const text = head.toString("utf8", start, end);
      if (text.includes("\uFFFD") && !isUtf8(head.subarray(start, end))) return BAD_UTF8;
      return text;
    }
  }
}

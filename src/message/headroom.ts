/**
 * Room reserved in front of a received message for the header fields Petrel prepends to it
 * (trace fields, then DKIM signatures), so that finishing a large message holds one copy of it,
 * not one more per prepended field (issue 13 item 3: a 30 MB message was held ~4× while it was
 * finished, because each prepend was a Buffer.concat of the whole message).
 *
 * The SMTP DataReader copies a large message, as it arrives, into a buffer with HEADROOM spare
 * bytes in front (GrowingContent; withHeadroom for a content whose size is known); prepend() writes a prefix into those bytes and returns a view that starts
 * earlier, without copying the message. Anything else (a buffer from elsewhere, room used up, a
 * view that is not the current head) gets Buffer.concat as before, so the result is always the
 * same bytes.
 * Invariants: bytes before the current head are never referenced by any view handed out, so
 * writing them cannot change another view's content; a view handed out stays valid and unchanged.
 */

/** Enough for a Received field, Message-ID, Date and a few DKIM-Signature fields. */
export const HEADROOM = 8 * 1024;

/** ArrayBuffers made by withHeadroom(): the offset of their current head and of their content's end. */
const heads = new WeakMap<ArrayBuffer, { head: number; readonly end: number }>();

/**
 * A buffer for `size` bytes of content with HEADROOM bytes free in front. Its ArrayBuffer is
 * resizable (ES2024, in Node 20's V8): V8 maps such a buffer's pages itself instead of taking them
 * from malloc, and shrinking it (free()) gives them back to the system at once. Issue 13 item 3:
 * from malloc, a 30 MB message came from the C heap once glibc's mmap threshold had risen after
 * the first one (up to 32 MiB), and the heap never shrank below its high-water mark; and on the
 * commit thread, which allocates almost nothing, a message's memory waited for a garbage
 * collection that came only every several messages.
 */
export function withHeadroom(size: number): Buffer {
  const end = HEADROOM + size;
  const buffer = new (ArrayBuffer as ResizableArrayBufferConstructor)(end, { maxByteLength: end });
  heads.set(buffer, { head: HEADROOM, end });
  return Buffer.from(buffer, HEADROOM, size);
}

/**
 * Gives the memory of a content made by withHeadroom() back now, rather than at the next garbage
 * collection (its ArrayBuffer shrinks to nothing: every view of it becomes empty). For the commit
 * thread, once the content is in the database. Anything else is left alone.
 */
export function freeContent(content: Uint8Array): void {
  const buffer = content.buffer as ArrayBuffer & { resizable?: boolean; resize?: (n: number) => void };
  if (buffer.resizable === true && content.byteLength > 0) buffer.resize?.(0);
}

/**
 * A content received in pieces, copied once into one buffer that grows in place (with HEADROOM
 * free in front), instead of keeping the pieces and joining them at the end: the join held the
 * message twice at its peak (issue 12's memory goal). The buffer is resizable: V8 reserves
 * `expectedMax` of address space up front and commits pages only as it grows, so growing never
 * moves the bytes, and pages not written yet are not resident. A content that outgrows the
 * reservation (only bare line ends written as CRLF can make it longer than the SMTP size limit)
 * moves once to a larger one.
 */
export class GrowingContent {
  private buffer: ArrayBuffer & { resize(n: number): void; readonly maxByteLength: number };
  /** Length-tracking view of the whole buffer (follows every resize). */
  private bytes: Uint8Array;
  /** Bytes of content written after the headroom. */
  length = 0;

  constructor(expectedMax: number) {
    this.buffer = resizable(HEADROOM + INITIAL_BYTES, HEADROOM + Math.max(expectedMax, INITIAL_BYTES));
    this.bytes = new Uint8Array(this.buffer);
  }

  /** Appends src[from, to). */
  append(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    const need = HEADROOM + this.length + n;
    if (need > this.buffer.byteLength) this.grow(need);
    if (n === 1) this.bytes[HEADROOM + this.length] = src[from]!;
    else this.bytes.set(src.subarray(from, to), HEADROOM + this.length);
    this.length += n;
  }

  /** The content, as made by withHeadroom(); the builder must not be used afterwards. */
  finish(): Buffer {
    const end = HEADROOM + this.length;
    // Shrinking gives back the pages committed beyond the content at once.
    this.buffer.resize(end);
    heads.set(this.buffer, { head: HEADROOM, end });
    return Buffer.from(this.buffer, HEADROOM, this.length);
  }

  /** Lets go of the memory now (a content given up), not at the next garbage collection. */
  discard(): void {
    this.buffer.resize(0);
    this.length = 0;
  }

  private grow(need: number): void {
    // Doubling up to GROWTH_STEP_MAX keeps the resizes (each a system call) few; past it, steps of
    // that size. Committed pages beyond the content came to count in RSS: with doubling, a
    // 34.2 MiB message grew its buffer to 64 MiB and half of the bench:memory runs showed all
    // 64 MiB resident (2.8× the message above idle RSS instead of 1.9×; median of eight runs
    // 2.5×). With the steps the overshoot is at most GROWTH_STEP_MAX: ten runs 1.8–2.5×, median
    // 2.2×; what still varied was the socket's read chunks waiting for a garbage collection
    // (now collected as they are read: smtp/read-chunks.ts).
    if (need <= this.buffer.maxByteLength) {
      const step = Math.min(this.buffer.byteLength, GROWTH_STEP_MAX);
      this.buffer.resize(Math.min(this.buffer.maxByteLength, Math.max(need, this.buffer.byteLength + step)));
      return;
    }
    const larger = resizable(need, 2 * need);
    const bytes = new Uint8Array(larger);
    bytes.set(this.bytes.subarray(HEADROOM, HEADROOM + this.length), HEADROOM);
    this.buffer.resize(0);
    this.buffer = larger;
    this.bytes = bytes;
  }
}

/** First commitment of a GrowingContent; more comes by doubling, then by GROWTH_STEP_MAX. */
const INITIAL_BYTES = 256 * 1024;
const GROWTH_STEP_MAX = 8 * 1024 * 1024;

function resizable(length: number, maxByteLength: number) {
  return new (ArrayBuffer as ResizableArrayBufferConstructor)(length, { maxByteLength }) as ArrayBuffer & {
    resize(n: number): void;
    readonly maxByteLength: number;
  };
}

type ResizableArrayBufferConstructor = new (
  length: number,
  options: { maxByteLength: number },
) => ArrayBuffer;

/** `prefix` followed by `content`: in the room in front of content when it has enough, else a copy. */
export function prepend(prefix: readonly Buffer[], content: Buffer): Buffer {
  let length = 0;
  for (const p of prefix) length += p.length;
  const buffer = content.buffer as ArrayBuffer;
  const mark = heads.get(buffer);
  if (!mark || !isHead(content, mark) || length > mark.head) return Buffer.concat([...prefix, content]);
  mark.head -= length;
  const out = Buffer.from(buffer, mark.head, length + content.length);
  let at = 0;
  for (const p of prefix) {
    p.copy(out, at);
    at += p.length;
  }
  return out;
}

function isHead(content: Buffer, mark: { head: number; end: number }): boolean {
  return content.byteOffset === mark.head && content.byteOffset + content.length === mark.end;
}

/**
 * Whether `content` is the current head of a buffer made by withHeadroom(): nothing but the
 * message (and free room) lives in that ArrayBuffer, so it may be transferred to another thread
 * instead of copied.
 */
export function ownsBuffer(content: Buffer): boolean {
  const mark = heads.get(content.buffer as ArrayBuffer);
  return mark !== undefined && isHead(content, mark);
}

/**
 * Room reserved in front of a received message for the header fields Petrel prepends to it
 * (trace fields, then DKIM signatures), so that finishing a large message holds one copy of it,
 * not one more per prepended field (issue 13 item 3: a 30 MB message was held ~4× while it was
 * finished, because each prepend was a Buffer.concat of the whole message).
 *
 * The SMTP DataReader joins what it received into a buffer with HEADROOM spare bytes in front
 * (withHeadroom); prepend() writes a prefix into those bytes and returns a view that starts
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

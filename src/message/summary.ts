/**
 * What people look for in a stored message (`petrel queue show`): Subject, From and Message-ID,
 * decoded (RFC 2047 words, RFC 6532 UTF-8) by postal-mime from the header section alone.
 * Security: the header section is untrusted sender content; callers that print it to a terminal
 * must strip control characters (src/cli/output.ts printable()).
 */
import PostalMime from "postal-mime";

export interface MessageHeaders {
  readonly subject: string | null;
  /** The From field as written by the sender ("Name <address>"), decoded. */
  readonly from: string | null;
  readonly messageId: string | null;
}

const HEADER_END = Buffer.from("\r\n\r\n");

export async function readMessageHeaders(content: Buffer): Promise<MessageHeaders> {
  const end = content.indexOf(HEADER_END);
  // Only the header section is parsed: a large body costs nothing here.
  const header = end < 0 ? content : content.subarray(0, end + 4);
  const parsed = await PostalMime.parse(header);
  const from = parsed.from;
  const fromText = from
    ? from.name && from.address
      ? `${from.name} <${from.address}>`
      : (from.address ?? from.name ?? null)
    : null;
  return {
    subject: parsed.subject ?? null,
    from: fromText || null,
    messageId: parsed.messageId ?? null,
  };
}

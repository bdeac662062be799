/**
 * What a sender attaches to a message for its events (issue 5): a JSON object in
 * `X-Petrel-Metadata` and a comma-separated list in `X-Petrel-Category`. Read at accept time,
 * stored with the message, returned in every event of it — and removed from the content before
 * the message is signed and stored, so recipients never see them.
 *
 * Invariants: the content returned differs from the input only by the removed fields (every
 * other byte, the body included, is kept as is); when neither field is present the input buffer
 * itself is returned. Limits: metadata at most `maxBytes` (as written, UTF-8), at most
 * `maxCategories` categories of at most 100 characters each.
 * Security: the fields are untrusted client input. JSON.parse is the only parser; the reply never
 * quotes the input back (V8's parse errors do, so only the position is kept).
 */
import type { HeaderSection } from "../message/headers.js";

export const METADATA_FIELD = "x-petrel-metadata";
export const CATEGORY_FIELD = "x-petrel-category";
const MAX_CATEGORY_LENGTH = 100;

export interface MetadataLimits {
  readonly maxBytes: number;
  readonly maxCategories: number;
}

export type AttachedMetadata =
  | {
      readonly ok: true;
      /** The metadata object as compact JSON text, or null when none was attached. */
      readonly metadata: string | null;
      readonly categories: readonly string[];
      /** The content without the two fields. */
      readonly content: Buffer;
    }
  | { readonly ok: false; readonly text: string };

export function readAttachedMetadata(
  content: Buffer,
  section: HeaderSection,
  limits: MetadataLimits,
): AttachedMetadata {
  const metadataValues: string[] = [];
  const categoryValues: string[] = [];
  for (const field of section.fields) {
    const name = field.name.toLowerCase();
    // Field values were read as latin1; the client wrote UTF-8 (RFC 6532), so decode them as such.
    if (name === METADATA_FIELD) metadataValues.push(utf8(field.value));
    else if (name === CATEGORY_FIELD) categoryValues.push(utf8(field.value));
  }
  if (metadataValues.length === 0 && categoryValues.length === 0) {
    return { ok: true, metadata: null, categories: [], content };
  }

  let metadata: string | null = null;
  if (metadataValues.length > 1) return { ok: false, text: "X-Petrel-Metadata may appear only once" };
  const raw = metadataValues[0]?.trim();
  if (raw !== undefined) {
    if (Buffer.byteLength(raw) > limits.maxBytes) {
      return { ok: false, text: `X-Petrel-Metadata is larger than ${limits.maxBytes} bytes` };
    }
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      const position = /position (\d+)/.exec(String((err as Error).message))?.[1];
      return {
        ok: false,
        text: `X-Petrel-Metadata is not valid JSON${position === undefined ? "" : ` (at position ${position})`}`,
      };
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return { ok: false, text: "X-Petrel-Metadata must be a JSON object" };
    }
    metadata = JSON.stringify(value);
  }

  // A Set, and the count checked as each new category is added: an Array.includes() per part
  // was quadratic (a 1.2 MB list of distinct categories blocked the event loop for 31 s).
  const categories = new Set<string>();
  for (const value of categoryValues) {
    for (const part of value.split(",")) {
      const category = part.trim();
      if (category === "" || categories.has(category)) continue;
      if (/[\x00-\x1f\x7f]/.test(category)) {
        return { ok: false, text: "X-Petrel-Category contains a control character" };
      }
      // Code points, counted only when the UTF-16 length leaves a doubt (a long part is not spread).
      if (
        category.length > MAX_CATEGORY_LENGTH &&
        (category.length > 2 * MAX_CATEGORY_LENGTH || [...category].length > MAX_CATEGORY_LENGTH)
      ) {
        return {
          ok: false,
          text: `X-Petrel-Category: a category is longer than ${MAX_CATEGORY_LENGTH} characters`,
        };
      }
      categories.add(category);
      if (categories.size > limits.maxCategories) {
        return { ok: false, text: `X-Petrel-Category has more than ${limits.maxCategories} categories` };
      }
    }
  }
  return {
    ok: true,
    metadata,
    categories: [...categories],
    content: removeFields(content, section.end, [METADATA_FIELD, CATEGORY_FIELD]),
  };
}

function utf8(latin1: string): string {
  return Buffer.from(latin1, "latin1").toString("utf8");
}

/**
 * The content without the header fields named (lower-case), each with its continuation lines
 * (RFC 5322 §2.2.3). `headerEnd` is HeaderSection.end. Lines are CRLF-terminated.
 */
export function removeFields(content: Buffer, headerEnd: number, names: readonly string[]): Buffer {
  const kept: Buffer[] = [];
  let keptFrom = 0;
  let dropping = false;
  let offset = 0;
  let nextColon = -2; // -2: not looked for yet; -1: none left
  while (offset < headerEnd) {
    let eol = content.indexOf("\r\n", offset, "latin1");
    eol = eol < 0 || eol >= headerEnd ? headerEnd : eol + 2;
    const first = content[offset];
    const continuation = first === 0x20 || first === 0x09;
    if (!continuation) {
      // The next colon is found once and reused until a line passes it: searching the rest of
      // the content again from every line was quadratic (2.4 MB of short lines without a colon: 17 s).
      if (nextColon !== -1 && nextColon < offset) nextColon = content.indexOf(0x3a /* : */, offset);
      const name =
        nextColon > offset && nextColon < eol
          ? content.toString("latin1", offset, nextColon).trim().toLowerCase()
          : "";
      const drop = names.includes(name);
      if (drop && !dropping) kept.push(content.subarray(keptFrom, offset));
      if (!drop && dropping) keptFrom = offset;
      dropping = drop;
    }
    offset = eol;
  }
  if (!dropping && kept.length === 0) return content;
  kept.push(content.subarray(dropping ? headerEnd : keptFrom));
  return Buffer.concat(kept);
}

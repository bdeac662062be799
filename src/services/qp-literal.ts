/**
 * Quoted-printable for text that needs no escapes, only soft line breaks: the bytes nodemailer's
 * qp Encoder (one chunk, `binary: false`, 76-character lines) writes for such text, computed
 * without its per-byte encoder and its regular expressions on every 76-character window.
 * bench:http's profile had the Encoder at 9.8% of the API's main-thread CPU for a 2 KB text
 * message with 79-character lines, the largest item the API pays beside SMTP.
 *
 * "Needs no escapes" (RFC 2045 §6.7 rules 1–3 as nodemailer applies them): every byte is TAB or a
 * printable ASCII character other than "=", line breaks are CRLF pairs only, no space or TAB ends
 * a line or the text, and the text fits in one of the Encoder's 64 KiB slices. Then the encoded
 * text is the text itself, and nodemailer's wrap() (qp/index.js) reduces to what is below:
 * a window of 76 characters ends at its first CRLF; else, past 51 characters, after the last
 * space, TAB or ".,!?" among its last 25 characters; a window cut nowhere else loses its last
 * character; every cut but the last gets "=\r\n". test/http-qp-literal.test.ts compares it with
 * nodemailer's Encoder over generated text. Anything else returns undefined (use the Encoder).
 */

const LINE = 76;
const MARGIN = Math.floor(LINE / 3);
/** nodemailer's Encoder slice: one slice means one wrap() over the whole text. */
const SLICE = 64 * 1024;
const LITERAL_TEXT = /^(?:[\t\x20-\x3c\x3e-\x7e]|\r\n)*$/;
const WHITESPACE_AT_END = /[ \t](?:\r\n|$)/;

function isBreakChar(c: number): boolean {
  // [ \t.,!?]
  return c === 0x20 || c === 0x09 || c === 0x2e || c === 0x2c || c === 0x21 || c === 0x3f;
}

/** The quoted-printable form of `text`, or undefined when it needs escapes (see the header). */
export function literalQuotedPrintable(text: string): string | undefined {
  if (text.length > SLICE || !LITERAL_TEXT.test(text) || WHITESPACE_AT_END.test(text)) return undefined;
  const len = text.length;
  if (len <= LINE) return text;
  const parts: string[] = [];
  let pos = 0;
  while (pos < len) {
    const windowEnd = Math.min(pos + LINE, len);
    const crlf = text.indexOf("\r\n", pos);
    if (crlf !== -1 && crlf + 2 <= windowEnd) {
      parts.push(text.slice(pos, crlf + 2));
      pos = crlf + 2;
      continue;
    }
    let end = windowEnd;
    const length = end - pos;
    if (length > LINE - MARGIN) {
      // The last break character among the window's last MARGIN characters, kept on this line.
      for (let i = end - 1; i >= end - MARGIN; i--) {
        if (isBreakChar(text.charCodeAt(i))) {
          end = i + 1;
          break;
        }
      }
    }
    if (end < len) {
      if (end - pos === LINE) end--;
      parts.push(text.slice(pos, end), "=\r\n");
    } else {
      parts.push(text.slice(pos, end));
    }
    pos = end;
  }
  return parts.join("");
}

/**
 * VERP return paths: each outgoing message's envelope sender becomes
 * `b+<token>@<bounce subdomain>.<From domain>`, where the token names the message and the
 * recipient, so that an asynchronous bounce (a DSN or a complaint sent to the return path) says
 * by its address alone which delivery it is about — whatever the report inside claims.
 *
 * Token: `<queue id>-<recipient id, base 36>-<MAC>`, all lower case (some MTAs lower-case
 * addresses; queue ids are Crockford base32, case-insensitive). The MAC is HMAC-SHA256 over
 * "petrel-verp-v1:<queue id>:<recipient id>" with the node's secret (generated once into the
 * store), truncated to 80 bits and written in base32: unguessable without the secret, checked
 * in constant time. A valid MAC alone changes nothing: the listener also requires the recipient
 * row to exist and belong to that message (a deleted message's token is "unknown").
 * The local part stays ≤ 64 octets (RFC 5321 §4.5.3.1.1): 2 + 26 + 1 + ≤ 11 + 1 + 16 = ≤ 57.
 * Security: decode() takes untrusted input (RCPT TO on the bounce listener) and never throws.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export interface VerpToken {
  readonly messageId: string;
  readonly recipientId: number;
}

const PREFIX = "b+";
const CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz";
const MAC_BYTES = 10;
const TOKEN = /^([0-9a-hjkmnp-tv-z]{26})-([0-9a-z]{1,11})-([0-9a-hjkmnp-tv-z]{16})$/;

export class VerpCodec {
  private readonly secret: Buffer;

  /** `secret`: at least 32 random bytes, the same on every node that delivers or receives bounces. */
  constructor(secret: Buffer) {
    if (secret.length < 32) throw new RangeError("VERP secret must be at least 32 bytes");
    this.secret = secret;
  }

  /** The token for one recipient of one message. */
  token(messageId: string, recipientId: number): string {
    const id = messageId.toLowerCase();
    return `${id}-${recipientId.toString(36)}-${this.mac(id, recipientId)}`;
  }

  /** The return path `b+<token>@<domain>`, where domain is the bounce domain (bounces.example.com). */
  address(messageId: string, recipientId: number, domain: string): string {
    return `${PREFIX}${this.token(messageId, recipientId)}@${domain.toLowerCase()}`;
  }

  /**
   * The message and recipient an address or local part names, or undefined when it is not a
   * token address or its MAC does not verify (forged, or made with another secret).
   */
  decode(addressOrLocal: string): VerpToken | undefined {
    if (typeof addressOrLocal !== "string" || addressOrLocal.length > 320) return undefined;
    const at = addressOrLocal.lastIndexOf("@");
    const local = (at < 0 ? addressOrLocal : addressOrLocal.slice(0, at)).toLowerCase();
    if (!local.startsWith(PREFIX)) return undefined;
    const m = TOKEN.exec(local.slice(PREFIX.length));
    if (!m) return undefined;
    const [, id, rid, mac] = m as unknown as [string, string, string, string];
    const recipientId = Number.parseInt(rid, 36);
    if (!Number.isSafeInteger(recipientId) || recipientId <= 0) return undefined;
    const expected = Buffer.from(this.mac(id, recipientId));
    const given = Buffer.from(mac);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    return { messageId: id.toUpperCase(), recipientId };
  }

  private mac(id: string, recipientId: number): string {
    const digest = createHmac("sha256", this.secret)
      .update(`petrel-verp-v1:${id}:${recipientId}`)
      .digest()
      .subarray(0, MAC_BYTES);
    return base32(digest);
  }
}

/** Crockford base32 (lower case) of `bytes`; 10 bytes → 16 characters. */
function base32(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += CROCKFORD[(buffer >>> (bits - 5)) & 31]!;
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += CROCKFORD[(buffer << (5 - bits)) & 31]!;
  return out;
}

/** The bounce domain for a From domain: `<subdomain>.<domain>` (domains.returnPath.subdomain). */
export function bounceDomain(fromDomain: string, subdomain: string): string {
  return `${subdomain}.${fromDomain}`.toLowerCase();
}

/**
 * DKIM signing (RFC 6376; Ed25519 per RFC 8463): relaxed/relaxed, SHA-256, one DKIM-Signature
 * field per signer, prepended to the message. Petrel signs once, when it accepts a message.
 *
 * Why not mailauth's dkimSign (4.13.3): it cannot oversign (its h= is exactly the fields present,
 * `headerList` only filters), it signs with synchronous crypto.sign on the event loop, it parses
 * the PEM key on every message (~0.4 ms, more than an RSA-2048 signature here), and it formats
 * t= twice around the signing call (Math.round(Date.now()/1000) each time), so a signature that
 * straddles a half-second can carry a t= other than the one signed. mailauth's dkimVerify and
 * dkimpy verify what this module produces in test/dkim-sign.test.ts.
 *
 * Invariants: h= lists each signed field as often as it occurs, and From once more (oversigning,
 * RFC 6376 §8.15: a From added later breaks the signature); the message must have a From field
 * (§5.4); body hash is computed once for all signers; RSA and Ed25519 signing run in libuv's
 * thread pool (async crypto.sign), and body canonicalization yields every ~1 MiB. Keys are
 * parsed once per createMessageSigner.
 * Security: the message is untrusted input (see canonicalize.ts); domain and selector are checked
 * to be DNS names so they cannot inject tags into the field; private keys never reach errors.
 */

import { createHash, createPrivateKey, type KeyObject, sign } from "node:crypto";
import { domainToASCII } from "node:url";
import { prepend } from "../message/headroom.js";
import {
  type HeaderField,
  normalizeLineEnds,
  relaxedBodyHash,
  relaxedHeader,
  relaxedSignatureField,
  splitMessage,
} from "./canonicalize.js";
import { type DkimKeyKind, dkimKindOf } from "./keys.js";

export interface DkimSigner {
  /** d= (the signing domain). */
  readonly domain: string;
  /** s= (the selector under `_domainkey.<domain>`). */
  readonly selector: string;
  readonly kind: DkimKeyKind;
  /** PKCS#8 (or PKCS#1) PEM private key. */
  readonly privateKeyPem: string;
}

export interface SignOptions {
  /** t= (default: now). */
  readonly signTime?: Date;
  /** Fields to sign when present (default SIGNED_HEADERS), case-insensitive. */
  readonly headers?: readonly string[];
  /** Fields listed once more than they occur (default OVERSIGNED_HEADERS). */
  readonly oversign?: readonly string[];
}

/** The fields signed when present: identity, threading, content and unsubscribe (RFC 8058). */
export const SIGNED_HEADERS: readonly string[] = [
  "From",
  "To",
  "Cc",
  "Subject",
  "Date",
  "Message-ID",
  "Reply-To",
  "MIME-Version",
  "Content-Type",
  "Content-Transfer-Encoding",
  "List-Unsubscribe",
  "List-Unsubscribe-Post",
  "In-Reply-To",
  "References",
  "Sender",
];

export const OVERSIGNED_HEADERS: readonly string[] = ["From"];

export class DkimSignError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DkimSignError";
  }
}

const CRLF = Buffer.from("\r\n");

/** Longest folded line we write (RFC 5322 §2.1.1 recommends 78). */
const LINE_MAX = 78;

interface PreparedSigner {
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: "rsa-sha256" | "ed25519-sha256";
  readonly key: KeyObject;
}

/**
 * Parses keys and checks names once; the returned function signs messages with all signers.
 * Throws DkimSignError for a bad domain, selector or key (never quoting the key).
 */
export function createMessageSigner(
  signers: readonly DkimSigner[],
  options: Omit<SignOptions, "signTime"> = {},
): (content: Buffer, signTime?: Date) => Promise<Buffer> {
  if (signers.length === 0) throw new DkimSignError("No DKIM signers given");
  const prepared = signers.map(prepareSigner);
  const headers = options.headers ?? SIGNED_HEADERS;
  const oversign = new Set((options.oversign ?? OVERSIGNED_HEADERS).map((h) => h.toLowerCase()));
  return async (content, signTime = new Date()) => {
    const message = normalizeLineEnds(content);
    const { headers: fields, body, hasBodySeparator } = splitMessage(message);
    if (!fields.some((f) => f.key === "from")) throw new DkimSignError("Message has no From header field");
    const { names, canonical } = selectHeaders(fields, headers, oversign);
    const bodyHash = await relaxedBodyHash(body);
    const t = Math.floor(signTime.getTime() / 1000);
    const signatures = await Promise.all(
      prepared.map((s) => signatureField(s, { names, canonical, bodyHash, t })),
    );
    const prefix = Buffer.from(signatures.join(""), "latin1");
    // Into the room in front of a received message when it has some (message/headroom.ts).
    if (hasBodySeparator) return prepend([prefix], message);
    // Header fields only: end the last field and add the blank line. Same hashes (an absent body
    // and an empty one canonicalize alike), but mailauth's verifier, used by some receivers,
    // finds no header section without the blank line and reports no signature at all.
    const ending = message.subarray(-2).equals(CRLF) ? [CRLF] : [CRLF, CRLF];
    return Buffer.concat([prefix, message, ...ending]);
  };
}

/** Signs `content` with every signer and returns it with the DKIM-Signature fields prepended. */
export async function signMessage(
  content: Buffer,
  signers: readonly DkimSigner[],
  options: SignOptions = {},
): Promise<Buffer> {
  return createMessageSigner(signers, options)(content, options.signTime);
}

function prepareSigner(signer: DkimSigner): PreparedSigner {
  const domain = dnsName(signer.domain, "domain");
  const selector = dnsName(signer.selector, "selector");
  let key: KeyObject;
  try {
    key = createPrivateKey(signer.privateKeyPem);
  } catch {
    throw new DkimSignError(`DKIM key for ${selector}._domainkey.${domain} is not a valid PEM private key`);
  }
  let kind: DkimKeyKind;
  try {
    kind = dkimKindOf(key);
  } catch (err) {
    throw new DkimSignError(`DKIM key for ${selector}._domainkey.${domain}: ${(err as Error).message}`);
  }
  if (kind !== signer.kind) {
    throw new DkimSignError(`DKIM key for ${selector}._domainkey.${domain} is ${kind}, not ${signer.kind}`);
  }
  // RFC 8301 §3.2: verifiers must not accept RSA keys under 1024 bits.
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (kind === "rsa" && bits < 1024) {
    throw new DkimSignError(
      `DKIM key for ${selector}._domainkey.${domain} has ${bits} bits; 1024 is the minimum`,
    );
  }
  return { domain, selector, key, algorithm: kind === "rsa" ? "rsa-sha256" : "ed25519-sha256" };
}

/** A-label form of a DNS name, or DkimSignError: no spaces, semicolons or other tag syntax. */
function dnsName(value: string, what: string): string {
  const ascii = domainToASCII(value.trim().replace(/\.$/, ""));
  const ok =
    ascii.length > 0 &&
    ascii.length <= 253 &&
    ascii.split(".").every((label) => /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label));
  if (!ok) throw new DkimSignError(`Invalid DKIM ${what} "${value}"`);
  return ascii;
}

/**
 * The h= names and the canonical header data. RFC 6376 §5.4.2: the n-th listing of a name takes
 * the n-th occurrence counted from the bottom; a listing with no occurrence left (oversigning)
 * contributes nothing to the hash.
 */
function selectHeaders(
  fields: readonly HeaderField[],
  wanted: readonly string[],
  oversign: ReadonlySet<string>,
): { names: string[]; canonical: string } {
  const names: string[] = [];
  let canonical = "";
  for (const name of wanted) {
    const key = name.toLowerCase();
    const present = fields.filter((f) => f.key === key);
    for (let i = present.length - 1; i >= 0; i--) {
      names.push(name);
      canonical += relaxedHeader(present[i]!);
    }
    if (oversign.has(key)) names.push(name);
  }
  return { names, canonical };
}

interface SignatureInput {
  readonly names: readonly string[];
  readonly canonical: string;
  readonly bodyHash: string;
  readonly t: number;
}

async function signatureField(signer: PreparedSigner, input: SignatureInput): Promise<string> {
  const lines: string[] = ["DKIM-Signature:"];
  const add = (atom: string, separator: string) => {
    const last = lines.length - 1;
    if (lines[last]!.length + separator.length + atom.length > LINE_MAX) lines.push(`\t${atom}`);
    else lines[last] += separator + atom;
  };
  add("v=1;", " ");
  add(`a=${signer.algorithm};`, " ");
  add("c=relaxed/relaxed;", " ");
  add(`d=${signer.domain};`, " ");
  add(`s=${signer.selector};`, " ");
  add(`t=${input.t};`, " ");
  // h= may fold after any colon (RFC 6376 §3.5: FWS around ":" in the h= list).
  input.names.forEach((name, i) => {
    const atom = `${i === 0 ? "h=" : ""}${name}${i === input.names.length - 1 ? ";" : ":"}`;
    add(atom, i === 0 ? " " : "");
  });
  add(`bh=${input.bodyHash};`, " ");
  // Leave room for the first part of the signature on the b= line, so no FWS follows "b=".
  add("b=", " ");
  if (lines.at(-1)!.length > LINE_MAX - 16) {
    lines[lines.length - 1] = lines.at(-1)!.replace(/ b=$/, "");
    lines.push("\tb=");
  }
  const unsigned = lines.join("\r\n");
  const data = Buffer.from(input.canonical + relaxedSignatureField(unsigned), "latin1");
  const signature = await signAsync(signer, data);
  return unsigned + foldBase64(signature.toString("base64"), LINE_MAX - lines.at(-1)!.length) + "\r\n";
}

function signAsync(signer: PreparedSigner, data: Buffer): Promise<Buffer> {
  // RFC 8463 §3: Ed25519 signs the SHA-256 digest of the header data (PureEdDSA over the hash).
  const [algorithm, input] =
    signer.algorithm === "rsa-sha256" ? ["sha256", data] : [null, createHash("sha256").update(data).digest()];
  return new Promise((resolve, reject) => {
    sign(algorithm, input, signer.key, (err, signature) => (err ? reject(err) : resolve(signature)));
  });
}

function foldBase64(text: string, firstRoom: number): string {
  const parts = [text.slice(0, Math.max(firstRoom, 1))];
  for (let i = parts[0]!.length; i < text.length; i += LINE_MAX - 1)
    parts.push(text.slice(i, i + LINE_MAX - 1));
  return parts.join("\r\n\t");
}

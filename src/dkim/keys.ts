/**
 * DKIM key pairs: RSA 2048 (RFC 6376, RFC 8301 minimum 1024) and Ed25519 (RFC 8463), with the
 * base64 text an operator publishes in the selector's `p=` tag.
 *
 * Invariants: generation runs in libuv's thread pool (async `generateKeyPair`), never on the
 * event loop; private keys are PKCS#8 PEM; RSA `p=` is the DER SubjectPublicKeyInfo (what
 * OpenDKIM and every verifier expect), Ed25519 `p=` is the raw 32-byte key (RFC 8463 §4.2),
 * not SPKI.
 * Security: private keys are secrets: nothing here logs them, and errors never include them.
 */

import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from "node:crypto";

export type DkimKeyKind = "rsa" | "ed25519";

export interface DkimKey {
  readonly kind: DkimKeyKind;
  /** PKCS#8 PEM. A secret: store it, never log it. */
  readonly privateKeyPem: string;
  /** Base64 for the DNS record's p= tag. */
  readonly publicKeyBase64: string;
}

export const RSA_KEY_BITS = 2048;

/** DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4); the 32 key bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export async function generateDkimKey(kind: DkimKeyKind): Promise<DkimKey> {
  const privateKeyPem = await new Promise<string>((resolve, reject) => {
    const done = (err: Error | null, _publicKey: unknown, privateKey: string) =>
      err ? reject(err) : resolve(privateKey);
    const privateKeyEncoding = { type: "pkcs8", format: "pem" } as const;
    const publicKeyEncoding = { type: "spki", format: "pem" } as const;
    if (kind === "rsa") {
      generateKeyPair("rsa", { modulusLength: RSA_KEY_BITS, publicKeyEncoding, privateKeyEncoding }, done);
    } else {
      generateKeyPair("ed25519", { publicKeyEncoding, privateKeyEncoding }, done);
    }
  });
  return { kind, privateKeyPem, publicKeyBase64: publicKeyBase64Of(createPrivateKey(privateKeyPem), kind) };
}

/**
 * The p= text for a stored private key, and its kind: lets the records view be rebuilt from
 * what the store keeps. Throws if the PEM is not an RSA or Ed25519 private key.
 */
export function publicKeyFromPrivate(privateKeyPem: string): { kind: DkimKeyKind; publicKeyBase64: string } {
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (err) {
    // The cause may quote the input; keep the message generic so a key never reaches a log.
    throw new Error("DKIM private key is not a valid PEM key", {
      cause: err instanceof Error ? err.name : undefined,
    });
  }
  const kind = dkimKindOf(key);
  return { kind, publicKeyBase64: publicKeyBase64Of(key, kind) };
}

/** The DKIM kind of a key object, or a thrown error for other key types. */
export function dkimKindOf(key: KeyObject): DkimKeyKind {
  const type = key.asymmetricKeyType;
  if (type === "rsa" || type === "ed25519") return type;
  throw new Error(`DKIM supports RSA and Ed25519 keys, not ${type ?? "this key type"}`);
}

function publicKeyBase64Of(privateKey: KeyObject, kind: DkimKeyKind): string {
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  if (kind === "rsa") return spki.toString("base64");
  if (spki.length !== ED25519_SPKI_PREFIX.length + 32 || !spki.subarray(0, 12).equals(ED25519_SPKI_PREFIX)) {
    throw new Error("Unexpected Ed25519 public key encoding");
  }
  return spki.subarray(ED25519_SPKI_PREFIX.length).toString("base64");
}

/**
 * API keys: `pt_` followed by 43 base64url characters (256 random bits). Only the SHA-256 of a
 * key is stored. A slow password hash (bcrypt, scrypt) is not needed: the key is random with
 * full entropy, so a leaked hash cannot be brute-forced, and AUTH stays cheap (one hash, one
 * indexed lookup) — which matters when every message opens a new authenticated connection.
 *
 * Security: keys are secrets; nothing here logs them. Comparison happens through the hash lookup.
 */
import { hash, randomBytes } from "node:crypto";

export const API_KEY_PREFIX = "pt_";
/** Characters of the key kept in clear to tell keys apart in listings. */
const DISPLAY_PREFIX_LENGTH = 10;

export interface GeneratedApiKey {
  readonly key: string;
  readonly hash: string;
  readonly prefix: string;
}

export function generateApiKey(): GeneratedApiKey {
  const key = API_KEY_PREFIX + randomBytes(32).toString("base64url");
  return { key, hash: hashApiKey(key), prefix: key.slice(0, DISPLAY_PREFIX_LENGTH) };
}

export function hashApiKey(key: string): string {
  // crypto.hash (one shot, Node >= 20.12) skips the Hash object createHash makes: the API hashes
  // the Bearer key on every request (2.8% of bench:http's main thread with createHash).
  return hash("sha256", key, "hex");
}

/**
 * API key scopes (issue 9): what a key may do. `admin` includes every scope. Keys made before
 * scopes existed got `mail.send` in the migration, which is what SMTP AUTH needs.
 */
import { PetrelError } from "../errors.js";

export const SCOPES = [
  "mail.send",
  "messages.read",
  "events.read",
  "suppressions.read",
  "suppressions.write",
  "domains.read",
  "domains.write",
  "webhooks.write",
  "keys.write",
  "admin",
] as const;

export type Scope = (typeof SCOPES)[number];

export function hasScope(scopes: readonly string[], needed: Scope): boolean {
  return scopes.includes(needed) || scopes.includes("admin");
}

/** "mail.send,messages.read" → those scopes (deduplicated, in SCOPES order). */
export function parseScopes(value: string | readonly string[] | undefined): Scope[] {
  if (value === undefined) return ["mail.send"];
  const list = (typeof value === "string" ? value.split(",") : value).map((s) => s.trim()).filter(Boolean);
  if (list.length === 0)
    throw new PetrelError("invalid-input", `give at least one scope: ${SCOPES.join(", ")}`);
  for (const s of list) {
    if (!SCOPES.includes(s as Scope))
      throw new PetrelError("invalid-input", `unknown scope ${s}; one of ${SCOPES.join(", ")}`);
  }
  return SCOPES.filter((s) => list.includes(s));
}

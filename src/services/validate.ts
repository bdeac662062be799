/**
 * Checks of operator and API input shared by the services: domain names and addresses.
 * Security: linear-time regular expressions only (bounded length first).
 */
import { PetrelError } from "../errors.js";

// RFC 1035 §2.3.1 labels (with RFC 1123 leading digits), at least two labels.
const DOMAIN =
  /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function validDomain(value: string): string {
  const domain = value.trim().toLowerCase().replace(/\.$/, "");
  if (!DOMAIN.test(domain)) throw new PetrelError("invalid-input", `not a valid domain name: ${value}`);
  return domain;
}

export function validAddress(value: string): string {
  const address = value.trim();
  const at = address.lastIndexOf("@");
  const local = address.slice(0, at);
  if (at <= 0 || local.length > 64 || /[\s<>()[\]\\,;:"]/.test(local))
    throw new PetrelError("invalid-input", `not a valid address: ${value}`);
  return `${local}@${validDomain(address.slice(at + 1))}`;
}

/**
 * Sender-domain status rules both backends apply in recordDomainCheck(): plain functions over
 * plain data, so SQLite and PostgreSQL cannot drift apart.
 */
import type { DomainCheck, DomainStatus, RecordCheck } from "./types.js";

/** A domain that was never verified stays unverified on failure; a verified one becomes failing. */
export function nextStatus(previous: DomainStatus, outcome: DomainCheck["outcome"]): DomainStatus {
  if (outcome === "pass") return "verified";
  if (outcome === "unknown") return previous;
  return previous === "unverified" ? "unverified" : "failing";
}

/** The detail of a status-change event: which required records were not as expected. */
export function describeTransition(
  previous: DomainStatus,
  status: DomainStatus,
  records: readonly RecordCheck[],
): string {
  const bad = records.filter((r) => r.required && r.result !== "match");
  const which = bad.map((r) => `${r.purpose} ${r.name} ${r.result}`).join(", ");
  return `${previous} → ${status}${which ? `: ${which}` : ""}`;
}

/** The stored JSON of the last check's records; [] when absent or unreadable. */
export function parseChecks(value: unknown): RecordCheck[] {
  if (typeof value === "object" && Array.isArray(value)) return value as RecordCheck[];
  if (typeof value !== "string" || value === "") return [];
  try {
    const parsed = JSON.parse(value) as unknown;
    return Array.isArray(parsed) ? (parsed as RecordCheck[]) : [];
  } catch {
    return [];
  }
}

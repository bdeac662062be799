/**
 * Small rules for event rows that both backends apply alike.
 */

const ENHANCED = /^[245]\d\d[ -]([245]\.\d{1,3}\.\d{1,3})(?:\s|$)/;

/** The enhanced status code at the start of an SMTP reply text ("550 5.1.1 …" → "5.1.1"). */
export function enhancedCodeOf(reply: string | null | undefined): string | null {
  if (!reply) return null;
  return ENHANCED.exec(reply)?.[1] ?? null;
}

/**
 * One remote reply as a person pastes it (or as a DSN's Diagnostic-Code and an MTA's bounce text
 * quote it: "smtp; 550 5.1.1 …", "host mx.example[192.0.2.1] said: 550 …", "… after RCPT TO:<a@b>:
 * 553 …") → its basic code and a classification. `petrel bounces classify` and the corpus test use
 * it; the delivery worker and the listener already hold the parts and call the classifier directly.
 * Security: the reply is untrusted; the patterns are linear and the classifier caps the text.
 */
import { type Classification, type Classifier, classifyBounce } from "./classify.js";

// The basic code at the start ("550-5.7.1", "smtp;421 …"), or after a separator where an MTA
// quotes the reply inside its own words ("… said: 550 …", "SIZE=2022: 553 …", "550-'5.2.2 …").
const BASIC_AT_START = /^\s*(?:smtp;\s*)?([245][0-5]\d)(?=[\s-]|$)/i;
const BASIC_QUOTED = /(?:^|[\s:;,'"(])([245][0-5]\d)(?=[ -]|$)/;

/** The reply's basic code (RFC 5321 §4.2), or null when it has none. */
export function basicCodeOf(reply: string): number | null {
  const head = reply.length > 1000 ? reply.slice(0, 1000) : reply;
  const m = BASIC_AT_START.exec(head) ?? BASIC_QUOTED.exec(head);
  return m ? Number(m[1]) : null;
}

/** Classifies a reply given as one string; the enhanced code is found inside the text. */
export function classifyReply(reply: string, classify: Classifier = classifyBounce): Classification {
  const text = reply.replace(/\s+/g, " ").trim();
  return classify({ code: basicCodeOf(text), enhanced: null, text });
}

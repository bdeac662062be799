/**
 * The bounce classifier: a remote reply (or a DSN's status and diagnostic) → a class and whether
 * it is a hard bounce, by the data table in rules.ts plus the operator's own rules from config.
 * Pure: no I/O, no clock; the delivery worker and the bounce listener both call it.
 *
 * Invariants: wording that names its cause decides first, then a specific enhanced code, then
 * weaker wording, then the code's subject and the basic code (rules.ts); a temporary reply is never hard; the result always names the rule
 * that decided, for logs and tests.
 * Security: `text` is untrusted remote input; only its first MAX_TEXT characters are examined and
 * every built-in pattern is linear. Operator patterns come from the trusted configuration.
 */
import { type BounceClass, CODE_RULES, type CodeRule, HARD_CLASSES, type TextRule } from "./rules.js";
import { SPECIFIC_TEXT_RULES, TEXT_RULES } from "./text-rules.js";

export interface BounceInput {
  /** Basic reply code (550); absent or null when unknown (a DSN without a Diagnostic-Code). */
  readonly code?: number | null;
  /** Enhanced status code ("5.1.1"); absent, null or "" when the reply had none. */
  readonly enhanced?: string | null;
  /** The reply text or diagnostic, as received. */
  readonly text: string;
}

export interface Classification {
  readonly class: BounceClass;
  readonly hard: boolean;
  /** Which rule decided: "operator:<match>", "code:5.1.1", 'text:"<words matched>"', "subject:x.7", "basic:5xx". */
  readonly rule: string;
}

/** An operator's rule (`bounces.rules`): an enhanced or basic code, or a case-insensitive regex. */
export interface OperatorRule {
  readonly match: string;
  readonly class: BounceClass;
}

export type Classifier = (input: BounceInput) => Classification;

/** Longest text examined: real replies are a few hundred characters; DSN texts are capped. */
const MAX_TEXT = 4000;
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})$/;
// Right after a basic code ("550 5.1.1", "550-5.1.1", "550-'5.2.2") is the best evidence.
const ENHANCED_AFTER_BASIC = /\b[245]\d\d[ -]['"]?([245])\.(\d{1,3})\.(\d{1,3})\b/;
// Elsewhere, the notations MTAs use: qmail's "(#5.1.1 - chkusr)", "#5.1.8", "… not accepted:
// 5.7.1 …", "failed,5.1.1 (…)". Never inside a longer dotted number: in an IP address such as
// 10.5.1.1 or Yahoo's "4.16.55.1" the digits are bounded by another dot or digit.
const ENHANCED_ANYWHERE = /(?:^|[\s#(,:;'"[])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]|\.\d)/;
const CODE_PATTERN = /^([245x])\.(\d{1,3}|x)\.(\d{1,3}|x)$/i;
const BASIC_PATTERN = /^[245](?:\d\d|xx)$/i;

/** Whether an operator's `match` is a status code (else it is a regular expression). */
export function isCodeMatch(match: string): boolean {
  return CODE_PATTERN.test(match) || BASIC_PATTERN.test(match);
}

/** Compiles operator rules; throws on an invalid regular expression (config validation uses it). */
function compileOperatorRules(rules: readonly OperatorRule[]): Array<(input: Parsed) => boolean> {
  return rules.map((rule) => {
    const match = rule.match.trim();
    const code = CODE_PATTERN.exec(match);
    if (code) {
      const [, c, s, d] = code.map((p) => p.toLowerCase()) as [string, string, string, string];
      return (input) =>
        input.enhanced !== null &&
        (c === "x" || c === input.enhanced.c) &&
        (s === "x" || s === input.enhanced.s) &&
        (d === "x" || d === input.enhanced.d);
    }
    if (BASIC_PATTERN.test(match)) {
      const lower = match.toLowerCase();
      return (input) =>
        input.basic !== null &&
        (lower.endsWith("xx") ? String(input.basic)[0] === lower[0] : String(input.basic) === lower);
    }
    const re = new RegExp(match, "i");
    return (input) => re.test(input.text);
  });
}

interface Parsed {
  readonly basic: number | null;
  readonly enhanced: {
    readonly c: string;
    readonly s: string;
    readonly d: string;
    readonly code: string;
  } | null;
  readonly text: string;
  readonly temporary: boolean;
}

function parse(input: BounceInput): Parsed {
  const text = input.text.length > MAX_TEXT ? input.text.slice(0, MAX_TEXT) : input.text;
  const basic = input.code ?? basicIn(text);
  let m = input.enhanced ? ENHANCED.exec(input.enhanced.trim()) : null;
  // A generic code (x.0.0) says nothing: a more specific one inside the text is better evidence
  // ("Status: 5.0.0" with "Diagnostic-Code: smtp; 550 5.1.1 …").
  if (!m || (m[2] === "0" && m[3] === "0")) {
    const inText = ENHANCED_AFTER_BASIC.exec(text) ?? ENHANCED_ANYWHERE.exec(text);
    // A code found in the text must agree with the reply's own class digits (a "#4.16.1" inside a
    // 5xx reply is an internal id, not the status).
    const agrees = (c: string) => (!m || c === m[1]) && (basic === null || String(basic)[0] === c);
    if (inText && !(inText[2] === "0" && inText[3] === "0") && agrees(inText[1]!)) m = inText;
  }
  const enhanced = m ? { c: m[1]!, s: m[2]!, d: m[3]!, code: `${m[1]}.${m[2]}.${m[3]}` } : null;
  // A generic enhanced code defers to a basic code when there is one (Postfix reports a 554
  // greeting as "Status: 4.0.0" while it retried).
  const generic = enhanced !== null && enhanced.s === "0" && enhanced.d === "0";
  const temporary =
    enhanced && !(generic && basic !== null) ? enhanced.c === "4" : basic !== null && basic < 500;
  return { basic, enhanced, text, temporary };
}

function basicIn(text: string): number | null {
  const m = /^\s*(?:smtp;\s*)?([245]\d\d)\b/i.exec(text);
  return m ? Number(m[1]) : null;
}

function codeRuleMatches(rule: CodeRule, input: Parsed): boolean {
  if (!input.enhanced) return false;
  const [c, s, d] = rule.code.split(".") as [string, string, string];
  const e = input.enhanced;
  if ((c !== "x" && c !== e.c) || s !== e.s || d !== e.d) return false;
  return rule.text === undefined || rule.text.test(input.text);
}

function result(cls: BounceClass, input: Parsed, rule: string): Classification {
  // A temporary reply asks to try again: it cannot prove that an address is bad.
  const downgraded = input.temporary && HARD_CLASSES.has(cls) ? "transient" : cls;
  return { class: downgraded, hard: HARD_CLASSES.has(downgraded), rule };
}

/** The code's subject (RFC 3463 §3) when no rule decided. */
function bySubject(input: Parsed): Classification | undefined {
  const e = input.enhanced;
  if (!e || (e.s === "0" && e.d === "0")) return undefined;
  const rule = `subject:x.${e.s}`;
  if (e.c === "4") {
    // Temporary: policy-related deferrals (x.7) are the provider pushing back on the sender.
    return result(e.s === "7" ? "reputation" : "transient", input, rule);
  }
  switch (e.s) {
    // x.7 security or policy, x.6 media (content refused): the receiver does not want the message.
    case "7":
    case "6":
      return result("policy-or-spam", input, rule);
    // x.4 network and routing: another attempt or route may work.
    case "4":
      return result("transient", input, rule);
    default:
      return result("unknown", input, rule);
  }
}

/** Names a text rule by the words it matched: what an operator would put in an override. */
function textRule(matched: string): string {
  return `text:"${matched.replace(/\s+/g, " ").slice(0, 60)}"`;
}

export function createClassifier(operatorRules: readonly OperatorRule[] = []): Classifier {
  const compiled = compileOperatorRules(operatorRules);
  return (raw) => {
    const input = parse(raw);
    for (let i = 0; i < compiled.length; i++) {
      if (compiled[i]!(input))
        return result(operatorRules[i]!.class, input, `operator:${operatorRules[i]!.match}`);
    }
    for (const rule of SPECIFIC_TEXT_RULES) {
      const m = rule.text.exec(input.text);
      if (m) return result(rule.class, input, textRule(m[0]));
    }
    for (const rule of CODE_RULES) {
      if (codeRuleMatches(rule, input)) return result(rule.class, input, `code:${rule.code}`);
    }
    for (const rule of TEXT_RULES as readonly TextRule[]) {
      const m = rule.text.exec(input.text);
      if (m) return result(rule.class, input, textRule(m[0]));
    }
    const subject = bySubject(input);
    if (subject) return subject;
    if (input.temporary) return result("transient", input, "basic:4xx");
    return result("unknown", input, input.basic === null ? "none" : "basic:5xx");
  };
}

/** The classifier with the built-in table only. */
export const classifyBounce: Classifier = createClassifier();

/** Validates an operator rule's pattern; returns the error message or undefined. */
export function operatorRuleError(match: string): string | undefined {
  if (isCodeMatch(match.trim())) return undefined;
  try {
    new RegExp(match, "i");
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

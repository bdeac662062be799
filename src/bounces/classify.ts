/**
 * The bounce classifier: a remote reply (or a DSN's status and diagnostic) → a class and whether
 * it is a hard bounce, by the data table in rules.ts plus the operator's own rules from config.
 * Pure: no I/O, no clock; the delivery worker and the bounce listener both call it.
 *
 * Invariants: the enhanced code decides first (when specific), then the text, then the code's
 * subject and the basic code; a temporary reply is never hard; the result always names the rule
 * that decided, for logs and tests.
 * Security: `text` is untrusted remote input; only its first MAX_TEXT characters are examined and
 * every built-in pattern is linear. Operator patterns come from the trusted configuration.
 */
import {
  type BounceClass,
  CODE_RULES,
  type CodeRule,
  HARD_CLASSES,
  TEXT_RULES,
  type TextRule,
} from "./rules.js";

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
  /** Which rule decided: "operator:<match>", "code:5.1.1", "text:<pattern>", "subject:x.7", "basic:5xx". */
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
// Only right after a basic code ("550 5.1.1", "550-5.1.1"): an IP address like 10.4.5.6 is not one.
const ENHANCED_IN_TEXT = /\b[245]\d\d[ -]([245])\.(\d{1,3})\.(\d{1,3})\b/;
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
    const inText = ENHANCED_IN_TEXT.exec(text);
    if (inText && !(inText[2] === "0" && inText[3] === "0") && (!m || inText[1] === m[1])) m = inText;
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
    case "7":
      return result("policy-or-spam", input, rule);
    case "4":
    case "3":
      return result("transient", input, rule);
    default:
      return result("unknown", input, rule);
  }
}

export function createClassifier(operatorRules: readonly OperatorRule[] = []): Classifier {
  const compiled = compileOperatorRules(operatorRules);
  return (raw) => {
    const input = parse(raw);
    for (let i = 0; i < compiled.length; i++) {
      if (compiled[i]!(input))
        return result(operatorRules[i]!.class, input, `operator:${operatorRules[i]!.match}`);
    }
    for (const rule of CODE_RULES) {
      if (codeRuleMatches(rule, input)) return result(rule.class, input, `code:${rule.code}`);
    }
    for (const rule of TEXT_RULES as readonly TextRule[]) {
      if (rule.text.test(input.text))
        return result(rule.class, input, `text:${rule.text.source.slice(0, 40)}`);
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

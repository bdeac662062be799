/**
 * The one error type that crosses module boundaries (design convention 2, after maddy's
 * `exterrors`): it carries the SMTP reply a client should see, and whether the failure is
 * temporary. Anything thrown that is not a PetrelError is treated as temporary (451 4.3.0),
 * because an unknown fault must never turn into a permanent rejection of good mail.
 */

export interface SmtpReplyFields {
  /** Basic reply code, e.g. 550. */
  readonly smtpCode: number;
  /** RFC 3463 enhanced status code, e.g. "5.7.1". */
  readonly enhancedCode: string;
  /** Human-readable reply text, generic on purpose: the detail goes to the log. */
  readonly message: string;
}

export class PetrelError extends Error implements SmtpReplyFields {
  readonly smtpCode: number;
  readonly enhancedCode: string;
  readonly temporary: boolean;

  constructor(smtpCode: number, enhancedCode: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PetrelError";
    this.smtpCode = smtpCode;
    this.enhancedCode = enhancedCode;
    this.temporary = smtpCode >= 400 && smtpCode < 500;
  }
}

/** Maps any thrown value to the reply fields a client should see. */
export function toReplyFields(err: unknown): SmtpReplyFields & { temporary: boolean } {
  if (err instanceof PetrelError) return err;
  return {
    smtpCode: 451,
    enhancedCode: "4.3.0",
    message: "Temporary local problem, try again later",
    temporary: true,
  };
}

/** A failure of a command-line or configuration step, printed as one line without a stack. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

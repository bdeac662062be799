/**
 * The one error type that crosses module boundaries (design convention 2, after maddy's
 * `exterrors`). Services (src/services) throw a PetrelError with a stable `type`; each adapter
 * maps it: the CLI to exit status 1 and `petrel: <message>`, the HTTP API to an RFC 9457
 * problem response whose `type` URI ends in the same name and whose status is `status` here.
 * The types are part of the API (listed in the README): add new ones, never rename one.
 * Anything thrown that is not a PetrelError is an internal fault (HTTP 500, logged), never a
 * message shown to a client.
 */

/** Stable problem types with their HTTP status. */
export const PROBLEM_TYPES = {
  /** The input is malformed or breaks a rule (bad address, unknown event type, bad CSV line…). */
  "invalid-input": 400,
  /** A header value or address carries CR/LF, or a header Petrel sets itself was given. */
  "header-injection": 400,
  /** No or an unknown/revoked API key. */
  unauthorized: 401,
  /** The key lacks the scope the operation needs (the detail names it). */
  "missing-scope": 403,
  /** The sender may not send as this address/domain (the SMTP 550 5.7.1 refusals). */
  "sender-not-allowed": 403,
  /** Nothing of that name or id in this account (another account's things are not found either). */
  "not-found": 404,
  /** A name, domain, URL or key already exists. */
  conflict: 409,
  /** The same Idempotency-Key was used with a different request body. */
  "idempotency-conflict": 409,
  /** The message is larger than smtp.limits.maxMessageSize. */
  "payload-too-large": 413,
  /** Every recipient was refused (suppressed with suppression.mode: reject, too many…). */
  "recipients-refused": 422,
  /** Too many failed authentications from this address; try later. */
  "rate-limited": 429,
  /** The store or a listener is not available (readiness). */
  unavailable: 503,
  /** A temporary local failure (the store did not commit): retry later. */
  "temporary-failure": 503,
  /** The configuration or a command line is invalid (startup and CLI usage). */
  "invalid-config": 400,
} as const;

export type ProblemType = keyof typeof PROBLEM_TYPES;

export class PetrelError extends Error {
  readonly type: ProblemType;
  /** Extra members for the problem body (e.g. `scope` for missing-scope). Never secrets. */
  readonly extra: Readonly<Record<string, unknown>> | undefined;

  constructor(
    type: ProblemType,
    message: string,
    options?: { cause?: unknown; extra?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PetrelError";
    this.type = type;
    this.extra = options?.extra;
  }

  /** The HTTP status of this problem type. */
  get status(): number {
    return PROBLEM_TYPES[this.type];
  }
}

/** A configuration or command-line failure, printed as one line without a stack. */
export class UsageError extends PetrelError {
  constructor(message: string) {
    super("invalid-config", message);
    this.name = "UsageError";
  }
}

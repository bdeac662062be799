/**
 * Store part: the suppression list (issue 5). Suppressions are per account and per lower-cased
 * address; a hard bounce (recordOutcomes, or recordInboundReport for a late DSN) and a complaint
 * add one in the transaction of their event.
 */

export interface Suppression {
  readonly accountId: number;
  readonly accountName: string;
  /** Lower-cased. */
  readonly address: string;
  /** invalid-recipient | invalid-domain (hard bounces) | spamreport | manual | import. */
  readonly reason: string;
  /** The bounce or spamreport event that caused it; null for manual and imported rows. */
  readonly eventId: string | null;
  readonly messageId: string | null;
  /** The remote reply or feedback that caused it, or the operator's note. */
  readonly detail: string | null;
  readonly createdAt: number;
}

export interface NewSuppression {
  readonly accountId: number;
  readonly address: string;
  readonly reason: string;
  readonly detail?: string | null;
  /** Defaults to now (an import keeps the original time). */
  readonly createdAt?: number;
}

export interface SuppressionFilter {
  readonly accountId?: number;
  readonly reason?: string;
  readonly limit?: number;
}

export interface SuppressionStore {
  /** The account's suppression of `address` (compared lower-cased), or undefined. */
  findSuppression(accountId: number, address: string): Promise<Suppression | undefined>;
  /** Suppressions ordered by account name and address. */
  listSuppressions(filter?: SuppressionFilter): Promise<Suppression[]>;
  /** Adds suppressions in one transaction; an address already suppressed keeps its row. Returns how many were added. */
  addSuppressions(entries: readonly NewSuppression[]): Promise<number>;
  removeSuppression(accountId: number, address: string): Promise<boolean>;
}

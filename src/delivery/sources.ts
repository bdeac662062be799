/**
 * The egress pool: local source addresses with their own EHLO names, used round-robin per new
 * connection. A source can only reach addresses of its own family, so candidates of a family
 * without a source are dropped (with no pool configured, everything goes and the system chooses).
 */
import { isIP } from "node:net";
import type { Candidate } from "./mx.js";

export interface Source {
  readonly address: string;
  readonly ehloName: string;
}

export class SourcePool {
  private readonly byFamily: Map<4 | 6, Source[]>;
  private readonly cursor = new Map<4 | 6, number>();
  private readonly empty: boolean;

  constructor(
    sources: ReadonlyArray<{ readonly address: string; readonly ehloName?: string | undefined }>,
    hostname: string,
  ) {
    this.empty = sources.length === 0;
    this.byFamily = new Map([
      [4, []],
      [6, []],
    ]);
    for (const s of sources) {
      this.byFamily
        .get(isIP(s.address) === 6 ? 6 : 4)!
        .push({ address: s.address, ehloName: s.ehloName ?? hostname });
    }
  }

  /** The candidates this pool can reach, in their order. */
  usable(candidates: readonly Candidate[]): Candidate[] {
    if (this.empty) return [...candidates];
    return candidates.filter((c) => (this.byFamily.get(family(c.ip))?.length ?? 0) > 0);
  }

  /** The next source for a connection to `ip`, or undefined when no pool is configured. */
  next(ip: string): Source | undefined {
    if (this.empty) return undefined;
    const f = family(ip);
    const list = this.byFamily.get(f)!;
    if (list.length === 0) return undefined;
    const i = this.cursor.get(f) ?? 0;
    this.cursor.set(f, (i + 1) % list.length);
    return list[i];
  }
}

function family(ip: string): 4 | 6 {
  return isIP(ip) === 6 ? 6 : 4;
}

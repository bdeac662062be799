/**
 * Store part: what the nodes sharing one store keep in common (the VERP key today).
 */

export interface NodeStore {
  /** A secret Petrel keeps for itself (the VERP key): created with generate() on first use, the same for every process. */
  nodeSecret(name: string, generate: () => string): Promise<string>;
}

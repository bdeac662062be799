/**
 * Errors a Store raises for every backend alike (a backend maps its own codes to these).
 */

/** A uniqueness rule was broken (a name or domain already taken). */
export class StoreConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreConflictError";
  }
}

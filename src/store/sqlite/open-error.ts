/**
 * What a failure to open the SQLite database means, in one line for the operator (issue 13 item
 * 6): the path, what is wrong, what to do — instead of a raw SqliteError stack trace.
 */
import { PetrelError } from "../../errors.js";

const HINTS: Record<string, string> = {
  SQLITE_NOTADB:
    "is not a SQLite database (damaged or overwritten); restore it from a backup (docs/operations.md) or move it away to start empty",
  SQLITE_CORRUPT:
    "is damaged; restore it from a backup (docs/operations.md), or try `sqlite3 FILE .recover` on a copy",
  SQLITE_CANTOPEN:
    "cannot be opened (missing directory, a directory in its place, or no permission); check the path and the permissions",
  SQLITE_READONLY: "is read-only; petrel needs to write to it and its directory",
  SQLITE_PERM:
    "cannot be accessed (permission denied); check the owner and mode of the file and its directory",
  SQLITE_IOERR: "cannot be read or written (I/O error); check the disk",
  SQLITE_FULL: "cannot be written: the disk is full; free some space",
};

/** A PetrelError for a known SQLite open failure; anything else is returned unchanged. */
export function describeOpenFailure(file: string, err: unknown): unknown {
  const code = (err as { code?: string }).code ?? "";
  const base = code.replace(/^(SQLITE_[A-Z]+).*$/, "$1");
  const hint = HINTS[base];
  if (hint === undefined) return err;
  const what = (err as Error).message;
  return new PetrelError("invalid-config", `database ${file} ${hint} (${what})`, { cause: err });
}

import { join } from "node:path";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { tempDataDir } from "./support/petrel-process.js";
import { storeConformance } from "./support/store-conformance.js";

storeConformance("sqlite", async () =>
  openSqliteStore({ file: join(tempDataDir("petrel-store-"), "petrel.db") }),
);

// The same behaviours when spool batches are committed on the enqueue thread, as in `petrel serve`.
storeConformance("sqlite, enqueue thread", async () =>
  openSqliteStore({ file: join(tempDataDir("petrel-store-"), "petrel.db"), enqueueThread: true }),
);

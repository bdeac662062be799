import { join } from "node:path";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { tempDataDir } from "./support/petrel-process.js";
import { storeConformance } from "./support/store-conformance.js";

storeConformance("sqlite", async () =>
  openSqliteStore({ file: join(tempDataDir("petrel-store-"), "petrel.db") }),
);

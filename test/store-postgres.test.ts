/**
 * The Store conformance suite against PostgreSQL: each test gets a fresh database on the
 * machine's server (test/support/postgres.ts), created and dropped here.
 */
import { after } from "node:test";
import { openPostgresStore } from "../src/store/postgres/postgres-store.js";
import { type FreshDatabase, freshPostgresDatabase } from "./support/postgres.js";
import { storeConformance } from "./support/store-conformance.js";

const databases: FreshDatabase[] = [];
after(async () => {
  for (const db of databases) await db.drop();
});

storeConformance("postgres", async () => {
  const db = await freshPostgresDatabase("petrel_store");
  databases.push(db);
  return openPostgresStore({ url: db.url, poolSize: 4 });
});

/**
 * Where the shared bounce and complaint samples are: ../shared/samples beside the repository root
 * (as in CI, where ../shared sits beside the checkout). Tests read them in place, never copy them.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** dist/test/support → the repository root → ../shared/samples. */
export const SAMPLES = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../shared/samples");

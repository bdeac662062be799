/** Petrel's version: `petrel --version`, and each node's row in `petrel nodes`. */
export const PETREL_VERSION = "0.1.0";

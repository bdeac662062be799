/**
 * The dashboard's two static files (static/dashboard.css, static/dashboard.js), shipped in the
 * repository as they are: no build step, no CDN, no font, nothing fetched at run time. They are
 * read once at start and served under a content-hashed URL with a year of caching, so a page
 * view after the first downloads only its HTML.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";

export interface Asset {
  readonly url: string;
  readonly type: string;
  readonly body: Buffer;
}

export interface Assets {
  readonly css: string;
  readonly js: string;
  readonly all: readonly Asset[];
}

/**
 * src/http/dashboard/static, found from this module whether it runs compiled
 * (dist/src/http/dashboard) or from source (tsx): the first ancestor that holds it.
 */
function staticDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    for (const candidate of [join(dir, "static"), join(dir, "src/http/dashboard/static")]) {
      if (existsSync(join(candidate, "dashboard.css"))) return candidate;
    }
    dir = dirname(dir);
  }
  throw new Error("dashboard assets not found (src/http/dashboard/static)");
}

export function loadAssets(): Assets {
  const dir = staticDir();
  const load = (name: string, type: string): Asset => {
    const body = readFileSync(join(dir, name));
    const hash = createHash("sha256").update(body).digest("hex").slice(0, 12);
    const dot = name.lastIndexOf(".");
    return { url: `/assets/${name.slice(0, dot)}.${hash}${name.slice(dot)}`, type, body };
  };
  const css = load("dashboard.css", "text/css; charset=utf-8");
  const js = load("dashboard.js", "text/javascript; charset=utf-8");
  return { css: css.url, js: js.url, all: [css, js] };
}

export function registerAssets(app: FastifyInstance, assets: Assets): void {
  for (const asset of assets.all) {
    app.get(asset.url, { schema: { hide: true } }, async (_request, reply) =>
      reply.header("cache-control", "public, max-age=31536000, immutable").type(asset.type).send(asset.body),
    );
  }
}

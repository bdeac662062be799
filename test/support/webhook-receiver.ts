/**
 * A webhook receiver for tests: a real HTTP server on 127.0.0.1 that keeps every POST (raw body,
 * Petrel-Signature header, parsed events, arrival time) and answers as the test says — a status
 * code per request (a 3xx with a Location header pointing at `redirectTo`), or "hang" (never
 * answer, as a receiver stuck mid-request; `hanging` counts those whose client is still
 * connected). It checks each
 * signature the way a receiver would (HMAC-SHA256 of "t.body" with node:crypto directly, not
 * Petrel's own code), once the test tells it the secret.
 */
import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { PetrelEvent } from "../../src/store/types.js";

export interface ReceivedPost {
  readonly body: string;
  readonly signature: string;
  readonly events: PetrelEvent[];
  readonly at: number;
  readonly status: number | "hang";
}

export type Respond = (post: { readonly events: PetrelEvent[]; readonly n: number }) => number | "hang";

export interface WebhookReceiver {
  readonly url: string;
  readonly posts: ReceivedPost[];
  /** How the next requests are answered (default: 200). */
  respond: Respond;
  /** Location of 3xx answers (default: a path on this receiver). */
  redirectTo: string | undefined;
  /** Requests answered "hang" whose connection the client has not closed yet. */
  hanging(): number;
  /** Every event received in a 2xx-answered POST, in arrival order (duplicates included). */
  accepted(): PetrelEvent[];
  /** Distinct events by id, checking that duplicates are identical. */
  distinct(): Map<string, PetrelEvent>;
  /** Resolves once `predicate` holds (checked at each POST and every 50 ms). */
  waitFor(predicate: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(respond: Respond = () => 200): Promise<WebhookReceiver> {
  const posts: ReceivedPost[] = [];
  const hanging = new Set<ServerResponse>();
  const receiver = {
    respond,
    redirectTo: undefined,
  } as WebhookReceiver & { respond: Respond };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let events: PetrelEvent[] = [];
      try {
        events = JSON.parse(body) as PetrelEvent[];
      } catch {
        // kept as received; the test's assertions report it
      }
      const status = receiver.respond({ events, n: posts.length });
      posts.push({
        body,
        signature: String(req.headers["petrel-signature"] ?? ""),
        events,
        at: Date.now(),
        status,
      });
      if (status === "hang") {
        hanging.add(res);
        res.once("close", () => hanging.delete(res));
        return;
      }
      const location = status >= 300 && status < 400 ? { location: receiver.redirectTo ?? "/moved" } : {};
      res
        .writeHead(status, { "content-type": "text/plain", ...location })
        .end(status < 300 ? "ok" : "not now");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${port}/petrel-events`,
    posts,
    hanging: () => hanging.size,
    accepted: () =>
      posts.filter((p) => typeof p.status === "number" && p.status < 300).flatMap((p) => p.events),
    distinct() {
      const byId = new Map<string, PetrelEvent>();
      for (const event of receiver.accepted()) {
        const seen = byId.get(event.id);
        if (seen) assert.deepEqual(event, seen, `duplicate of ${event.id} differs`);
        else byId.set(event.id, event);
      }
      return byId;
    },
    async waitFor(predicate: () => boolean, timeoutMs = 60_000, what = "condition") {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`webhook receiver: timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}

/** Checks a Petrel-Signature header as a receiver would (see the README recipe). */
export function signatureValid(secret: string, header: string, body: string): boolean {
  const parts = Object.fromEntries(header.split(",").map((p) => p.split("=", 2) as [string, string]));
  if (!parts.t || !parts.v1) return false;
  const expected = createHmac("sha256", secret).update(`${parts.t}.${body}`).digest();
  const given = Buffer.from(parts.v1, "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * GET /live: server-sent events (text/event-stream) following the session's account in the
 * event log, so the message list shows new messages and state changes without reloading. The
 * stream polls the log once a second from its cursor (an event id; the browser resends the last
 * one as Last-Event-ID when it reconnects, so nothing is missed across a reconnect).
 *   event: message   data: {"id","receivedAt","from","recipients":[{address,state}],"categories"}
 *   event: state     data: {"messageId","recipient","state"}
 * Security: the account comes from the session, never from the request; the data is JSON that
 * static/dashboard.js puts into the page with textContent only.
 */
import type { FastifyInstance } from "fastify";
import { requireAccount, type ServiceContext } from "../../services/context.js";
import type { EventType, PetrelEvent } from "../../store/types.js";
import type { DashboardDeps } from "./index.js";
import { need, sessionOf } from "./session.js";

const POLL_MS = 1000;
const CURSOR = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/** The recipient state an event leaves behind. */
const STATE_OF: Partial<Record<EventType, string>> = {
  processed: "queued",
  deferred: "deferred",
  delivered: "delivered",
  bounce: "bounced",
  expired: "expired",
  dropped: "dropped",
  held: "held",
};

/** The id of the account's newest event ("0…" when it has none): where a live page starts. */
export async function newestAccountEvent(ctx: ServiceContext, account: string): Promise<string> {
  const { id } = await requireAccount(ctx.store, account);
  const [last] = await ctx.store.listEvents({ accountId: id, limit: 1, newest: true });
  return last?.id ?? "0".repeat(26);
}

export function registerLive(app: FastifyInstance, deps: DashboardDeps): void {
  const { ctx } = deps.api;
  const open = new Set<() => void>();
  app.addHook("preClose", async () => {
    for (const end of open) end();
  });

  app.get("/live", deps.signedIn, async (request, reply) => {
    const session = sessionOf(request);
    need(session, "messages.read");
    const account = await requireAccount(ctx.store, session.account);
    const resume = request.headers["last-event-id"];
    const after = (request.query as Record<string, unknown>).after;
    let cursor =
      typeof resume === "string" && CURSOR.test(resume)
        ? resume
        : typeof after === "string" && CURSOR.test(after)
          ? after
          : await newestAccountEvent(ctx, session.account);

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      connection: "keep-alive",
    });
    res.write("retry: 2000\n\n");
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    let quiet = 0;
    const end = () => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      open.delete(end);
      res.end();
    };
    open.add(end);
    request.raw.on("close", end);

    const send = (event: string, id: string, data: unknown) => {
      res.write(`event: ${event}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const poll = async () => {
      if (ended) return;
      try {
        const events: PetrelEvent[] = await ctx.store.listEvents({
          accountId: account.id,
          afterId: cursor,
          limit: 200,
        });
        const announced = new Set<string>();
        for (const e of events) {
          if (ended) return;
          if (e.type === "processed" && !announced.has(e.messageId)) {
            announced.add(e.messageId);
            const m = await ctx.store.getMessage(e.messageId);
            if (m && m.accountId === account.id)
              send("message", e.id, {
                id: m.id,
                receivedAt: m.receivedAt,
                from: m.mailFrom,
                recipients: m.recipientDetails.map((r) => ({ address: r.address, state: r.state })),
                categories: m.categories,
              });
          } else if (e.type !== "processed" && STATE_OF[e.type]) {
            send("state", e.id, { messageId: e.messageId, recipient: e.recipient, state: STATE_OF[e.type] });
          }
          cursor = e.id;
        }
        // A comment now and then keeps proxies from closing a quiet stream.
        if (events.length === 0 && ++quiet % 15 === 0) res.write(": idle\n\n");
      } catch (err) {
        request.log.warn({ err }, "dashboard live stream poll failed");
      }
      if (!ended) timer = setTimeout(() => void poll(), POLL_MS);
    };
    void poll();
  });
}

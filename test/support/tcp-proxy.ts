/**
 * A TCP proxy a test puts between Petrel and a server (PostgreSQL) to cut the connection on
 * demand, without touching the server itself (other people's tests use the machine's PostgreSQL):
 *
 *   const proxy = await startTcpProxy({ host: "127.0.0.1", port: 5432 });
 *   // point the nodes at 127.0.0.1:proxy.port
 *   proxy.cut();      // every open connection is reset; new ones are reset at once (an outage)
 *   proxy.restore();  // new connections go through again
 *
 * Binds port 0 on the given loopback address. While cut, a connection is accepted and destroyed
 * at once (the client sees ECONNRESET or an immediate close, as with a database that went away).
 */
import { connect, createServer, type Socket } from "node:net";

export interface TcpProxy {
  readonly address: string;
  readonly port: number;
  /** Connections made through the proxy since it started (including ones reset while cut). */
  readonly connectionsMade: number;
  /** Connections open through it now. */
  readonly openConnections: number;
  /** Resets every open connection and refuses (resets) new ones until restore(). */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(
  target: { readonly host: string; readonly port: number },
  options: { readonly address?: string } = {},
): Promise<TcpProxy> {
  const address = options.address ?? "127.0.0.1";
  const open = new Set<Socket>();
  let cut = false;
  let made = 0;
  const server = createServer((client) => {
    made++;
    if (cut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: target.host, port: target.port });
    open.add(client);
    open.add(upstream);
    const end = () => {
      open.delete(client);
      open.delete(upstream);
      if (!client.destroyed) client.destroy();
      if (!upstream.destroyed) upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen({ host: address, port: 0 }, resolve));
  const port = (server.address() as { port: number }).port;
  return {
    address,
    port,
    get connectionsMade() {
      return made;
    },
    get openConnections() {
      return Math.ceil(open.size / 2);
    },
    cut() {
      cut = true;
      for (const s of open) s.resetAndDestroy();
      open.clear();
    },
    restore() {
      cut = false;
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

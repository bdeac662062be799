/**
 * A cheap HTTP/1.1 keep-alive client over one net socket, for bench:http. node:http's Agent
 * (and fetch/undici even more) spend client CPU per request on the same 2 cores the server
 * runs on, which starved the server and understated its rate: this client writes a prebuilt
 * request head and parses only the status line and Content-Length (RFC 9112 §6.3: Fastify
 * answers JSON with a Content-Length, never chunked here — anything else is an error).
 */
import { connect, type Socket } from "node:net";

export interface RawAnswer {
  readonly status: number;
  readonly body: Buffer;
}

export class RawHttpClient {
  private buffer: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (a: RawAnswer) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly head: string,
  ) {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    const fail = (err: Error) => {
      this.failure = err;
      this.waiting?.reject(err);
      this.waiting = undefined;
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("connection closed by the server")));
  }

  static open(port: number, headers: Record<string, string>): Promise<RawHttpClient> {
    const head = Object.entries({ host: `127.0.0.1:${port}`, connection: "keep-alive", ...headers })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    return new Promise((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port, noDelay: true }, () => {
        socket.off("error", reject);
        resolve(new RawHttpClient(socket, head));
      });
      socket.once("error", reject);
    });
  }

  /** One request; the next may only be sent once this one is answered (no pipelining). */
  request(method: string, path: string, body: Buffer): Promise<RawAnswer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(`${method} ${path} HTTP/1.1\r\n${this.head}content-length: ${body.length}\r\n\r\n`);
      this.socket.write(body);
    });
  }

  private parse(): void {
    const end = this.buffer.indexOf("\r\n\r\n");
    if (end < 0 || !this.waiting) return;
    const head = this.buffer.subarray(0, end).toString("latin1");
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!length) {
      this.waiting.reject(new Error(`answer without Content-Length: ${head.slice(0, 200)}`));
      this.waiting = undefined;
      return;
    }
    const total = end + 4 + Number(length[1]);
    if (this.buffer.length < total) return;
    const body = this.buffer.subarray(end + 4, total);
    this.buffer = this.buffer.subarray(total);
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting.resolve({ status, body });
  }

  close(): void {
    this.socket.removeAllListeners("close");
    this.socket.destroy();
  }
}

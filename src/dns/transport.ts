/**
 * One DNS question to one server over UDP or TCP (RFC 1035 §4.2), encoded and decoded with
 * dns-packet. The resolver decides what to ask, whom, and what the answer means.
 *
 * Invariants: every exchange ends (answer, error or timeout) and releases its socket; a UDP
 * reply counts only if it carries our random ID and echoes our question, otherwise we keep
 * waiting for the real one until the timeout.
 * Security: replies are untrusted network input. UDP sockets are connected, so the kernel drops
 * datagrams from any other address/port; the 16-bit ID is random (RFC 5452 §9.2) and the source
 * port is a fresh ephemeral one per query; dns-packet throws on malformed packets (names with
 * forward or looping pointers, overruns), which we treat as no answer; a TCP reply is capped by
 * its 16-bit length prefix.
 */

import { randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import type { DecodedPacket, Packet, RecordType } from "dns-packet";
import { decode, encode, RECURSION_DESIRED, streamEncode } from "dns-packet";
import { formatNameServer, type NameServer } from "./servers.js";

export interface DnsQuestion {
  /** ASCII (A-label) name without the trailing dot. */
  readonly name: string;
  readonly type: RecordType;
}

export interface ExchangeOptions {
  readonly timeoutMs: number;
  /** Advertise EDNS0 with this UDP payload size (RFC 6891); 0 = plain DNS, 512-byte UDP limit. */
  readonly ednsUdpSize: number;
}

export type TransportFailure = "timeout" | "network" | "malformed";

export class DnsTransportError extends Error {
  readonly failure: TransportFailure;
  constructor(failure: TransportFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DnsTransportError";
    this.failure = failure;
  }
}

/** The reply's RCODE (low 4 bits of the header flags; we send no EDNS extended codes). */
export function rcodeOf(packet: DecodedPacket): number {
  return (packet.flags ?? 0) & 0xf;
}

export function isTruncated(packet: DecodedPacket): boolean {
  return packet.flag_tc;
}

function buildQuery(question: DnsQuestion, ednsUdpSize: number): { id: number; packet: Packet } {
  const id = randomInt(0x10000);
  const packet: Packet = {
    type: "query",
    id,
    flags: RECURSION_DESIRED,
    questions: [{ type: question.type, name: question.name, class: "IN" }],
  };
  if (ednsUdpSize > 0) {
    // The typings want every OPT field; dns-packet itself defaults the rest to zero.
    packet.additionals = [
      {
        type: "OPT",
        name: ".",
        udpPayloadSize: ednsUdpSize,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: 0,
        flag_do: false,
        options: [],
      },
    ];
  }
  return { id, packet };
}

/** Is this the reply to our query? (RFC 5452 §4: ID, and the question echoed back.) */
function answersQuery(reply: DecodedPacket, id: number, question: DnsQuestion): boolean {
  const q = reply.questions?.[0];
  return (
    reply.flag_qr &&
    reply.id === id &&
    q !== undefined &&
    q.type === question.type &&
    q.name.toLowerCase() === question.name.toLowerCase()
  );
}

export function udpExchange(
  server: NameServer,
  question: DnsQuestion,
  options: ExchangeOptions,
): Promise<DecodedPacket> {
  const { id, packet } = buildQuery(question, options.ednsUdpSize);
  const where = formatNameServer(server);
  return new Promise((resolve, reject) => {
    const socket = createSocket(server.family === 6 ? "udp6" : "udp4");
    let done = false;
    let strays = 0;
    const finish = (err: Error | null, reply?: DecodedPacket) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(reply as DecodedPacket);
    };
    const timer = setTimeout(() => {
      const detail = strays > 0 ? ` (${strays} unusable replies ignored)` : "";
      finish(
        new DnsTransportError("timeout", `timeout after ${options.timeoutMs} ms from ${where}${detail}`),
      );
    }, options.timeoutMs);
    socket.on("error", (err) => {
      finish(new DnsTransportError("network", `${errorCode(err)} from ${where}`, { cause: err }));
    });
    socket.on("message", (message) => {
      let reply: DecodedPacket;
      try {
        reply = decode(message);
      } catch {
        strays++;
        return;
      }
      if (!answersQuery(reply, id, question)) {
        strays++;
        return;
      }
      finish(null, reply);
    });
    socket.connect(server.port, server.host, () => {
      if (done) return;
      socket.send(encode(packet), (err) => {
        if (err) finish(new DnsTransportError("network", `${errorCode(err)} to ${where}`, { cause: err }));
      });
    });
  });
}

export function tcpExchange(
  server: NameServer,
  question: DnsQuestion,
  options: ExchangeOptions,
): Promise<DecodedPacket> {
  const { id, packet } = buildQuery(question, options.ednsUdpSize);
  const where = formatNameServer(server);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: server.host, port: server.port });
    socket.setNoDelay(true);
    let done = false;
    let received: Buffer = Buffer.alloc(0);
    const finish = (err: Error | null, reply?: DecodedPacket) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(reply as DecodedPacket);
    };
    const timer = setTimeout(() => {
      finish(new DnsTransportError("timeout", `timeout after ${options.timeoutMs} ms from ${where} (TCP)`));
    }, options.timeoutMs);
    socket.on("connect", () => socket.write(streamEncode(packet)));
    socket.on("error", (err) => {
      finish(new DnsTransportError("network", `${errorCode(err)} from ${where} (TCP)`, { cause: err }));
    });
    socket.on("close", () => {
      finish(new DnsTransportError("network", `connection closed by ${where} before a reply (TCP)`));
    });
    socket.on("data", (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const length = received.readUInt16BE(0);
      if (received.length < 2 + length) return;
      let reply: DecodedPacket;
      try {
        reply = decode(received.subarray(2, 2 + length));
      } catch (err) {
        finish(new DnsTransportError("malformed", `malformed reply from ${where} (TCP)`, { cause: err }));
        return;
      }
      // Over TCP a wrong ID is a broken server rather than a spoofer; give up on this server.
      if (!answersQuery(reply, id, question)) {
        finish(new DnsTransportError("malformed", `reply from ${where} does not match the query (TCP)`));
        return;
      }
      finish(null, reply);
    });
  });
}

function errorCode(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code ?? err.message;
}

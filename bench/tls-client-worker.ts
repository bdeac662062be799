/**
 * One thread of bench:accept's load (c): sessions that each open a new connection per message,
 * STARTTLS, AUTH, send, QUIT. Several threads run side by side because a TLS client handshake costs
 * more CPU than the server's, and one event loop could not load the server otherwise.
 */
import { readFileSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { RawSmtpSession } from "../test/support/raw-smtp.js";

interface Job {
  port: number;
  caFile: string;
  key: string;
  sessions: number;
  messages: number;
  from: string;
  body: string;
}

const job = workerData as Job;
const ca = readFileSync(job.caFile);
const latencies: number[] = [];
let next = 0;
await Promise.all(
  Array.from({ length: job.sessions }, async () => {
    while (next < job.messages) {
      const n = next++;
      const session = await RawSmtpSession.open({ port: job.port, starttls: true, ca, apiKey: job.key });
      const content = Buffer.from(
        `From: ${job.from}\r\nTo: sink@example.com\r\nSubject: bench ${n}\r\n\r\n${job.body}`,
      );
      const reply = await session.send({ from: job.from, to: ["sink@example.com"], content });
      if (reply.code !== 250) throw new Error(`${reply.code} ${reply.text}`);
      latencies.push(reply.afterDataMs!);
      await session.quit();
    }
  }),
);
parentPort!.postMessage(latencies);

/**
 * PROXY protocol on the SMTP listeners (issue 8 item 6), against a real `petrel serve`:
 *  - raw v1 and v2 headers from the trusted balancer address (127.0.0.7): the header's client
 *    address is the one trusted networks, the per-IP cap, the logs and the Received field use;
 *  - a header from an untrusted address, or none on a listener that expects one: closed, no reply;
 *  - Debian's HAProxy with `send-proxy-v2` in front of both listeners (skipped when haproxy is
 *    not installed; .ci/run installs it), with Nodemailer as the client from its own address.
 * HAProxy listens on sockets this test binds to port 0 and hands over as inherited descriptors
 * (`bind fd@3`), so no port is ever guessed.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import nodemailer from "nodemailer";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { SmtpTestClient } from "./support/dialogue.js";
import {
  type PetrelProcess,
  petrelOk,
  readCa,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { waitFor } from "./support/wait.js";

const BALANCER = "127.0.0.7";
const CLIENT_NET = "198.51.100.0/24"; // only ever a claimed address inside PROXY headers
const REAL_CLIENT = "127.0.0.58"; // the client behind HAProxy

function hasHaproxy(): boolean {
  try {
    execFileSync("haproxy", ["-v"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** A TCP connection from the balancer's address, connected. */
async function connectFromBalancer(port: number): Promise<Socket> {
  const raw = netConnect({ host: "127.0.0.1", port, localAddress: BALANCER });
  await new Promise<void>((resolve, reject) => raw.once("connect", resolve).once("error", reject));
  return raw;
}

/** Waits for the 220 greeting over TLS, then QUITs and waits for the close. */
async function greetAndQuit(socket: TLSSocket): Promise<void> {
  const greeting = await new Promise<string>((resolve, reject) => {
    socket.setEncoding("utf8").once("data", resolve);
    socket.once("error", reject);
  });
  assert.match(greeting, /^220 /);
  socket.end("QUIT\r\n");
  await new Promise((r) => socket.once("close", r));
}

function v2Header(src: string, srcPort: number, dst: string, dstPort: number): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const ip = (a: string) => a.split(".").map(Number);
  const body = Buffer.from([
    ...ip(src),
    ...ip(dst),
    srcPort >> 8,
    srcPort & 255,
    dstPort >> 8,
    dstPort & 255,
  ]);
  return Buffer.concat([sig, Buffer.from([0x21, 0x11, 0, body.length]), body]);
}

/** Connects from `localAddress`, writes `first`, and resolves with what arrived before the close. */
function rawExchange(port: number, localAddress: string, first: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: "127.0.0.1", port, localAddress });
    let got = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`not closed; got ${JSON.stringify(got)}`));
    }, 15_000);
    socket.on("connect", () => socket.write(first));
    socket.on("data", (d) => {
      got += d.toString("latin1");
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

async function storedContent(dataDir: string, queueId: string): Promise<string> {
  const store = openSqliteStore({ file: join(dataDir, "petrel.db") });
  try {
    return (await store.getMessageContent(queueId))!.toString("latin1");
  } finally {
    await store.close();
  }
}

// The primary reads the header and hands the socket, with any bytes read past it (a ClientHello on
// the implicit-TLS listener), to a session process: the same cases with smtp.workers 2 (issue 12).
for (const workers of [1, 2])
  describe(`PROXY protocol (smtp.workers ${workers})`, () => {
    const dataDir = tempDataDir();
    let petrel: PetrelProcess;

    before(async () => {
      await petrelOk(dataDir, ["senders", "add", "app@proxy.example"]);
      petrel = await startPetrel(dataDir, {
        config: {
          auth: {
            trustedNetworks: [
              { network: CLIENT_NET, account: "default" },
              { network: `${REAL_CLIENT}/32`, account: "default" },
            ],
          },
          smtp: {
            submission: { proxyProtocol: true },
            submissions: { proxyProtocol: true },
            proxyProtocol: { trustedNetworks: [`${BALANCER}/32`] },
            limits: { maxConnectionsPerIp: 2, tlsHandshakeTimeoutMs: 3000 },
            workers,
          },
        },
      });
    });
    after(async () => {
      await petrel?.stop();
      removeDataDir(dataDir);
    });

    it("v1 from the balancer: the header's address is the client (trusted network, logs, Received)", async () => {
      const port = petrel.ports.submission!;
      const client = await SmtpTestClient.connect(port, { localAddress: BALANCER });
      client.sendRaw(`PROXY TCP4 198.51.100.9 127.0.0.1 40001 ${port}\r\n`);
      await client.expect(/^220 /);
      client.send("EHLO client.example");
      await client.expect(/^250/);
      client.send("MAIL FROM:<app@proxy.example>"); // no AUTH: 198.51.100.9 is a trusted network
      await client.expect(/^250 /);
      client.send("RCPT TO:<user@example.com>");
      await client.expect(/^250 /);
      client.send("DATA");
      await client.expect(/^354 /);
      client.sendRaw("From: app@proxy.example\r\nSubject: via proxy\r\n\r\nhello\r\n.\r\n");
      const queued = await client.expect(/^250 2\.0\.0 Ok: queued as /);
      await client.close();
      const queueId = /queued as (\S+)/.exec(queued.text)![1]!;
      assert.match(
        await storedContent(dataDir, queueId),
        /^Received: from client\.example \(\[198\.51\.100\.9\]\)|\[198\.51\.100\.9\]/m,
      );
      const find = () => petrel.logRecords().find((r) => r.msg === "queued" && r.queueId === queueId);
      const deadline = Date.now() + 5000;
      while (!find() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(find()?.ip, "198.51.100.9");
    });

    it("v2 before the TLS handshake on the implicit-TLS listener", async () => {
      const port = petrel.ports.submissions!;
      const raw = await connectFromBalancer(port);
      raw.write(v2Header("198.51.100.10", 40002, "127.0.0.1", port));
      const socket = tlsConnect({ socket: raw, ca: readCa(petrel), servername: "localhost" });
      await greetAndQuit(socket);
      const deadline = Date.now() + 5000;
      const closedFrom = () =>
        petrel
          .logRecords()
          .filter((r) => r.msg === "smtp session closed" && r.listener === "submissions")
          .map((r) => r.remote);
      while (!closedFrom().includes("198.51.100.10") && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      assert.ok(closedFrom().includes("198.51.100.10"), JSON.stringify(closedFrom()));
    });

    it("v2 and the ClientHello in one TCP write on the implicit-TLS listener", async () => {
      // A balancer may send the header and the client's first bytes in one segment; then the
      // ClientHello arrives with the header and must be handed on with the socket. The TLS
      // client writes into a relay stream whose first write goes out joined to the header.
      const port = petrel.ports.submissions!;
      const raw = await connectFromBalancer(port);
      let header: Buffer | undefined = v2Header("198.51.100.12", 40003, "127.0.0.1", port);
      const relay = new Duplex({
        write(chunk: Buffer, _encoding, done) {
          const joined = header ? Buffer.concat([header, chunk]) : chunk;
          header = undefined;
          raw.write(joined, done);
        },
        read() {},
        final(done) {
          raw.end(done);
        },
      });
      raw.on("data", (chunk: Buffer) => relay.push(chunk));
      raw.on("end", () => relay.push(null));
      const socket = tlsConnect({ socket: relay, ca: readCa(petrel), servername: "localhost" });
      await greetAndQuit(socket);
      raw.destroy();
    });

    it("refuses a header from an untrusted address, a missing header, and a malformed one", async () => {
      const port = petrel.ports.submission!;
      // From 127.0.0.8, not a balancer: it must not choose its own address.
      assert.equal(
        await rawExchange(port, "127.0.0.8", `PROXY TCP4 198.51.100.11 127.0.0.1 1 ${port}\r\n`),
        "",
      );
      // From the balancer without a header: an SMTP command is no PROXY header.
      assert.equal(await rawExchange(port, BALANCER, "EHLO sneaky.example\r\n"), "");
      assert.equal(await rawExchange(port, BALANCER, "PROXY TCP4 1.2.3.4\r\n"), "");
      // Nothing at all: dropped at the handshake timeout.
      assert.equal(await rawExchange(port, BALANCER, ""), "");
      // The refusal log lines are written asynchronously: wait for them (with a deadline).
      const expected = ["proxy-untrusted", "proxy-header-invalid", "proxy-header-timeout"];
      const logged = () => new Set(petrel.logRecords().map((r) => r.reason));
      await waitFor(() => expected.every((r) => logged().has(r)), {
        what: "the three refusals in the log",
        timeoutMs: 10_000,
        describe: () => JSON.stringify([...logged()]),
      });
    });

    it("counts the per-IP cap by the client address in the header, not the balancer's", async () => {
      const port = petrel.ports.submission!;
      const open: SmtpTestClient[] = [];
      try {
        for (let i = 0; i < 2; i++) {
          const c = await SmtpTestClient.connect(port, { localAddress: BALANCER });
          c.sendRaw(`PROXY TCP4 198.51.100.20 127.0.0.1 ${41000 + i} ${port}\r\n`);
          await c.expect(/^220 /);
          open.push(c);
        }
        const third = await rawExchange(
          port,
          BALANCER,
          `PROXY TCP4 198.51.100.20 127.0.0.1 41002 ${port}\r\n`,
        );
        assert.equal(third, "", "the third from one client address is refused");
        const other = await SmtpTestClient.connect(port, { localAddress: BALANCER });
        other.sendRaw(`PROXY TCP4 198.51.100.21 127.0.0.1 41003 ${port}\r\n`);
        await other.expect(/^220 /);
        open.push(other);
      } finally {
        for (const c of open) await c.close();
      }
    });

    describe("behind HAProxy (send-proxy-v2)", {
      skip: workers !== 1 ? "once is enough" : !hasHaproxy() && "haproxy is not installed",
    }, () => {
      let haproxy: ChildProcess;
      const fronts: Server[] = [];
      const frontPorts: number[] = [];

      before(async () => {
        for (let i = 0; i < 2; i++) {
          const server = createServer();
          await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
          fronts.push(server);
          frontPorts.push((server.address() as { port: number }).port);
        }
        const cfg = join(dataDir, "haproxy.cfg");
        writeFileSync(
          cfg,
          [
            "global",
            "  maxconn 100",
            "defaults",
            "  mode tcp",
            "  timeout connect 5s",
            "  timeout client 30s",
            "  timeout server 30s",
            "frontend submission",
            "  bind fd@3",
            "  default_backend petrel_submission",
            "frontend submissions",
            "  bind fd@4",
            "  default_backend petrel_submissions",
            "backend petrel_submission",
            `  server p1 127.0.0.1:${petrel.ports.submission} send-proxy-v2 source ${BALANCER}`,
            "backend petrel_submissions",
            `  server p1 127.0.0.1:${petrel.ports.submissions} send-proxy-v2 source ${BALANCER}`,
            "",
          ].join("\n"),
        );
        // The listening sockets, bound to port 0 here, become HAProxy's descriptors 3 and 4.
        const fds = fronts.map((s) => (s as unknown as { _handle: { fd: number } })._handle.fd);
        haproxy = spawn("haproxy", ["-db", "-f", cfg], {
          stdio: ["ignore", "ignore", "pipe", fds[0]!, fds[1]!],
        });
        haproxy.stderr!.resume();
        // This process must stop accepting on the sockets it handed over: otherwise the kernel may
        // give a client's connection to its (handler-less) server instead of HAProxy, and the client
        // waits for a greeting that never comes. HAProxy's copies of the descriptors stay open.
        for (const s of fronts) s.close();
        await new Promise((r) => setTimeout(r, 300)); // HAProxy takes the inherited sockets at once
        assert.equal(haproxy.exitCode, null, "haproxy is running");
      });
      after(async () => {
        haproxy?.kill("SIGTERM");
      });

      for (const [i, mode] of [
        [0, "STARTTLS"],
        [1, "implicit TLS"],
      ] as const) {
        it(`Nodemailer over ${mode} through HAProxy: Petrel sees the real client`, async () => {
          const transport = nodemailer.createTransport({
            host: "127.0.0.1",
            port: frontPorts[i]!,
            secure: i === 1,
            requireTLS: i === 0,
            localAddress: REAL_CLIENT,
            tls: { ca: readCa(petrel), servername: "localhost" },
          });
          const info = await transport.sendMail({
            from: "app@proxy.example",
            to: "user@example.com",
            subject: `through haproxy ${mode}`,
            text: "hello",
          });
          transport.close();
          const queueId = /queued as (\S+)/.exec(info.response)![1]!;
          const stored = await storedContent(dataDir, queueId);
          assert.match(stored, /\[127\.0\.0\.58\]/, "Received names the client, not the balancer");
          assert.doesNotMatch(stored.slice(0, stored.indexOf("\r\n\r\n")), /127\.0\.0\.7\b/);
          const find = () => petrel.logRecords().find((r) => r.msg === "queued" && r.queueId === queueId);
          const deadline = Date.now() + 5000;
          while (!find() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
          assert.equal(find()?.ip, REAL_CLIENT);
        });
      }
    });
  });

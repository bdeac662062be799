/**
 * Issue 13, Why 5: outbound SMTP smuggling through Petrel. Every end-of-data variant of The-Login's
 * smtp_smuggling_scanner.py (its `outbound_eod_sequences`, sent the way the scanner sends them:
 * raw, without dot-stuffing or line-end repair) goes through a real `petrel serve` submission
 * listener with STARTTLS and `apikey` AUTH, is delivered to a raw-socket MX of this test's own
 * (smtp-server would normalise what it receives), and the bytes that MX received between 354 and
 * the end mark are checked: no NUL, no bare CR or LF, no end mark but the last, the text after
 * the injected sequence still inside the same message. `<CR><LF><NUL>.<CR><LF>` (the one that
 * used to pass unchanged) gets 550 5.6.0; with smtp.limits.nulBytes "remove" it is delivered
 * without the NUL, its dot line stuffed.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import type { TestDnsServer } from "./support/dns-server.js";
import { startZone } from "./support/events-rig.js";
import {
  type PetrelProcess,
  petrelOk,
  readCa,
  removeDataDir,
  startPetrel,
  tempDataDir,
} from "./support/petrel-process.js";
import { RawSmtpSession } from "./support/raw-smtp.js";

const MX_ADDRESS = "127.0.0.2";

/** outbound_eod_sequences of smtp_smuggling_scanner.py (The-Login/SMTP-Smuggling-Tools). */
const SEQUENCES = [
  "\n.\n",
  "\n.\r",
  "\r.\n",
  "\r.\r",
  "\n.\r\n",
  "\r.\r\n",
  "\r\n.\r\r\n",
  "\r\r\n.\r\r\n",
  "\r\n\x00.\r\n",
] as const;
const NUL_SEQUENCE = SEQUENCES.length - 1;

/** The scanner's message: template lines CRLF-terminated, the sequence inserted raw. */
function scannerMessage(index: number): Buffer {
  const head = [
    "From: app@smuggle.example",
    "To: rcpt@example.com",
    `Subject: Trying EOD (${index})`,
    "",
    `TESTING ${index} as "fake" end-of-data sequence!`,
    "SMUGGLINGSTART",
    "",
  ].join("\r\n");
  return Buffer.from(`${head}${SEQUENCES[index]}\r\nSMUGGLINGEND\r\n.\r\n`, "latin1");
}

interface RawMx {
  readonly port: number;
  /** What each transaction sent after 354, up to and including its end mark. */
  readonly received: Buffer[];
  close(): Promise<void>;
}

/** A minimal receiving MX over a raw socket: no STARTTLS, no PIPELINING; keeps the DATA bytes. */
async function startRawMx(): Promise<RawMx> {
  const received: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer = Buffer.alloc(0);
    let inData = false;
    const reply = (line: string) => socket.write(`${line}\r\n`);
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (inData) {
          // Only <CR><LF>.<CR><LF> ends DATA here, as RFC 5321 §4.1.1.4 says.
          const end = Buffer.concat([Buffer.from("\r\n"), buffer]).indexOf("\r\n.\r\n");
          if (end === -1) return;
          received.push(buffer.subarray(0, end + 3));
          buffer = buffer.subarray(end + 3);
          inData = false;
          reply("250 2.0.0 Ok");
          continue;
        }
        const lf = buffer.indexOf("\n");
        if (lf === -1) return;
        const line = buffer.subarray(0, lf).toString("latin1").replace(/\r$/, "");
        buffer = buffer.subarray(lf + 1);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO") reply("250-mx.example.com\r\n250-8BITMIME\r\n250 SMTPUTF8");
        else if (verb === "HELO" || verb === "MAIL" || verb === "RCPT" || verb === "RSET" || verb === "NOOP")
          reply("250 2.0.0 Ok");
        else if (verb === "DATA") {
          inData = true;
          reply("354 End data with <CR><LF>.<CR><LF>");
        } else if (verb === "QUIT") {
          reply("221 2.0.0 Bye");
          socket.end();
        } else reply("502 5.5.1 Not implemented");
      }
    });
    reply("220 mx.example.com ESMTP raw test MX");
  });
  await new Promise<void>((resolve) => server.listen(0, MX_ADDRESS, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Every way a receiver could read an end of DATA or lose a byte, checked on what the MX got. */
function assertClean(data: Buffer, label: string): void {
  const text = data.toString("latin1");
  assert.equal(text.indexOf("\0"), -1, `${label}: a NUL reached the MX`);
  assert.doesNotMatch(text, /\r(?!\n)|(?<!\r)\n/, `${label}: a bare CR or LF reached the MX`);
  assert.ok(text.endsWith("\r\n.\r\n"), `${label}: ends with the end mark`);
  const body = text.slice(0, -3);
  assert.equal(`\r\n${body}`.indexOf("\r\n.\r\n"), -1, `${label}: an end mark inside the message`);
  assert.match(text, /\r\nSMUGGLINGSTART\r\n/, label);
  assert.match(text, /\r\nSMUGGLINGEND\r\n\.\r\n$/, `${label}: the text after the sequence was cut off`);
}

async function waitFor(mx: RawMx, count: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (mx.received.length < count) {
    if (Date.now() > deadline) throw new Error(`the MX received ${mx.received.length} of ${count} messages`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function startSmugglingPetrel(
  dns: TestDnsServer,
  mx: RawMx,
  nulBytes: "reject" | "remove",
): Promise<{ petrel: PetrelProcess; key: string; dataDir: string }> {
  const dataDir = tempDataDir("petrel-smuggling-");
  await petrelOk(dataDir, ["senders", "add", "app@smuggle.example"]);
  const key = (await petrelOk(dataDir, ["keys", "create", "--name", "smuggling"])).trim();
  const petrel = await startPetrel(dataDir, {
    config: {
      smtp: { limits: { nulBytes } },
      delivery: { enabled: true, port: mx.port, pollIntervalMs: 20, retryJitter: 0, idleTimeoutMs: 200 },
      dns: { servers: [dns.server], timeoutMs: 1000, tries: 2 },
    },
  });
  return { petrel, key, dataDir };
}

async function submitRaw(petrel: PetrelProcess, key: string, message: Buffer) {
  const session = await RawSmtpSession.open({
    port: petrel.ports.submission!,
    starttls: true,
    ca: readCa(petrel),
    apiKey: key,
  });
  try {
    await session.command("MAIL FROM:<app@smuggle.example>", 250);
    await session.command("RCPT TO:<rcpt@example.com>", 250);
    await session.command("DATA", 354);
    const reply = await session.writeRaw(message);
    // The session must still be in step: nothing of the message was read as a command.
    const noop = await session.command("NOOP");
    return { reply, noop };
  } finally {
    await session.quit();
  }
}

describe("outbound SMTP smuggling (smtp_smuggling_scanner.py's end-of-data variants)", () => {
  let dns: TestDnsServer;
  let mx: RawMx;

  before(async () => {
    mx = await startRawMx();
    dns = await startZone(MX_ADDRESS);
  });

  after(async () => {
    await mx?.close();
    await dns?.close();
  });

  it("nulBytes reject: 8 variants delivered clean, <CR><LF><NUL>.<CR><LF> refused with 550 5.6.0", async () => {
    const { petrel, key, dataDir } = await startSmugglingPetrel(dns, mx, "reject");
    try {
      const before = mx.received.length;
      for (let i = 0; i < SEQUENCES.length; i++) {
        const { reply, noop } = await submitRaw(petrel, key, scannerMessage(i));
        const label = JSON.stringify(SEQUENCES[i]);
        if (i === NUL_SEQUENCE) {
          assert.equal(reply.code, 550, `${label}: ${reply.text}`);
          assert.match(reply.text, /^5\.6\.0 /);
        } else assert.equal(reply.code, 250, `${label}: ${reply.text}`);
        assert.equal(noop.code, 250, `${label}: the session is out of step`);
      }
      await waitFor(mx, before + SEQUENCES.length - 1);
      const got = mx.received.slice(before);
      const bySubject = new Map(
        got.map((d) => [/Subject: Trying EOD \((\d+)\)/.exec(d.toString("latin1"))?.[1], d]),
      );
      for (let i = 0; i < NUL_SEQUENCE; i++) {
        const data = bySubject.get(String(i));
        assert.ok(data, `variant ${i} was delivered`);
        assertClean(data, JSON.stringify(SEQUENCES[i]));
      }
      assert.equal(bySubject.has(String(NUL_SEQUENCE)), false, "the NUL variant was not delivered");
      // Nothing more arrives: each submission was one message, none split in two.
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(mx.received.length, before + SEQUENCES.length - 1);
    } finally {
      await petrel.stop();
      removeDataDir(dataDir);
    }
  });

  it("nulBytes remove: <CR><LF><NUL>.<CR><LF> is delivered without the NUL, its dot line stuffed", async () => {
    const { petrel, key, dataDir } = await startSmugglingPetrel(dns, mx, "remove");
    try {
      const before = mx.received.length;
      const { reply } = await submitRaw(petrel, key, scannerMessage(NUL_SEQUENCE));
      assert.equal(reply.code, 250, reply.text);
      await waitFor(mx, before + 1);
      const data = mx.received[before]!;
      assertClean(data, "NUL removed");
      assert.match(data.toString("latin1"), /\r\nSMUGGLINGSTART\r\n\r\n\.\.\r\n\r\nSMUGGLINGEND\r\n/);
    } finally {
      await petrel.stop();
      removeDataDir(dataDir);
    }
  });
});

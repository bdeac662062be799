/**
 * The second baseline of bench:seed: a bare Node.js server that answers the whole seed dialogue
 * with fixed replies (EHLO, STARTTLS with `new TLSSocket`, EHLO, AUTH, MAIL, RCPT, DATA read to
 * its final ".", QUIT) and does nothing else: no parsing beyond the verb, no hooks, no store. Its
 * CPU per session minus bare-starttls-server's is what the seven TLS-protected replies of the
 * dialogue cost Node.js here (each is an SSL_write and a loopback send); Petrel's CPU minus this is
 * Petrel's own work. Prints its port on stdout.
 *
 * With --plain (no certificate) it answers smtp-source's plaintext dialogue (HELO, MAIL, RCPT,
 * DATA, QUIT, and RSET between messages of one connection) the same way: bench:accept's Node.js
 * floor, what Node.js itself spends per message under loads (a) and (b).
 *
 * Usage: node dist/bench/bare-dialogue-server.js CERT.pem KEY.pem
 *        node dist/bench/bare-dialogue-server.js --plain
 */
import { readFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { createSecureContext, TLSSocket } from "node:tls";

const plain = process.argv[2] === "--plain";
const secureContext = plain
  ? undefined
  : createSecureContext({
      cert: readFileSync(process.argv[2]!),
      key: readFileSync(process.argv[3]!),
      minVersion: "TLSv1.2",
    });

/** Calls onLine per CRLF line; while onLine's last answer was "data", lines up to "." are skipped. */
function readLines(socket: Socket, onLine: (line: string) => "data" | undefined): void {
  let buffered = "";
  let inData = false;
  socket.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("latin1");
    for (let end = buffered.indexOf("\r\n"); end >= 0; end = buffered.indexOf("\r\n")) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (inData) {
        if (line === ".") {
          inData = false;
          onLine(".");
        }
      } else if (onLine(line) === "data") inData = true;
    }
  });
}

/** The dialogue after the greeting (plaintext) or after STARTTLS. */
function dialogue(socket: Socket): void {
  readLines(socket, (line) => {
    const verb = line.slice(0, 4).toUpperCase();
    if (line === ".") socket.write("250 2.0.0 queued\r\n");
    else if (verb === "EHLO") socket.write("250-bare\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n");
    else if (verb === "HELO") socket.write("250 bare\r\n");
    else if (verb === "AUTH") socket.write("235 2.7.0 ok\r\n");
    else if (verb === "MAIL" || verb === "RCPT" || verb === "RSET") socket.write("250 2.1.0 ok\r\n");
    else if (verb === "DATA") {
      socket.write("354 go ahead\r\n");
      return "data";
    } else if (verb === "QUIT") socket.end("221 2.0.0 bye\r\n");
    else socket.write("500 5.5.2 what\r\n");
    return undefined;
  });
}

const server = createServer((raw) => {
  raw.setNoDelay(true);
  raw.write("220 bare ESMTP\r\n");
  raw.on("error", () => raw.destroy());
  if (secureContext === undefined) {
    dialogue(raw);
    return;
  }
  let upgraded = false;
  readLines(raw, (line) => {
    if (upgraded) return undefined;
    const verb = line.slice(0, 4).toUpperCase();
    if (verb === "EHLO") raw.write("250-bare\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
    else if (verb === "STAR") {
      upgraded = true;
      raw.removeAllListeners("data");
      raw.write("220 2.0.0 go ahead\r\n");
      const secure = new TLSSocket(raw, { isServer: true, secureContext });
      secure.on("error", () => secure.destroy());
      dialogue(secure);
    } else raw.write("500 5.5.2 what\r\n");
    return undefined;
  });
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(typeof address === "object" && address ? address.port : 0);
});
// A clean exit on SIGTERM so --cpu-prof writes its profile.
process.on("SIGTERM", () => process.exit(0));

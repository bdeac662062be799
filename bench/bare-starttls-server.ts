/**
 * The baseline of bench:seed: a bare Node.js server that greets, upgrades the plain socket with
 * `new TLSSocket` on STARTTLS and answers one line (QUIT → 221). What one TLS session costs in
 * Node.js on this machine with no SMTP logic at all; Petrel's per-session CPU is measured against it
 * in the same run. Run as a child process (its CPU is read from /proc): prints its port on stdout.
 *
 * Usage: node dist/bench/bare-starttls-server.js CERT.pem KEY.pem
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { createSecureContext, TLSSocket } from "node:tls";

const secureContext = createSecureContext({
  cert: readFileSync(process.argv[2]!),
  key: readFileSync(process.argv[3]!),
  minVersion: "TLSv1.2",
});
const server = createServer((raw) => {
  raw.setNoDelay(true);
  raw.write("220 bare ESMTP\r\n");
  raw.once("data", () => {
    // The client's first line is STARTTLS (bench/starttls-source.c -b).
    raw.write("220 2.0.0 go ahead\r\n");
    const secure = new TLSSocket(raw, { isServer: true, secureContext });
    secure.once("data", () => secure.end("221 2.0.0 bye\r\n"));
    secure.on("error", () => secure.destroy());
  });
  raw.on("error", () => raw.destroy());
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(typeof address === "object" && address ? address.port : 0);
});
// A clean exit on SIGTERM so --cpu-prof writes its profile.
process.on("SIGTERM", () => process.exit(0));

/**
 * Sanity check with a real client: Nodemailer sends through STARTTLS (587 style) and through
 * implicit TLS (465 style) to the SmtpServer with the test hooks, verifying our certificate.
 */

import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import nodemailer from "nodemailer";
import { type Fixture, startFixture } from "./smtp-fixture.js";

let fx: Fixture;
before(async () => {
  fx = await startFixture();
});
after(() => fx.server.close(1000));

for (const mode of ["starttls", "implicit"] as const) {
  it(`delivers a message from Nodemailer over ${mode} TLS with AUTH`, async () => {
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: mode === "implicit" ? fx.tlsPort : fx.port,
      secure: mode === "implicit",
      requireTLS: true,
      tls: { ca: fx.cert, servername: "localhost" },
      auth: { user: `nm-${mode}`, pass: "secret" },
    });
    try {
      const info = await transport.sendMail({
        from: "sender@example.com",
        to: ["one@example.com", "two@example.org"],
        subject: `hello over ${mode}`,
        text: "first line\n.leading dot\nlast line\n",
      });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as \d+$/);
      const msg = fx.rec.messages.find((m) => m.user?.name === `nm-${mode}`)!;
      assert.deepEqual(msg.envelope.rcptTo, ["one@example.com", "two@example.org"]);
      assert.equal(msg.envelope.mailFrom, "sender@example.com");
      assert.match(msg.content, new RegExp(`^Subject: hello over ${mode}\\r$`, "m"));
      assert.match(msg.content, /\r\n\.leading dot\r\n/);
    } finally {
      transport.close();
    }
  });
}

/**
 * Issue 8 item 5: PostgreSQL unreachable during load, with two `petrel serve` nodes reaching it
 * through a TCP proxy the test cuts (test/support/tcp-proxy.ts; the machine's PostgreSQL itself
 * is never stopped: other tests use it). While it is cut:
 *  - /readyz answers 503 with the reason on both nodes;
 *  - a new SMTP session gets `421 4.3.0` at connect, and no submission gets 250 for mail the
 *    store did not commit (every 250, before, during and after, is later found in the store and
 *    delivered);
 * and once the proxy lets connections through again the nodes take mail again by themselves.
 * Load: 4 clients submitting one message per connection, alternating between the nodes.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CLIENT_ADDRESS, type Cluster, startCluster, waitFor } from "./support/cluster.js";
import { RawSmtpSession } from "./support/raw-smtp.js";

interface Attempt {
  readonly node: number;
  readonly code: number;
  readonly text: string;
  readonly subject: string;
  readonly queueId: string | undefined;
  readonly at: number;
}

describe("cluster: PostgreSQL outage under load", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ nodes: 2, pgProxy: true });
    const added = await cluster.cli(["senders", "add", "app@sender.test"]);
    assert.equal(added.code, 0, added.stderr);
  });
  after(async () => {
    await cluster?.close();
  });

  const readyz = async (node: number): Promise<{ status: number; body: string }> => {
    try {
      const res = await fetch(cluster.nodes[node]!.http("/readyz"), { signal: AbortSignal.timeout(5000) });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      return { status: 0, body: String(err) };
    }
  };

  it("refuses with 4xx while the store is cut off, never 250 for uncommitted mail, and recovers", async () => {
    const attempts: Attempt[] = [];
    let running = true;
    let n = 0;
    const client = async (c: number) => {
      while (running) {
        const node = (c + n) % 2;
        const subject = `outage ${++n}`;
        const target = cluster.nodes[node]!;
        let reply: { code: number; text: string; queueId: string | undefined };
        try {
          const session = await RawSmtpSession.open({
            host: target.address,
            port: target.submissionPort,
            localAddress: CLIENT_ADDRESS,
          });
          try {
            // Command by command, so that a refusal at MAIL or RCPT (a sender or suppression
            // lookup failing in the outage) is seen with its own code.
            const content = `From: app@sender.test\r\nSubject: ${subject}\r\n\r\nhello\r\n.\r\n`;
            const steps = [
              () => session.command("MAIL FROM:<app@sender.test>"),
              () => session.command(`RCPT TO:<${subject.replace(" ", "-")}@cluster.test>`),
              () => session.command("DATA"),
              () => session.writeRaw(Buffer.from(content)),
            ];
            let r = { code: 0, text: "" };
            for (const [k, step] of steps.entries()) {
              r = await step();
              if (r.code !== (k === 2 ? 354 : 250)) break;
            }
            reply = { ...r, queueId: r.code === 250 ? /queued as (\S+)/.exec(r.text)?.[1] : undefined };
          } finally {
            await session.quit();
          }
        } catch (err) {
          const m = /expected \d{3}, got (\d{3}) (.*)/s.exec((err as Error).message);
          reply = m
            ? { code: Number(m[1]), text: m[2]!, queueId: undefined }
            : { code: 0, text: (err as Error).message, queueId: undefined };
        }
        attempts.push({ node, subject, ...reply, at: Date.now() });
        if (reply.code !== 250) await new Promise((r) => setTimeout(r, 50)); // a client's retry pause
      }
    };
    const clients = [0, 1, 2, 3].map(client);
    try {
      await waitFor(() => attempts.filter((a) => a.code === 250).length >= 40, {
        what: "40 messages accepted before the outage",
        timeoutMs: 30_000,
      });
      cluster.pg!.cut();
      const cutAt = Date.now();
      for (const i of [0, 1]) {
        let last = { status: 0, body: "" };
        const r = await waitFor(
          async () => {
            last = await readyz(i);
            return last.status === 503 && last;
          },
          { what: `node ${i + 1} readyz 503`, timeoutMs: 15_000, describe: () => JSON.stringify(last) },
        );
        assert.match(r.body, /the store (is unreachable|does not answer)/);
      }
      // A new session during the outage: 421 4.3.0 instead of the greeting (once the node's
      // heartbeat or a failed commit noticed; /readyz may have seen it first with its own query).
      let refused = "";
      await waitFor(
        async () => {
          refused = await RawSmtpSession.open({
            host: cluster.nodes[0]!.address,
            port: cluster.nodes[0]!.submissionPort,
            localAddress: CLIENT_ADDRESS,
          }).then(
            (s) => {
              s.destroy();
              return "greeted";
            },
            (err: Error) => err.message,
          );
          return refused !== "greeted";
        },
        { what: "a session refused at connect", timeoutMs: 15_000, describe: () => refused },
      );
      assert.match(refused, /expected 220, got 421 4\.3\.0 /);
      // Let the clients run into the outage for a while (their refusals are counted below).
      await waitFor(() => attempts.filter((a) => a.at > cutAt && a.code >= 400).length >= 20, {
        what: "20 refusals during the outage",
        timeoutMs: 20_000,
      });
      cluster.pg!.restore();
      const restoredAt = Date.now();
      for (const i of [0, 1]) {
        await waitFor(async () => (await readyz(i)).status === 200, {
          what: `node ${i + 1} ready again`,
          timeoutMs: 20_000,
        });
      }
      await waitFor(
        () => [0, 1].every((i) => attempts.some((a) => a.node === i && a.at > restoredAt && a.code === 250)),
        { what: "both nodes accepting again", timeoutMs: 20_000 },
      );
      running = false;
      await Promise.all(clients);

      const during = attempts.filter((a) => a.at > cutAt && a.at < restoredAt);
      const codes = new Set(attempts.map((a) => a.code));
      for (const code of codes) assert.ok(code === 250 || (code >= 400 && code < 500), `reply ${code}`);
      assert.ok(during.filter((a) => a.code === 421).length > 0, "421 at connect during the outage");
      // Every 250 — including any whose commit finished just as the cut came — is in the store
      // and reaches the MX exactly as submitted; nothing acknowledged is lost.
      const acked = attempts.filter((a) => a.code === 250);
      const store = await cluster.store();
      for (const a of acked)
        assert.ok(await store.getMessage(a.queueId!), `${a.subject} (${a.queueId}) committed`);
      await waitFor(
        () => {
          const got = new Set(
            cluster.mx.messages.map((m) => /Subject: (outage \d+)/.exec(m.content.toString())?.[1]),
          );
          return acked.every((a) => got.has(a.subject));
        },
        { what: `all ${acked.length} acknowledged messages delivered`, timeoutMs: 60_000 },
      );
      // A poll every 50 ms fails all through the outage: the dispatcher logs the first failure,
      // then at most one line per 10 s (each with its count), not one line per poll.
      const outageMs = restoredAt - cutAt;
      for (const node of cluster.nodes) {
        const lines = node.petrel.logs.filter((l) => l.includes("could not read webhooks")).length;
        assert.ok(
          lines <= 2 + Math.floor(outageMs / 10_000),
          `node ${node.index + 1}: ${lines} "could not read webhooks" lines over a ${outageMs} ms outage`,
        );
      }
      process.stdout.write(
        `# outage: ${acked.length} accepted, ${during.length} attempts during the outage (` +
          `${during.filter((a) => a.code === 421).length} × 421 at connect, ` +
          `${during.filter((a) => a.code === 451).length} × 451 at DATA, ` +
          `${during.filter((a) => a.code === 250).length} × 250 committed as the cut came)\n`,
      );
    } catch (err) {
      for (const node of cluster.nodes)
        if (!node.alive)
          process.stdout.write(`# node ${node.index + 1} died:\n${node.petrel.logs.slice(-5).join("\n")}\n`);
      throw err;
    } finally {
      running = false;
      cluster.pg!.restore();
      await Promise.all(clients);
    }
  });
});

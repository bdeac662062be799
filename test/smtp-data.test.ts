/**
 * DATA handling: the DataReader against a plain reference model at every chunk split, and over
 * real sockets: dot-unstuffing, bare CR/LF normalisation, every SMTP smuggling payload, the end
 * mark split across TCP segments, size and line limits, pipelining, and a throughput figure.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ownsBuffer } from "../src/message/headroom.js";
import { DataReader } from "../src/smtp/data-reader.js";
import { READ_BYTES_PER_COLLECTION, readChunkCollections } from "../src/smtp/read-chunks.js";
import { type Fixture, startFixture } from "./smtp-fixture.js";
import { type DialogueStep, runDialogue, SmtpTestClient } from "./support/dialogue.js";

/** Straightforward model of the rules in data-reader.ts, over a whole string. */
function reference(stream: string): { content: string; end: number } | null {
  const prefixed = `\r\n${stream}`;
  const at = prefixed.indexOf("\r\n.\r\n");
  if (at === -1) return null;
  const region = prefixed.slice(2, at + 2); // content lines, each ending in CRLF
  const lines = region.split("\r\n");
  const out = lines.map((line) => {
    const unstuffed = line.startsWith(".") && line[1] !== "\r" && line[1] !== "\n" ? line.slice(1) : line;
    return unstuffed.replace(/\r|\n/g, "\r\n");
  });
  return { content: out.join("\r\n"), end: at + 3 };
}

function feedChunks(chunks: Buffer[], maxSize = 1e9, maxLine = 0) {
  const reader = new DataReader(maxSize, maxLine);
  let consumed = 0;
  for (const chunk of chunks) {
    const end = reader.feed(chunk, 0);
    if (end !== -1) return { reader, content: reader.content().toString("latin1"), end: consumed + end };
    consumed += chunk.length;
  }
  return null;
}

function splitAt(s: string, ...cuts: number[]): Buffer[] {
  const b = Buffer.from(s, "latin1");
  const points = [0, ...cuts, b.length];
  return points.slice(1).map((p, i) => b.subarray(points[i], p));
}

describe("DataReader", () => {
  const sample = "a\r\n..b\r\nbare\nlf\rcr\r\n.\r\r\n\r\n.\nx\r\n.\r\nNEXT\r\n";
  const expected = "a\r\n.b\r\nbare\r\nlf\r\ncr\r\n.\r\n\r\n\r\n.\r\nx\r\n";

  it("matches the reference model on a sample with every special case", () => {
    assert.deepEqual(reference(sample), { content: expected, end: sample.indexOf("NEXT") });
    const r = feedChunks([Buffer.from(sample, "latin1")])!;
    assert.equal(r.content, expected);
    assert.equal(r.end, sample.indexOf("NEXT"));
  });

  it("gives the same result for a split at every byte position, and for 1-byte chunks", () => {
    for (let i = 0; i <= sample.length; i++) {
      const r = feedChunks(splitAt(sample, i))!;
      assert.equal(r.content, expected, `split at ${i}`);
      assert.equal(r.end, sample.indexOf("NEXT"), `split at ${i}`);
      for (let j = i; j <= sample.length; j += 3) {
        assert.equal(feedChunks(splitAt(sample, i, j))!.content, expected, `split at ${i},${j}`);
      }
    }
    const bytes = [...Buffer.from(sample, "latin1")].map((b) => Buffer.from([b]));
    assert.equal(feedChunks(bytes)!.content, expected);
  });

  it("agrees with the reference on random streams of dots, CRs and LFs", () => {
    const atoms = ["a", ".", "\r", "\n", "\r\n", "\r\n.", "..", "\r\n.\r\n"];
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let n = 0; n < 3000; n++) {
      let s = "";
      const len = rand(20);
      for (let k = 0; k < len; k++) s += atoms[rand(atoms.length - (k < len - 1 ? 1 : 0))];
      s += "\r\n.\r\n";
      const want = reference(s)!;
      const cut = rand(s.length + 1);
      const got = feedChunks(splitAt(s, cut))!;
      assert.equal(got.content, want.content, JSON.stringify(s));
      assert.equal(got.end, want.end, JSON.stringify(s));
    }
  });

  it("counts raw size and flags size and line limits but still finds the end", () => {
    const ok = feedChunks([Buffer.from("12345\r\n.\r\n")], 7, 5)!;
    assert.equal(ok.reader.size, 7);
    assert.equal(ok.reader.tooBig, false);
    assert.equal(ok.reader.lineTooLong, false);
    const big = feedChunks([Buffer.from("12345\r\n"), Buffer.from("6\r\n.\r\n")], 7, 0)!;
    assert.equal(big.reader.tooBig, true);
    assert.equal(big.content, "");
    const long = feedChunks(splitAt("123\r\n123456\r\n.\r\n", 8), 100, 5)!;
    assert.equal(long.reader.lineTooLong, true);
  });

  it("holds a large content in one buffer with headroom, the same bytes at every chunking", () => {
    // Lines of every kind past HEADROOM_MIN_BYTES (64 KiB): long runs, short ones, stuffed dots.
    let body = "";
    for (let i = 0; body.length < 300_000; i++)
      body += i % 7 === 0 ? `..${i}\r\n` : `${"x".repeat(i % 900)}\r\n`;
    const stream = `${body}.\r\n`;
    const want = reference(stream)!.content;
    for (const size of [1, 97, 4096, 65_536, stream.length]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; at += size)
        chunks.push(Buffer.from(stream.slice(at, at + size), "latin1"));
      const reader = new DataReader(1e9, 0);
      let end = -1;
      for (const c of chunks) {
        end = reader.feed(c, 0);
        if (end !== -1) break;
      }
      assert.ok(end !== -1);
      assert.equal(reader.contentCopies, false, "no join at the end");
      const content = reader.content();
      assert.ok(ownsBuffer(content), "one buffer, with room in front");
      assert.equal(content.toString("latin1"), want, `chunks of ${size}`);
    }
    // Bare LFs written as CRLF outgrow the reservation made for maxSize: moved once, same bytes.
    const lfs = `${"\n".repeat(200_000)}\r\n.\r\n`;
    const reader = new DataReader(250_000, 0);
    assert.notEqual(reader.feed(Buffer.from(lfs, "latin1"), 0), -1);
    const content = reader.content();
    assert.equal(content.length, 400_002);
    assert.equal(content.toString("latin1"), reference(lfs)!.content);
    assert.ok(ownsBuffer(content));
  });
});

let fx: Fixture;
let small: Fixture;
before(async () => {
  fx = await startFixture({ trustedIps: ["127.0.0.3"] });
  small = await startFixture({
    trustedIps: ["127.0.0.3"],
    limits: { maxMessageSize: 2000, maxLineLength: 100 },
  });
});
after(() => Promise.all([fx.server.close(1000), small.server.close(1000)]));

/** A trusted-network session (127.0.0.3): no TLS/AUTH needed to send. */
function trusted(steps: DialogueStep[], f: Fixture = fx) {
  return runDialogue(f.port, [["C", "EHLO c"], ["S", /^250 /m], ...steps], { localAddress: "127.0.0.3" });
}

const TXN: DialogueStep[] = [
  ["C", "MAIL FROM:<a@example.com>"],
  ["S", "250 2.1.0 Ok"],
  ["C", "RCPT TO:<b@example.com>"],
  ["S", "250 2.1.5 Ok"],
  ["C", "DATA"],
  ["S", "354 End data with <CR><LF>.<CR><LF>"],
];

describe("DATA over a socket", () => {
  it("unstuffs dots and turns bare LF and bare CR into CRLF", async () => {
    await trusted([
      ...TXN,
      ["RAW", "Subject: dots\r\n\r\n..leading\r\n...\r\n..\r\nbare\nLF\rCR\r\n.\r\n"],
      ["S", /^250 2\.0\.0 Ok: queued as \d+$/],
    ]);
    assert.equal(
      fx.rec.messages.at(-1)!.content,
      "Subject: dots\r\n\r\n.leading\r\n..\r\n.\r\nbare\r\nLF\r\nCR\r\n",
    );
  });

  it("accepts an empty message ('.' as the first line)", async () => {
    await trusted([...TXN, ["RAW", ".\r\n"], ["S", /^250 /]]);
    assert.equal(fx.rec.messages.at(-1)!.content, "");
  });

  const payloads: [string, string][] = [
    ["<LF>.<LF>", "\n.\n"],
    ["<LF>.<CR><LF>", "\n.\r\n"],
    ["<CR><LF>.<LF>", "\r\n.\n"],
    ["<CR>.<CR>", "\r.\r"],
    ["<CR><LF>.<CR>", "\r\n.\r"],
    ["<LF>.<CR>", "\n.\r"],
  ];
  for (const [name, payload] of payloads) {
    it(`does not end DATA at ${name} (SMTP smuggling)`, async () => {
      const before = fx.rec.messages.length;
      const smuggled =
        "MAIL FROM:<smuggled@evil.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n";
      await trusted([
        ...TXN,
        ["RAW", `Subject: outer\r\n\r\nhello${payload}${smuggled}`],
        ["S", /^250 2\.0\.0 Ok: queued as \d+$/],
        // Had the smuggled commands run, their replies would come before this one.
        ["C", "NOOP"],
        ["S", "250 2.0.0 Ok"],
      ]);
      assert.equal(fx.rec.messages.length, before + 1);
      const content = fx.rec.messages.at(-1)!.content;
      assert.ok(
        content.includes("hello\r\n.\r\nMAIL FROM:<smuggled@evil.example>\r\n"),
        JSON.stringify(content),
      );
      assert.ok(!/[^\r]\n|\r[^\n]/.test(content), "bare CR or LF passed on");
    });
  }

  it("finds the end mark split across TCP segments at every byte position", async () => {
    const body = "line one\r\n..dotted\r\nend\r\n.\r\nNOOP\r\n";
    const from = body.indexOf("end") + 2;
    const steps: DialogueStep[] = [];
    for (let k = from; k < body.length; k++) {
      steps.push(
        ...TXN,
        ["RAW", body.slice(0, k)],
        ["WAIT", 10],
        ["RAW", body.slice(k)],
        ["S", /^250 2\.0\.0 Ok: queued as \d+$/],
        ["S", "250 2.0.0 Ok"],
      );
    }
    const before = fx.rec.messages.length;
    await trusted(steps);
    const got = fx.rec.messages.slice(before).map((m) => m.content);
    assert.equal(got.length, body.length - from);
    for (const c of got) assert.equal(c, "line one\r\n.dotted\r\nend\r\n");
  });

  it("reads an oversized message to its end, then answers 552", async () => {
    const before = small.rec.messages.length;
    await trusted(
      [
        ...TXN,
        ["RAW", `${"x".repeat(80)}\r\n`.repeat(40)],
        ["RAW", ".\r\n"],
        ["S", "552 5.3.4 Message size exceeds fixed maximum message size"],
        ["C", "NOOP"],
        ["S", "250 2.0.0 Ok"],
        ["C", "MAIL FROM:<a@example.com> SIZE=2001"],
        ["S", "552 5.3.4 Message size exceeds fixed maximum message size"],
      ],
      small,
    );
    assert.equal(small.rec.messages.length, before);
  });

  it("collects the young generation as a large DATA is read, so read chunks do not pile up", async () => {
    // Each socket read is a fresh buffer; read-chunks.ts has V8 collect them every 8 MiB read.
    // Read to its end and refused (552) here, so the count is of bytes read, not kept.
    const before = readChunkCollections();
    const line = `${"x".repeat(80)}\r\n`;
    const lines = Math.ceil((2.5 * READ_BYTES_PER_COLLECTION) / line.length);
    await trusted([...TXN, ["RAW", line.repeat(lines)], ["RAW", ".\r\n"], ["S", /^552 5\.3\.4 /]], small);
    const made = readChunkCollections() - before;
    assert.ok(made >= 2 && made <= 3, `collections during 2.5 × 8 MiB of DATA: ${made}`);
  });

  it("reads a message with an overlong line to its end, then answers 550", async () => {
    const before = small.rec.messages.length;
    await trusted(
      [
        ...TXN,
        ["RAW", `${"y".repeat(100)}\r\n.\r\n`],
        ["S", /^250 /],
        ...TXN,
        ["RAW", `ok\r\n${"y".repeat(101)}\r\nmore\r\n.\r\n`],
        ["S", "550 5.6.0 Message contains a line longer than 100 characters"],
      ],
      small,
    );
    assert.equal(small.rec.messages.length, before + 1);
  });
});

describe("PIPELINING", () => {
  it("processes pipelined transactions in order, including input after the end mark", async () => {
    const before = fx.rec.messages.length;
    const group =
      "MAIL FROM:<p1@example.com>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<reject@example.com>\r\nDATA\r\n" +
      "one\r\n.\r\n" +
      "MAIL FROM:<p2@example.com>\r\nRCPT TO:<y@example.com>\r\nDATA\r\ntwo\r\n.\r\n" +
      "MAIL FROM:<p3@example.com>\r\nRCPT TO:<reject@example.com>\r\nDATA\r\nRSET\r\nQUIT\r\n";
    await trusted([
      ["RAW", group],
      ["S", "250 2.1.0 Ok"],
      ["S", "250 2.1.5 Ok"],
      ["S", "550 5.1.1 No such user"],
      ["S", "354 End data with <CR><LF>.<CR><LF>"],
      ["S", /^250 2\.0\.0 Ok: queued/],
      ["S", "250 2.1.0 Ok"],
      ["S", "250 2.1.5 Ok"],
      ["S", "354 End data with <CR><LF>.<CR><LF>"],
      ["S", /^250 2\.0\.0 Ok: queued/],
      ["S", "250 2.1.0 Ok"],
      ["S", "550 5.1.1 No such user"],
      ["S", "554 5.5.1 No valid recipients"],
      ["S", "250 2.0.0 Ok"],
      ["S", "221 2.0.0 Bye"],
      ["CLOSED"],
    ]);
    const got = fx.rec.messages.slice(before);
    assert.deepEqual(
      got.map((m) => [m.envelope.mailFrom, m.envelope.rcptTo, m.content]),
      [
        ["p1@example.com", ["x@example.com"], "one\r\n"],
        ["p2@example.com", ["y@example.com"], "two\r\n"],
      ],
    );
  });

  it("runs 2,000 transactions on one connection (throughput figure)", async (t) => {
    const client = await SmtpTestClient.connect(fx.port, { localAddress: "127.0.0.3" });
    await client.expect(/^220 /);
    client.send("EHLO bench");
    await client.expect(/^250 /m);
    const body = `Subject: bench\r\n\r\n${"0123456789abcdef".repeat(60)}\r\n.\r\n`;
    const n = 2000;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      // RFC 2920 client behaviour: MAIL+RCPT+DATA in one write, then the body after the 354.
      client.sendRaw("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
      await client.readReply();
      await client.readReply();
      const r = await client.readReply();
      if (r.code !== 354) client.fail(`unexpected ${r.text}`);
      client.sendRaw(body);
      if ((await client.readReply()).code !== 250) client.fail("not accepted");
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    client.transcript.length = 0;
    await client.close();
    t.diagnostic(
      `${n} pipelined transactions in ${ms.toFixed(0)} ms: ${Math.round((n / ms) * 1000)} msg/s; ` +
        `client+server CPU ${((cpu.user + cpu.system) / 1000 / n).toFixed(3)} ms/msg`,
    );
  });
});

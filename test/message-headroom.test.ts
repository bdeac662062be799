/**
 * message/headroom.ts (issue 13 item 3): header fields prepended into the room in front of a
 * received message instead of a copy of it, the same bytes either way, and the memory of a
 * committed content given back at once.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  freeContent,
  GrowingContent,
  HEADROOM,
  ownsBuffer,
  prepend,
  withHeadroom,
} from "../src/message/headroom.js";

describe("message headroom", () => {
  it("prepends in place while there is room, and copies otherwise, with the same bytes", () => {
    const content = withHeadroom(100_000).fill(0x61);
    assert.ok(ownsBuffer(content));
    const a = prepend([Buffer.from("Received: x"), Buffer.from("\r\n")], content);
    assert.equal(a.buffer, content.buffer, "no copy");
    assert.equal(a.toString("latin1", 0, 13), "Received: x\r\n");
    assert.equal(a.length, 13 + 100_000);
    assert.ok(ownsBuffer(a) && !ownsBuffer(content), "the new view is the head");
    assert.equal(content.toString("latin1", 0, 3), "aaa", "the older view is unchanged");
    // Prepending to an older view again must not overwrite the bytes the newer one shows.
    const again = prepend([Buffer.from("X: 1\r\n")], content);
    assert.notEqual(again.buffer, content.buffer);
    assert.equal(again.toString("latin1", 0, 9), "X: 1\r\naaa");
    assert.equal(a.toString("latin1", 0, 13), "Received: x\r\n");
    // Room used up: a copy.
    const big = prepend([Buffer.alloc(HEADROOM, 0x62)], a);
    assert.notEqual(big.buffer, a.buffer);
    assert.equal(big.length, HEADROOM + a.length);
    // A buffer from elsewhere: a copy.
    const plain = Buffer.from("body");
    assert.equal(prepend([Buffer.from("H: v\r\n")], plain).toString(), "H: v\r\nbody");
    assert.ok(!ownsBuffer(plain));
  });

  it("gives the memory of a committed content back at once, and leaves other buffers alone", () => {
    const content = withHeadroom(1 << 20);
    const signed = prepend([Buffer.from("DKIM-Signature: v=1\r\n")], content);
    freeContent(signed);
    assert.equal(signed.length, 0);
    assert.equal((signed.buffer as ArrayBuffer).byteLength, 0);
    const plain = Buffer.from("kept");
    freeContent(plain);
    assert.equal(plain.toString(), "kept");
  });

  it("keeps every byte while growing by doubling, then by steps, and past its reservation", () => {
    // 20 MiB into a 64 MiB reservation: doubling to 8 MiB, then 8 MiB steps; and the same bytes
    // into a 1 MiB reservation, which moves to a larger buffer once.
    const chunk = Buffer.alloc(65_536 + 7);
    for (const expectedMax of [64 * 1024 * 1024, 1024 * 1024]) {
      const growing = new GrowingContent(expectedMax);
      let n = 0;
      while (n < 20 * 1024 * 1024) {
        for (let i = 0; i < chunk.length; i++) chunk[i] = (n + i) & 0xff;
        growing.append(chunk, 3, chunk.length);
        n += chunk.length - 3;
      }
      const content = growing.finish();
      assert.equal(content.length, n);
      // Shrunk to the content: nothing committed beyond it stays with the message.
      assert.equal(content.buffer.byteLength, HEADROOM + n);
      let bad = -1;
      for (let at = 0, k = 0; at < n; k++) {
        const run = chunk.length - 3;
        for (let i = 0; i < run; i++) {
          if (content[at + i] !== ((k * run + i + 3) & 0xff)) {
            bad = at + i;
            break;
          }
        }
        if (bad >= 0) break;
        at += run;
      }
      assert.equal(bad, -1, `byte ${bad} differs (expectedMax ${expectedMax})`);
    }
  });
});

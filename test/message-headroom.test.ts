/**
 * message/headroom.ts (issue 13 item 3): header fields prepended into the room in front of a
 * received message instead of a copy of it, the same bytes either way, and the memory of a
 * committed content given back at once.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { freeContent, HEADROOM, ownsBuffer, prepend, withHeadroom } from "../src/message/headroom.js";

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
});

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { describe, it } from "node:test";
import { withHeadroom } from "../src/message/headroom.js";
import { CONTENT_PART_BYTES } from "../src/store/sqlite/messages.js";
import { openSqliteStore } from "../src/store/sqlite/sqlite-store.js";
import type { NewMessage } from "../src/store/types.js";
import { tempDataDir } from "./support/petrel-process.js";
import { storeConformance } from "./support/store-conformance.js";

storeConformance("sqlite", async () =>
  openSqliteStore({ file: join(tempDataDir("petrel-store-"), "petrel.db") }),
);

// The same behaviours when spool batches are committed on the enqueue thread, as in `petrel serve`.
storeConformance("sqlite, enqueue thread", async () =>
  openSqliteStore({ file: join(tempDataDir("petrel-store-"), "petrel.db"), enqueueThread: true }),
);

describe("sqlite enqueue thread: large contents move, not copy", () => {
  it("stores a large content byte for byte and hands its memory to the commit thread", async () => {
    const store = openSqliteStore({
      file: join(tempDataDir("petrel-store-"), "petrel.db"),
      enqueueThread: true,
    });
    try {
      const account = (await store.getAccount("default"))!;
      const original = randomBytes(1024 * 1024);
      const large = Buffer.concat([original]); // owns its ArrayBuffer, as Buffer.concat's results do
      const small = Buffer.from("Subject: small\r\n\r\nhi\r\n"); // in Node's shared pool: cloned
      // A received message (a view after its headroom) whose last part is short, and one of one part.
      const oddBytes = randomBytes(3 * CONTENT_PART_BYTES + 7);
      const odd = withHeadroom(oddBytes.length);
      oddBytes.copy(odd);
      const onePart = randomBytes(CONTENT_PART_BYTES);
      const message = (id: string, content: Buffer): NewMessage => ({
        id,
        accountId: account.id,
        apiKeyId: null,
        mailFrom: "a@your-app.com",
        recipients: ["r@example.com"],
        content,
        clientIp: "127.0.0.1",
        receivedAt: 1000,
        expiresAt: 9000,
      });
      // The same large Buffer twice in one batch: its memory is transferred once, both rows get it.
      await store.enqueueMessages([
        message("01BIG1", large),
        message("01BIG2", large),
        message("01SMALL", small),
        message("01ODD", odd),
        message("01ONE", Buffer.concat([onePart])),
      ]);
      assert.equal(large.byteLength, 0, "the large content was transferred, not cloned");
      assert.equal(small.toString(), "Subject: small\r\n\r\nhi\r\n", "a pooled content is left alone");
      assert.ok((await store.getMessageContent("01BIG1"))!.equals(original));
      assert.ok((await store.getMessageContent("01BIG2"))!.equals(original));
      assert.ok((await store.getMessageContent("01SMALL"))!.equals(small));
      assert.ok((await store.getMessageContent("01ODD"))!.equals(oddBytes), "reassembled from its parts");
      assert.ok((await store.getMessageContent("01ONE"))!.equals(onePart));
    } finally {
      await store.close();
    }
  });
});

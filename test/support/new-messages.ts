/**
 * Minimal messages for tests that write the spool directly (one recipient, a tiny content): ids
 * M0000, M0001, … in order, so event and commit order can be read off them.
 */
import type { NewMessage } from "../../src/store/types.js";

/** A maker of messages of `accountId`, received at `at()`, each with the next id. */
export function messageMaker(accountId: number, at: () => number = () => 1): () => NewMessage {
  let n = 0;
  return () => {
    const receivedAt = at();
    return {
      id: `M${String(n++).padStart(4, "0")}`,
      accountId,
      apiKeyId: null,
      mailFrom: "a@b.test",
      recipients: ["r@x.test"],
      content: Buffer.from("Subject: x\r\n\r\nx\r\n"),
      clientIp: "127.0.0.1",
      receivedAt,
      expiresAt: receivedAt + 3_600_000,
    };
  };
}

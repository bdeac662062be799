/**
 * MimeNode.build() without its stream pipeline. MailComposer's tree is built by nodemailer
 * through a PassThrough per node and per content, a pipeline, an encoder Transform and a
 * LastNewline Transform, with a setImmediate between every step: for a 2 KB API message that
 * was the largest part of the request's CPU (bench:http profile). Every content the API gives
 * the composer is a string or a Buffer already in memory, so the same steps can run
 * synchronously: the same header building (node.buildHeaders()), the same encoders
 * (nodemailer's own base64 and quoted-printable Encoder, fed the content as the one chunk the
 * PassThrough would hand them), the same boundaries and the same final newline. The output is
 * byte-identical to build() (test/http-mime-build.test.ts proves it over generated messages).
 * Anything this does not cover (streams, files, URLs, raw nodes, transforms) is refused so the
 * caller falls back to build().
 */
import { Encoder as Base64Encoder } from "nodemailer/lib/base64/index.js";
import type MimeNode from "nodemailer/lib/mime-node/index.js";
import { Encoder as QpEncoder } from "nodemailer/lib/qp/index.js";

/** The parts of nodemailer's MimeNode that build() reads (not all are in its typings). */
interface Node {
  readonly childNodes: Node[];
  readonly multipart: string | false | undefined;
  readonly boundary: string | false | undefined;
  readonly content: unknown;
  readonly contentType: string | undefined;
  readonly _raw: unknown;
  readonly _transforms: unknown[];
  readonly _processFuncs: unknown[];
  readonly newline: unknown;
  getTransferEncoding(): string | false;
  buildHeaders(): string;
}

interface SyncTransform {
  push(chunk: unknown, encoding?: BufferEncoding): boolean;
  _transform(chunk: Buffer, encoding: string, done: (err?: Error | null) => void): void;
  _flush(done: (err?: Error | null) => void): void;
}

/** Runs an encoder Transform over one chunk and its end, collecting what it pushes. */
function encodeSync(encoder: SyncTransform, input: Buffer, out: Buffer[]): void {
  encoder.push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (chunk !== null && chunk !== undefined)
      out.push(typeof chunk === "string" ? Buffer.from(chunk, encoding ?? "utf8") : (chunk as Buffer));
    return true;
  };
  const fail = (err?: Error | null) => {
    if (err) throw err;
  };
  encoder._transform(input, "buffer", fail);
  encoder._flush(fail);
}

function writeNode(node: Node, out: Buffer[]): boolean {
  if (node._raw) return false;
  // The same order as MimeNode.stream(): the transfer encoding first, then the headers.
  const transferEncoding = node.getTransferEncoding();
  out.push(Buffer.from(`${node.buildHeaders()}\r\n\r\n`));
  if (node.content) {
    const content = node.content;
    if (typeof content !== "string" && !Buffer.isBuffer(content)) return false;
    // The PassThrough build() reads the content through turns a string into UTF-8 bytes.
    const bytes = typeof content === "string" ? Buffer.from(content) : content;
    if (transferEncoding === "base64")
      encodeSync(new Base64Encoder({}) as unknown as SyncTransform, bytes, out);
    else if (transferEncoding === "quoted-printable")
      encodeSync(
        // outside text a lone CR or LF is data (nodemailer's reason for binary)
        new QpEncoder({
          binary: !/^text\//i.test(node.contentType || ""),
        } as never) as unknown as SyncTransform,
        bytes,
        out,
      );
    else if (bytes.length > 0) out.push(bytes);
  }
  if (node.multipart) {
    for (let i = 0; i < node.childNodes.length; i++) {
      out.push(Buffer.from(`${i > 0 ? "\r\n" : ""}--${node.boundary}\r\n`));
      if (!writeNode(node.childNodes[i]!, out)) return false;
    }
    out.push(Buffer.from(`\r\n--${node.boundary}--\r\n`));
  }
  return true;
}

/**
 * The message MimeNode.build() would produce, or undefined when the tree holds something only
 * build() can read (then call it).
 */
export function buildMimeSync(root: MimeNode): Buffer | undefined {
  const node = root as unknown as Node;
  if (node._transforms.length > 0 || node._processFuncs.length > 0 || node.newline) return undefined;
  const out: Buffer[] = [];
  if (!writeNode(node, out)) return undefined;
  // LastNewline: the message ends with a line break.
  const last = out.length > 0 ? out[out.length - 1]! : Buffer.alloc(0);
  const lastByte = last.length > 0 ? last[last.length - 1] : undefined;
  if (lastByte === 0x0d) out.push(Buffer.from("\n"));
  else if (lastByte !== 0x0a) out.push(Buffer.from("\r\n"));
  return Buffer.concat(out);
}

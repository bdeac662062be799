/**
 * The TLS certificate for the submission listeners: the operator's files when configured,
 * otherwise a self-signed one generated into dataDir/tls on first start (and reused after), so
 * STARTTLS works out of the box and AUTH never travels in clear.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import selfsigned from "selfsigned";
import type { PetrelConfig } from "../config/schema.js";
import { UsageError } from "../errors.js";
import type { Logger } from "../log.js";

export interface CertificateFiles {
  readonly key: Buffer;
  readonly cert: Buffer;
  readonly certFile: string;
  readonly selfSigned: boolean;
}

export function selfSignedPaths(config: PetrelConfig): { certFile: string; keyFile: string } {
  const dir = join(config.dataDir, "tls");
  return { certFile: join(dir, "cert.pem"), keyFile: join(dir, "key.pem") };
}

export async function loadCertificate(config: PetrelConfig, logger: Logger): Promise<CertificateFiles> {
  const { certFile, keyFile } = config.smtp.tls;
  if (certFile || keyFile) {
    if (!certFile || !keyFile)
      throw new UsageError("smtp.tls.certFile and smtp.tls.keyFile must be set together");
    return {
      cert: readPem(certFile, "smtp.tls.certFile"),
      key: readPem(keyFile, "smtp.tls.keyFile"),
      certFile,
      selfSigned: false,
    };
  }
  const paths = selfSignedPaths(config);
  if (!existsSync(paths.certFile) || !existsSync(paths.keyFile)) {
    await generateSelfSigned(config.hostname, paths);
    logger.warn(
      { certFile: paths.certFile },
      "generated a self-signed TLS certificate; clients must trust this file or you configure a real one with smtp.tls.certFile and smtp.tls.keyFile",
    );
  } else {
    logger.info(
      { certFile: paths.certFile },
      "using the self-signed TLS certificate (set smtp.tls.certFile/keyFile for a real one)",
    );
  }
  return {
    cert: readFileSync(paths.certFile),
    key: readFileSync(paths.keyFile),
    certFile: paths.certFile,
    selfSigned: true,
  };
}

async function generateSelfSigned(
  hostname: string,
  paths: { certFile: string; keyFile: string },
): Promise<void> {
  const notAfterDate = new Date();
  notAfterDate.setFullYear(notAfterDate.getFullYear() + 5);
  const names = [...new Set([hostname, "localhost"])];
  const pems = await selfsigned.generate([{ name: "commonName", value: hostname }], {
    // ECDSA P-256: a handshake signature costs ~30× less CPU than RSA-2048, and every client
    // that speaks TLS 1.2+ accepts it. It matters when apps open a TLS connection per message.
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    notAfterDate,
    extensions: [
      { name: "basicConstraints", cA: true },
      { name: "keyUsage", digitalSignature: true, keyCertSign: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          ...names.map((value) => ({ type: 2 as const, value })),
          { type: 7, ip: "127.0.0.1" },
          { type: 7, ip: "::1" },
        ],
      },
    ],
  });
  mkdirSync(join(paths.certFile, ".."), { recursive: true, mode: 0o700 });
  writeFileSync(paths.keyFile, pems.private, { mode: 0o600 });
  writeFileSync(paths.certFile, pems.cert, { mode: 0o644 });
}

function readPem(file: string, option: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(
      `cannot read ${option} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
}

/**
 * The bench's sending domain for `--dkim rsa|ed25519|both|off` (issue 4): signing happens only
 * for a verified domain, so the bench verifies it the way an operator does — `petrel domains add
 * --format json`, the records published in a DNS server on loopback, `petrel domains verify` —
 * with sending.requireVerifiedDomains on. No test-only switch in Petrel: the bench is a real
 * operator here.
 *
 * Modes: rsa (RSA 2048), ed25519 (the RSA selector retired, Ed25519 alone), both (two
 * signatures), off (the sender is a single sender: the same per-message lookups, no signature),
 * so off is the unsigned baseline for the others.
 */

import { startDnsServer } from "../test/support/dns-server.js";
import { publishRecords } from "../test/support/domain-zone.js";
import { petrelCli } from "../test/support/petrel-process.js";

export type DkimMode = "rsa" | "ed25519" | "both" | "off";

export const DKIM_MODES: readonly DkimMode[] = ["off", "rsa", "ed25519", "both"];

export function parseDkimModes(value: string): DkimMode[] {
  const modes = value.split(",").map((m) => m.trim());
  for (const m of modes) {
    if (!(DKIM_MODES as readonly string[]).includes(m))
      throw new Error(`--dkim: expected rsa, ed25519, both or off, not ${m}`);
  }
  return modes as DkimMode[];
}

async function ok(dataDir: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<string> {
  const result = await petrelCli(dataDir, args, env);
  if (result.code !== 0) throw new Error(`petrel ${args.join(" ")} failed: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

/** Sets up `sender`'s domain in `dataDir` for `mode`; returns config for `petrel serve`. */
export async function prepareBenchSender(
  dataDir: string,
  sender: string,
  mode: DkimMode,
): Promise<Record<string, unknown>> {
  const config = { sending: { requireVerifiedDomains: true } };
  if (mode === "off") {
    await ok(dataDir, ["senders", "add", sender], {});
    return config;
  }
  const domain = sender.slice(sender.lastIndexOf("@") + 1);
  const dns = await startDnsServer({});
  try {
    const env = {
      PETREL_DNS__SERVERS: `["${dns.server}"]`,
      PETREL_DKIM__ED25519: String(mode !== "rsa"),
      PETREL_DOMAINS__SPF__IPS: "[127.0.0.1]",
    };
    publishRecords(dns, JSON.parse(await ok(dataDir, ["domains", "add", domain, "--format", "json"], env)));
    if (mode === "ed25519")
      await ok(dataDir, ["domains", "retire-selector", domain, "petrel1", "--yes"], env);
    await ok(dataDir, ["domains", "verify", domain], env);
  } finally {
    await dns.close();
  }
  return config;
}

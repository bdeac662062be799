/**
 * Two independent DKIM verifiers for end-to-end tests, both fetching keys from the loopback DNS
 * server as a receiver would: dkimpy (Debian's python3-dkim, with dnspython pointed at the test
 * server's port; run through /usr/bin/python3) and mailauth's dkimVerify (with our resolver,
 * src/dns/resolver.ts, as its DNS).
 */
import { spawn } from "node:child_process";
import { dkimVerify } from "mailauth";
import { createResolver } from "../../src/dns/resolver.js";

export interface VerifierResult {
  readonly result: "pass" | "fail";
  readonly domain: string;
  readonly selector: string;
}

const DKIMPY_SCRIPT = `
import base64, json, sys
import dkim, dns.resolver
req = json.load(sys.stdin)
res = dns.resolver.Resolver(configure=False)
res.nameservers = ["127.0.0.1"]
res.port = req["port"]
res.timeout = 2
res.lifetime = 5
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    try:
        answer = res.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    return b"".join(answer[0].strings)
out = []
for item in req["messages"]:
    msg = base64.b64decode(item)
    count = sum(1 for k, v in dkim.DKIM(msg).headers if k.lower() == b"dkim-signature")
    results = []
    for i in range(count):
        d = dkim.DKIM(msg, minkey=1024)
        try:
            ok = bool(d.verify(idx=i, dnsfunc=dnsfunc))
        except Exception:
            ok = False
        results.append({"result": "pass" if ok else "fail", "domain": (d.domain or b"").decode(), "selector": (d.selector or b"").decode()})
    out.append(results)
json.dump(out, sys.stdout)
`;

/** Verifies every signature of every message with dkimpy, in one Python process. */
export function dkimpyVerify(dnsPort: number, messages: readonly Buffer[]): Promise<VerifierResult[][]> {
  return new Promise((resolve, reject) => {
    const child = spawn("/usr/bin/python3", ["-c", DKIMPY_SCRIPT], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`dkimpy exited ${code}: ${stderr}`));
      else resolve(JSON.parse(stdout) as VerifierResult[][]);
    });
    child.stdin.end(JSON.stringify({ port: dnsPort, messages: messages.map((m) => m.toString("base64")) }));
  });
}

/** Verifies every signature of a message with mailauth, keys looked up at `dnsServer`. */
export async function mailauthVerify(dnsServer: string, message: Buffer): Promise<VerifierResult[]> {
  const resolver = createResolver({ servers: [dnsServer], timeoutMs: 2000, tries: 2, cache: false });
  const result = await dkimVerify(message, {
    resolver: async (name: string, type: string) => {
      if (type !== "TXT") throw Object.assign(new Error(`unexpected ${type} lookup`), { code: "ENOTFOUND" });
      const answer = await resolver.resolveTxt(name);
      if (answer.kind === "nxdomain") throw Object.assign(new Error(`no ${name}`), { code: "ENOTFOUND" });
      if (answer.kind === "tempfail") throw Object.assign(new Error(answer.reason), { code: "ETIMEOUT" });
      if (answer.records.length === 0)
        throw Object.assign(new Error(`no TXT at ${name}`), { code: "ENODATA" });
      return answer.records.map((text) => [text]);
    },
  });
  return result.results.map((r) => ({
    result: r.status.result === "pass" ? "pass" : "fail",
    domain: r.signingDomain ?? "",
    selector: r.selector ?? "",
  }));
}

/** Both verifiers' results for one message (they must agree). */
export async function verifyBoth(
  dns: { readonly port: number; readonly server: string },
  message: Buffer,
): Promise<{ dkimpy: VerifierResult[]; mailauth: VerifierResult[] }> {
  const [[dkimpy], mailauth] = await Promise.all([
    dkimpyVerify(dns.port, [message]),
    mailauthVerify(dns.server, message),
  ]);
  return { dkimpy: dkimpy!, mailauth };
}

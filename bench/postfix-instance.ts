/**
 * A throwaway Postfix instance for benchmarks run in the same process as Petrel's (bench:seed):
 * its own configuration and queue directories under /tmp, smtpd on one loopback port, started
 * with `postfix -c DIR start` and stopped at the end (no system daemon is involved), like
 * bench/compare-postfix.sh. Needs root (Postfix drops to its `postfix` user).
 *
 * Mail accepted by this instance is put on hold (`HOLD` at end of DATA): Postfix spools it
 * durably, as Petrel does with delivery off, and does not deliver it.
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";

export interface PostfixInstance {
  readonly port: number;
  /** CPU ms of the master and every child it has reaped or still runs (smtpd, cleanup, qmgr…). */
  cpuMs(): number;
  stop(): void;
}

function userId(name: string): number {
  return Number(execFileSync("id", ["-u", name], { encoding: "utf8" }).trim());
}

function ticksOf(pid: number, withChildren: boolean): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime, stime (+ cutime, cstime: children already reaped), fields 14–17 of /proc/PID/stat.
    return Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0);
  } catch {
    return 0;
  }
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((res) => {
      const s = connect(port, "127.0.0.1", () => {
        s.destroy();
        res(true);
      });
      s.once("error", () => res(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`postfix did not listen on ${port}`);
}

export async function startPostfix(
  port: number,
  tls: { certFile: string; keyFile: string } | undefined,
): Promise<PostfixInstance> {
  const work = mkdtempSync("/tmp/petrel-postfix-");
  chmodSync(work, 0o755);
  const etc = join(work, "etc");
  mkdirSync(etc);
  mkdirSync(join(work, "queue"));
  mkdirSync(join(work, "data"));
  chownSync(join(work, "data"), userId("postfix"), -1);
  const master = readFileSync("/etc/postfix/master.cf", "utf8").replace(
    /^smtp {6}inet {2}n {7}- {7}y {7}- {7}- {7}smtpd/m,
    `127.0.0.1:${port}      inet  n       -       y       -       -       smtpd`,
  );
  if (!master.includes(`127.0.0.1:${port}`)) throw new Error("could not set the smtpd port in master.cf");
  writeFileSync(join(etc, "master.cf"), master);
  let tlsConfig = "smtpd_tls_security_level = none\n";
  if (tls) {
    copyFileSync(tls.certFile, join(etc, "cert.pem"));
    copyFileSync(tls.keyFile, join(etc, "key.pem"));
    chmodSync(join(etc, "key.pem"), 0o600);
    tlsConfig = [
      "smtpd_tls_security_level = may",
      `smtpd_tls_chain_files = ${join(etc, "key.pem")}, ${join(etc, "cert.pem")}`,
      "smtpd_tls_loglevel = 0",
    ].join("\n");
  }
  writeFileSync(
    join(etc, "main.cf"),
    `compatibility_level = 3.6
queue_directory = ${join(work, "queue")}
data_directory = ${join(work, "data")}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_end_of_data_restrictions = check_client_access static:HOLD
relayhost = [127.0.0.1]:9
alias_maps =
alias_database =
local_recipient_maps =
smtp_tls_security_level = none
${tlsConfig}
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = ${join(work, "maillog")}
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 100
`,
  );
  execFileSync("postfix", ["-c", etc, "check"]);
  execFileSync("postfix", ["-c", etc, "start"], { stdio: "ignore" });
  await waitForPort(port);
  const masterPid = Number(readFileSync(join(work, "queue", "pid", "master.pid"), "utf8").trim());
  return {
    port,
    cpuMs() {
      let ticks = ticksOf(masterPid, true);
      const children = execFileSync("pgrep", ["-P", String(masterPid)], { encoding: "utf8" }).split("\n");
      for (const pid of children) if (pid.trim()) ticks += ticksOf(Number(pid), true);
      return ticks * 10;
    },
    stop() {
      try {
        execFileSync("postfix", ["-c", etc, "stop"], { stdio: "ignore" });
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
  };
}

#!/usr/bin/env bash
# bench/compare-postfix.sh — the same relay load through Postfix and through Petrel, in one run.
#
# Load: Postfix's smtp-source, N messages (default 20000) of 2 KB over 20 sessions, one connection
# per message, plaintext from 127.0.0.1. Both relays hand everything to the same Postfix smtp-sink
# (a fast sink that never pushes back: best-case figures). Postfix runs from its own config and
# queue directory under /tmp, listening on a loopback port only, relayhost = the sink; it is
# started with `postfix -c DIR start` and stopped at the end (no system daemon is involved).
# End to end = from the first submission to the last delivery (Postfix: its queue is empty;
# Petrel: the last delivery outcome committed).
#
# Usage: bench/compare-postfix.sh [messages] [sessions]     (run `npm run build` first)
set -euo pipefail

MESSAGES=${1:-20000}
SESSIONS=${2:-20}
SIZE=2048
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/petrel-postfix-XXXXXX)
chmod 755 "$WORK"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
now_ms() { date +%s%3N; }

SINK_PORT=$(free_port)
PF_PORT=$(free_port)
SINK_PID=""

cleanup() {
  postfix -c "$WORK/etc" stop >/dev/null 2>&1 || true
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 1024 &
SINK_PID=$!

# --- Postfix: own configuration directory and queue, loopback only ---------------------------
mkdir -p "$WORK/etc" "$WORK/queue" "$WORK/data"
chown postfix "$WORK/data"
cp /etc/postfix/master.cf "$WORK/etc/master.cf"
# The smtpd listener moves from port 25 on every interface to our loopback port.
sed -i "s/^smtp      inet  n       -       y       -       -       smtpd/127.0.0.1:$PF_PORT      inet  n       -       y       -       -       smtpd/" "$WORK/etc/master.cf"
grep -q "^127.0.0.1:$PF_PORT" "$WORK/etc/master.cf" || { echo "could not set the smtpd port in master.cf" >&2; exit 1; }
cat >"$WORK/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $WORK/queue
data_directory = $WORK/data
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
relayhost = [127.0.0.1]:$SINK_PORT
alias_maps =
alias_database =
local_recipient_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = $WORK/maillog
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 100
EOF
postfix -c "$WORK/etc" check
postfix -c "$WORK/etc" start >/dev/null 2>&1
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT") 2>/dev/null && break
  sleep 0.1
done
MASTER_PID=$(head -1 "$WORK/queue/pid/master.pid" | tr -d ' ')

queue_files() {
  find "$WORK/queue/maildrop" "$WORK/queue/incoming" "$WORK/queue/active" "$WORK/queue/deferred" -type f 2>/dev/null | wc -l
}
postfix_cpu_ms() {
  # utime+stime of every process in the master's process group (master, smtpd, cleanup, qmgr, smtp …),
  # read before they exit: long-lived daemons only, so a lower bound on Postfix's CPU.
  local total=0
  for pid in $(pgrep -g "$(ps -o pgid= "$MASTER_PID" | tr -d ' ')"); do
    [ -r "/proc/$pid/stat" ] || continue
    read -r -a f < <(sed 's/.*) //' "/proc/$pid/stat")
    total=$((total + f[11] + f[12] + f[13] + f[14]))
  done
  echo $((total * 10))
}

echo "Postfix $(postconf -d -h mail_version): $MESSAGES × $SIZE B, $SESSIONS sessions → smtp-sink"
T0=$(now_ms)
smtp-source -s "$SESSIONS" -l "$SIZE" -m "$MESSAGES" -f bench@bench.example -t sink@example.com "127.0.0.1:$PF_PORT"
T_ACCEPT=$(now_ms)
sleep 0.2
while [ "$(queue_files)" -gt 0 ]; do sleep 0.05; done
T_DONE=$(now_ms)
PF_CPU=$(postfix_cpu_ms)
SENT=$(grep -c "status=sent" "$WORK/maillog" || true)
PF_ACCEPT=$((MESSAGES * 1000 / (T_ACCEPT - T0)))
PF_E2E=$((MESSAGES * 1000 / (T_DONE - T0)))
echo "  accept rate      $PF_ACCEPT msg/s"
echo "  end-to-end rate  $PF_E2E msg/s ($(((T_DONE - T0) / 1000)) s; $SENT delivered per its log)"
echo "  CPU (long-lived processes only) ≈ $((PF_CPU / MESSAGES)) ms/message"
postfix -c "$WORK/etc" stop >/dev/null 2>&1 || true
sleep 1

# --- Petrel: the same load and sink -----------------------------------------------------------
echo
RESULT=$(node "$HERE/dist/bench/relay.js" --messages "$MESSAGES" --sessions "$SESSIONS" --size "$SIZE" --sink-port "$SINK_PORT" --json)
P_ACCEPT=$(node -e 'const r=JSON.parse(process.argv[1]); console.log(r.acceptRate)' "$RESULT")
P_E2E=$(node -e 'const r=JSON.parse(process.argv[1]); console.log(r.endToEndRate)' "$RESULT")
echo "Petrel: $MESSAGES × $SIZE B, $SESSIONS sessions → smtp-sink"
node -e '
const r = JSON.parse(process.argv[1]);
console.log(`  accept rate      ${r.acceptRate} msg/s`);
console.log(`  end-to-end rate  ${r.endToEndRate} msg/s (${r.endToEndSeconds.toFixed(1)} s)`);
console.log(`  time in queue    p50 ${r.inQueueP50Ms} ms, p99 ${r.inQueueP99Ms} ms`);
console.log(`  server CPU       ${r.cpuMsPerMessage} ms/message, peak RSS ${r.peakRssMb} MB`);
' "$RESULT"
echo
RATIO=$(node -e 'console.log((Number(process.argv[1]) / Number(process.argv[2])).toFixed(2))' "$P_E2E" "$PF_E2E")
echo "End to end: Petrel $P_E2E msg/s vs Postfix $PF_E2E msg/s = ${RATIO}×"

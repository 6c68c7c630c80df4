#!/usr/bin/env bash
# bench/idle.sh — memory per idle keep-alive connection, enrollgate and HAProxy side by side: N
# client connections (default 10000) each send one small GET through the proxy to the nginx origin
# and then stay open and idle (the proxy keeps their upstream connections too). The proxy's RSS is
# read before (after one warm-up request) and with all N open; the difference over N is the cost of
# one idle connection in user space (socket buffers are the kernel's and not in RSS).
# Prints "metric value unit" lines: idle.TARGET.{rss_before,rss_with_conns,per_conn,ready,failed}
# and ratio.idle.enrollgate_vs_haproxy.per_conn.
# env: N=10000 TARGETS="enrollgate haproxy" DEPS=1 BUILD=1. Needs root (descriptor limits). Loopback only.
set -euo pipefail
B=$(cd "$(dirname "$0")" && pwd); SRC=$(dirname "$B"); L=$B/lib
N=${N:-10000}; TARGETS=${TARGETS:-enrollgate haproxy}
export RUN=${RUN:-${TMPDIR:-/tmp}/enrollgate-bench-state} CONF=$B/conf
export ORIGIN_PIDFILE=$RUN/nginx.pid
ORIGIN=127.0.0.1:28080
mkdir -p "$RUN/logs"
log() { echo "[$(date +%T)] $*" >&2; }
exec 9> "$RUN/lock"
flock -n 9 || { echo "bench/idle.sh: another bench run holds $RUN/lock" >&2; exit 1; }
[ "${DEPS:-1}" = 1 ] && "$SRC/scripts/deps.sh" bench >&2
if [ "${BUILD:-1}" = 1 ]; then
  (cd "$SRC" && cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-bench -j2 >/dev/null)
fi
# every process here (origin, proxies, the client) needs descriptors: the proxy 2 per connection.
# Raise the limit as far as this machine lets us (a container may cap the hard limit), and lower N
# when even that is too few.
want=$((2 * N + 512))
ulimit -Hn "$want" 2>/dev/null || true
hard=$(ulimit -Hn); [ "$hard" = unlimited ] && hard=$want
ulimit -n "$(( hard < want ? hard : want ))"
if [ $((2 * N + 512)) -gt "$(ulimit -n)" ]; then
  N=$(( ($(ulimit -n) - 512) / 2 ))
  echo "# descriptor limit $(ulimit -n) (hard): N lowered to $N"
fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$L/origin.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$L/origin.sh" start >/dev/null

T=$(mktemp -d "$RUN/idle.XXXXXX")
rss() { ps -o rss= -p "$1" | tr -d ' '; }
wait_proxy() { for _ in $(seq 100); do curl -sf -o /dev/null -x "127.0.0.1:$1" "http://$ORIGIN/small" && return 0; sleep 0.1; done; return 1; }

for t in $TARGETS; do
  case $t in
    enrollgate)
      mkdir -p "$T/eg"; cp "$CONF"/enrollgate.lua "$CONF"/policy.lua "$T/eg/"
      sed -i "s/max_connections *= *[0-9]*/max_connections = $((N + 100))/" "$T/eg/enrollgate.lua"
      "$SRC/build-bench/enrollgate" run -c "$T/eg" --listen 127.0.0.1:28888 --admin 127.0.0.1:28898 2>"$RUN/logs/idle-eg.log" &
      pid=$! port=28888 ;;
    haproxy)
      command -v haproxy >/dev/null || { echo "# skipped haproxy (not installed)"; continue; }
      sed -e "s/maxconn [0-9]*/maxconn $((N + 100))/" -e "s/^defaults$/defaults\n    maxconn $((N + 100))/" \
        "$CONF/haproxy.cfg" >"$T/haproxy.cfg"
      haproxy -db -f "$T/haproxy.cfg" >"$RUN/logs/idle-haproxy.log" 2>&1 &
      pid=$! port=28883 ;;
    *) echo "bench/idle.sh: unknown target $t" >&2; exit 2 ;;
  esac
  PIDS+=("$pid")
  wait_proxy "$port" || { echo "bench/idle.sh: $t does not answer" >&2; exit 1; }
  sleep 0.5
  before=$(rss "$pid")
  log "$t: opening $N idle keep-alive connections"
  coproc CLIENT { python3 "$L/idle_conns.py" "$port" "http://$ORIGIN/small" "$N" 600; }
  read -r _ ready failed <&"${CLIENT[0]}"
  sleep 1
  with=$(rss "$pid")
  upstream=$(ss -Htn state established "( dport = :28080 )" | wc -l)
  exec {cin}>&"${CLIENT[1]}"; exec {cin}>&-   # close the client's stdin: it lets go of its connections
  kill "$CLIENT_PID" 2>/dev/null || true; wait "$CLIENT_PID" 2>/dev/null || true
  echo "idle.$t.rss_before $before KiB"
  echo "idle.$t.rss_with_conns $with KiB"
  echo "idle.$t.ready $ready count"
  echo "idle.$t.failed $failed count"
  echo "idle.$t.upstream_conns $upstream count"
  awk -v a="$before" -v b="$with" -v n="$ready" -v t="$t" 'BEGIN { printf "idle.%s.per_conn %.2f KiB\n", t, n ? (b - a) / n : 0 }'
  kill "$pid"; wait "$pid" 2>/dev/null || true
  sleep 1
done | tee "$T/results.txt"
awk '{ v[$1] = $2 } END { if (v["idle.haproxy.per_conn"] > 0)
  printf "ratio.idle.enrollgate_vs_haproxy.per_conn %.3f x\n", v["idle.enrollgate.per_conn"] / v["idle.haproxy.per_conn"] }' "$T/results.txt"

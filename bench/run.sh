#!/usr/bin/env bash
# bench/run.sh — the benchmark in one command: installs what is missing (scripts/deps.sh bench), builds
# enrollgate Release into build-bench/, starts an nginx origin and the proxies on loopback, runs the same
# measurements (lib/measure.sh) against every target, prints `metric value unit` lines and the ratios of
# enrollgate to the others, and stops everything it started. Details: bench/README.md.
# env: DURATION=10 (s per wrk test)  RUNS=5 (100 MiB downloads per test)  CONNECT_N=1000 (CONNECT+TLS connections)
#      TARGETS="direct enrollgate tinyproxy haproxy squid"  PIN=1 (client+origin on CLIENT_CPUS=0, proxy on
#      PROXY_CPUS=1; PIN=0: let the scheduler place everything)  TRIES=2 FOREIGN_MAX=25 (a target whose
#      tests saw more than 25 %core of foreign CPU is measured again, the least perturbed try is kept)
#      EG_WORKERS=1 (enrollgate's --workers; with PIN=0 on 2 cores, 2 workers made keep-alive 0.78x of 1,
#      see docs/performance.md)
#      QUIET_WAIT=60 (s to wait for an idle machine before each target)  PROFILE=1 (perf profile of enrollgate
#      under keep-alive load)  DEPS=1 BUILD=1 (0: skip the apt step / the build)  THREADS=2 CONNS=64 (wrk)
# Output: stdout, and bench/out/<date-time>/ (bench/out/latest points to the last run). Loopback only.
set -euo pipefail
B=$(cd "$(dirname "$0")" && pwd); SRC=$(dirname "$B"); L=$B/lib; CONF=$B/conf
export DURATION=${DURATION:-10} RUNS=${RUNS:-5} CONNECT_N=${CONNECT_N:-1000} THREADS=${THREADS:-2} CONNS=${CONNS:-64}
TARGETS=${TARGETS:-direct enrollgate tinyproxy haproxy squid}
PIN=${PIN:-1}; EG_WORKERS=${EG_WORKERS:-1}; CLIENT_CPUS_PIN=${CLIENT_CPUS:-0}; PROXY_CPUS=${PROXY_CPUS:-1}
TRIES=${TRIES:-2}; FOREIGN_MAX=${FOREIGN_MAX:-25}; QUIET_WAIT=${QUIET_WAIT:-60}; PROFILE=${PROFILE:-1}
ID=$(date +%Y%m%d-%H%M%S); OUT=$B/out/$ID
export RUN=${RUN:-${TMPDIR:-/tmp}/enrollgate-bench-state} CONF
export ORIGIN_PIDFILE=$RUN/nginx.pid CONNECT_LAT=$RUN/connect_lat
export ORIGIN_HTTP=127.0.0.1:28080 ORIGIN_TLS=127.0.0.1:28443
EG_LISTEN=127.0.0.1:28888 EG_ADMIN=127.0.0.1:28898
mkdir -p "$OUT/logs" "$RUN/logs" "$RUN/conf"; chmod 1777 "$RUN/logs"
log() { echo "[$(date +%T)] $*" >&2; }

exec 9> "$RUN/lock"                               # one run at a time: the ports are fixed
flock -n 9 || { echo "bench/run.sh: another run holds $RUN/lock" >&2; exit 1; }

# (a) packages, (b) the Release build
if [ "${DEPS:-1}" = 1 ]; then log "deps: scripts/deps.sh bench"; "$SRC/scripts/deps.sh" bench >&2; fi
if [ "${BUILD:-1}" = 1 ]; then
  log "build: build-bench/ (Release), log in $OUT/build.log"
  if ! (cd "$SRC" && cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2) \
      > "$OUT/build.log" 2>&1; then
    tail -30 "$OUT/build.log" >&2; echo "bench/run.sh: the build failed" >&2; exit 1
  fi
fi
EG=$SRC/build-bench/enrollgate
[ "$CONNECT_LAT" -nt "$L/connect_lat.c" ] || cc -O2 -o "$CONNECT_LAT" "$L/connect_lat.c" -lssl -lcrypto -lm

for port in 28080 28443 28881 28882 28883 28885 28888 28898; do   # fixed ports: refuse to start over someone else
  if ss -Hltn "sport = :$port" | grep -q .; then echo "bench/run.sh: port $port is in use" >&2; exit 1; fi
done
for f in tinyproxy.conf squid.conf haproxy.cfg allowlist.txt; do
  sed -e "s#@RUN@#$RUN#g" -e "s#@CONF@#$RUN/conf#g" "$CONF/$f" > "$RUN/conf/$f"
done
chmod -R a+rX "$RUN/conf"

# (f) everything started here is stopped on exit, by pid
PIDS=()
tree() { local p c; for p; do echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; done; }  # pids + descendants
cleanup() {
  local p
  trap - EXIT INT TERM
  for p in $(tree "${PIDS[@]}"); do kill "$p" 2>/dev/null || true; done   # proxies, measurements (wrk, curl, ...)
  for p in "${PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  "$L/origin.sh" stop > /dev/null 2>&1 || true
  cp "$RUN"/logs/*.log "$OUT/logs/" 2>/dev/null || true
  ln -sfn "$ID" "$B/out/latest"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
PCL=(); [ "$PIN" = 1 ] && PCL=(taskset -c "$PROXY_CPUS")        # proxies start on their core (haproxy: 1 thread)
start() { local v=$1; shift; "${PCL[@]}" "$@" > "$OUT/logs/$v.out" 2>&1 < /dev/null & PIDS+=($!); printf -v "$v" %s $!; }

# (c) the origin
"$L/origin.sh" start > /dev/null
OM=$(cat "$ORIGIN_PIDFILE")

# (d) the proxies; a peer that is not installed is skipped
declare -A ADDR=() PPID_OF=() RELAY=()
SKIPPED=()
for t in $TARGETS; do
  case $t in
  direct) ADDR[$t]=direct ;;
  enrollgate)
    "$EG" check -c "$CONF" > "$OUT/logs/enrollgate-check.out" 2>&1 || { cat "$OUT/logs/enrollgate-check.out" >&2; exit 1; }
    start EGP "$EG" run -c "$CONF" --listen "$EG_LISTEN" --admin "$EG_ADMIN" --workers "$EG_WORKERS"
    ADDR[$t]=$EG_LISTEN; PPID_OF[$t]=$EGP ;;
  tinyproxy|haproxy|squid)
    if ! command -v "$t" > /dev/null; then SKIPPED+=("$t"); continue; fi
    case $t in
      tinyproxy) start P tinyproxy -d -c "$RUN/conf/tinyproxy.conf"; ADDR[$t]=127.0.0.1:28881 ;;
      haproxy) start P haproxy -db -f "$RUN/conf/haproxy.cfg"; ADDR[$t]=127.0.0.1:28883; RELAY[$t]=127.0.0.1:28885 ;;
      squid) start P squid -N -f "$RUN/conf/squid.conf"; ADDR[$t]=127.0.0.1:28882 ;;
    esac
    PPID_OF[$t]=$P ;;
  *) echo "bench/run.sh: unknown target $t (direct enrollgate tinyproxy haproxy squid)" >&2; exit 2 ;;
  esac
done
ACTIVE=()
for t in $TARGETS; do
  [ -n "${ADDR[$t]:-}" ] || continue
  if [ "$t" != direct ]; then
    for _ in $(seq 100); do
      curl -sf -o /dev/null -x "${ADDR[$t]}" "http://$ORIGIN_HTTP/small" && break; sleep 0.1
    done
    curl -sf -o /dev/null -x "${ADDR[$t]}" "http://$ORIGIN_HTTP/small" ||
      { echo "bench/run.sh: $t on ${ADDR[$t]} does not answer (see $OUT/logs/)" >&2; exit 1; }
  fi
  ACTIVE+=("$t")
done
rssof() { local s=0 p r; for p in $(tree "$1"); do r=$(ps -o rss= -p "$p" | tr -d ' ') && s=$((s + ${r:-0})); done; echo "$s"; }
declare -A FRESH=()
for t in "${ACTIVE[@]}"; do [ -n "${PPID_OF[$t]:-}" ] && FRESH[$t]=$(rssof "${PPID_OF[$t]}"); done

{ echo "# run $ID: $(nproc) cpus, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
  echo "# enrollgate $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null)$(git -C "$SRC" diff --quiet HEAD -- core 2>/dev/null || echo '+uncommitted core/'): $("$EG" version 2>&1 | head -1)"
  echo "# $(nginx -v 2>&1); wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'); $(tinyproxy -v 2>&1 | head -1)"
  command -v haproxy > /dev/null && echo "# $(haproxy -v | head -1)"
  command -v squid > /dev/null && echo "# $(squid -v | head -1)"
  echo "# DURATION=$DURATION RUNS=$RUNS CONNECT_N=$CONNECT_N THREADS=$THREADS CONNS=$CONNS PIN=$PIN EG_WORKERS=$EG_WORKERS TARGETS=\"$TARGETS\""
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt"

pin() { local c=$1 p; shift; for p; do taskset -a -cp "$c" "$p" > /dev/null 2>&1 || true; done; }
ALLCPUS=0-$(($(nproc) - 1))
place() {                                        # PIN=1: client+origin on CLIENT_CPUS, the proxy on PROXY_CPUS
  local t=$1 ps=() os=() o
  for o in "${ACTIVE[@]}"; do [ -n "${PPID_OF[$o]:-}" ] && mapfile -t -O "${#ps[@]}" ps < <(tree "${PPID_OF[$o]}"); done
  mapfile -t os < <(tree "$OM")
  if [ "$PIN" != 1 ]; then pin "$ALLCPUS" "${os[@]}" "${ps[@]}"; unset CLIENT_CPUS; return; fi
  export CLIENT_CPUS=$CLIENT_CPUS_PIN
  pin "$PROXY_CPUS" "${ps[@]}"
  if [ "$t" = direct ]; then pin "$PROXY_CPUS" "${os[@]}"; else pin "$CLIENT_CPUS_PIN" "${os[@]}"; fi
}
busy_pct() { { head -1 /proc/stat; sleep 1; head -1 /proc/stat; } |
  awk '{b[NR]=$2+$3+$4+$7+$8; t[NR]=b[NR]+$5+$6} END {printf "%d", (b[2]-b[1])*100/(t[2]-t[1]+1)}'; }
wait_quiet() {                                   # until both cpus together are < 10% busy for 1 s, QUIET_WAIT s at most
  local i b=0
  for ((i = 0; i < QUIET_WAIT; i++)); do b=$(busy_pct); [ "$b" -lt 10 ] && { echo "$i"; return 0; }; done
  log "warning: machine still ${b}% busy after ${QUIET_WAIT}s"; echo "$QUIET_WAIT"
}
measure_target() {                               # measure_target TARGET OUTFILE [DURATION RUNS CONNECT_N]
  local t=$1 o=$2 args=()
  [ -n "${PPID_OF[$t]:-}" ] && args+=(-p "${PPID_OF[$t]}")
  [ -n "${RELAY[$t]:-}" ] && args+=(-r "${RELAY[$t]}")
  DURATION=${3:-$DURATION} RUNS=${4:-$RUNS} CONNECT_N=${5:-$CONNECT_N} "$L/measure.sh" "${args[@]}" "${ADDR[$t]}" > "$o" &
  PIDS+=($!); wait $!
}

for t in "${ACTIVE[@]}"; do
  place "$t"
  log "$t: warm-up"
  measure_target "$t" "$OUT/$t.warmup.txt" 2 1 50
  best=; bestf=; n=0
  for ((try = 1; try <= TRIES; try++)); do
    n=$try
    w=$(wait_quiet)
    log "$t: try $try (waited ${w}s for a quiet machine)"
    measure_target "$t" "$OUT/$t.try$try.txt"
    f=$(awk '/_cpu_foreign / && $2 > m { m = $2 } END { print m + 0 }' "$OUT/$t.try$try.txt")
    log "$t: try $try: foreign CPU max ${f} %core"
    if [ -z "$best" ] || [ "$f" -lt "$bestf" ]; then best=$try; bestf=$f; fi
    [ "$f" -le "$FOREIGN_MAX" ] && break
  done
  { cat "$OUT/$t.try$best.txt"; echo "tries $n count"; echo "quiet_wait $w s"
    [ -n "${FRESH[$t]:-}" ] && echo "rss_fresh ${FRESH[$t]} KiB"; } > "$OUT/$t.txt"
done

# profile of enrollgate under the keep-alive load (perf record -g, top symbols by self time)
if [ "$PROFILE" = 1 ] && [ -n "${PPID_OF[enrollgate]:-}" ] && command -v perf > /dev/null; then
  place enrollgate; log "enrollgate: perf profile under keep-alive load"
  perf record -q -F 999 -g -p "${PPID_OF[enrollgate]}" -o "$OUT/perf.data" -- sleep "$DURATION" > "$OUT/logs/perf.out" 2>&1 &
  PIDS+=($!); pp=$!
  ${CLIENT_CPUS:+taskset -c "$CLIENT_CPUS"} wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$L/proxy.lua" \
      "http://$EG_LISTEN" -- "http://$ORIGIN_HTTP/small" > "$OUT/perf-wrk.txt" 2>&1 || true
  wait "$pp" || true
  perf report -i "$OUT/perf.data" --stdio --no-children --sort symbol -g none --percent-limit 0.3 \
      > "$OUT/perf-enrollgate.txt" 2> /dev/null || true
  perf report -i "$OUT/perf.data" --stdio --no-children --sort dso -g none \
      > "$OUT/perf-enrollgate-dso.txt" 2> /dev/null || true
  echo "# enrollgate profile (perf, self time, keep-alive load): $OUT/perf-enrollgate.txt"
  grep -v '^#' "$OUT/perf-enrollgate.txt" | grep . | head -10 | sed 's/^/#   /'
fi

# (e) the figures: per target, then enrollgate's ratios
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
for s in "${SKIPPED[@]}"; do echo "# skipped $s (not installed)"; done | tee -a "$OUT/machine.txt"
python3 "$L/report.py" "$OUT" "${ACTIVE[@]}" | tee "$OUT/results.txt"
echo "# raw output: $OUT (table: $OUT/table.md)"

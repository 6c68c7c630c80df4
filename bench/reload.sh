#!/usr/bin/env bash
# bench/reload.sh — hot reload under load: the same wrk keep-alive run (small GETs through
# enrollgate to the nginx origin) once without reloads and once with RELOADS reloads spread over
# it (POST /reload, each a full build + self-test + swap of a policy generation). Prints
# "metric value unit" lines: req/s, p50/p99, errors, reloads done/failed, and the p99 ratio.
# env: DURATION=60 RELOADS=100 THREADS=2 CONNS=64 DEPS=1 BUILD=1. Loopback only.
set -euo pipefail
B=$(cd "$(dirname "$0")" && pwd); SRC=$(dirname "$B"); L=$B/lib
DURATION=${DURATION:-60}; RELOADS=${RELOADS:-100}; THREADS=${THREADS:-2}; CONNS=${CONNS:-64}
export RUN=${RUN:-${TMPDIR:-/tmp}/enrollgate-bench-state} CONF=$B/conf
export ORIGIN_PIDFILE=$RUN/nginx.pid
EG_LISTEN=127.0.0.1:28888 EG_ADMIN=127.0.0.1:28898 ORIGIN=127.0.0.1:28080
mkdir -p "$RUN/logs"
log() { echo "[$(date +%T)] $*" >&2; }
exec 9> "$RUN/lock"
flock -n 9 || { echo "bench/reload.sh: another bench run holds $RUN/lock" >&2; exit 1; }

[ "${DEPS:-1}" = 1 ] && "$SRC/scripts/deps.sh" bench >&2
if [ "${BUILD:-1}" = 1 ]; then
  (cd "$SRC" && cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-bench -j2 >/dev/null)
fi
EG=$SRC/build-bench/enrollgate
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$L/origin.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$L/origin.sh" start >/dev/null
"$EG" run -c "$CONF" --listen "$EG_LISTEN" --admin "$EG_ADMIN" 2>"$RUN/logs/reload-bench.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null -x "$EG_LISTEN" "http://$ORIGIN/small" && break; sleep 0.1; done

wrk_run() { # name -> metric lines
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$L/proxy.lua" "http://$EG_LISTEN" -- "http://$ORIGIN/small" |
    awk -v n="$1" '/^WRK/ { printf "reload.%s.rps %s req/s\nreload.%s.p50 %s ms\nreload.%s.p99 %s ms\nreload.%s.errors %d count\n",
      n, $3, n, $5, n, $7, n, $11 + $13 }'
}
log "warm-up"; DURATION=3 wrk_run warmup >/dev/null
log "without reloads (${DURATION}s)"; wrk_run steady | tee "$RUN/reload-steady.txt"
log "with $RELOADS reloads (${DURATION}s)"
gen0=$(curl -s "http://$EG_ADMIN/status" | sed -n 's/.*"generation":\([0-9]*\).*/\1/p')
(
  ok=0 bad=0
  interval=$(echo "$DURATION / ($RELOADS + 1)" | bc -l)
  for _ in $(seq "$RELOADS"); do
    sleep "$interval"
    if curl -sf -o /dev/null -X POST "http://$EG_ADMIN/reload"; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
  done
  echo "$ok $bad" > "$RUN/reload-count.txt"
) &
RP=$!
wrk_run reloading | tee "$RUN/reload-loaded.txt"
wait "$RP"
read -r ok bad < "$RUN/reload-count.txt"
gen1=$(curl -s "http://$EG_ADMIN/status" | sed -n 's/.*"generation":\([0-9]*\).*/\1/p')
echo "reload.reloads_ok $ok count"
echo "reload.reloads_failed $bad count"
echo "reload.generations_advanced $((gen1 - gen0)) count"
awk '{ v[$1] = $2 } END { printf "ratio.reload.p99_with_vs_without %.3f x\nratio.reload.rps_with_vs_without %.3f x\n",
  v["reload.reloading.p99"] / v["reload.steady.p99"], v["reload.reloading.rps"] / v["reload.steady.rps"] }' \
  "$RUN/reload-steady.txt" "$RUN/reload-loaded.txt"

#!/usr/bin/env bash
# bench/reload.sh — hot reload under load: the same wrk keep-alive run (small GETs through
# enrollgate to the nginx origin) without reloads and with RELOADS reloads spread over it (POST
# /reload, each a full build + self-test + swap of a policy generation), ROUNDS times alternating,
# so that drift of a shared machine hits both sides alike. Prints "metric value unit" lines: the
# medians of req/s, p50 and p99, errors, reloads done/failed, generations advanced, the ratios.
# The reloads come from one long-lived Python process (no curl fork per reload, whose start-up
# costs more CPU than the reload itself). PIN=1 (default): wrk and nginx on cpu 0, enrollgate
# (loop and builder thread) and the reload driver on cpu 1, as in bench/run.sh. The driver shares
# the proxy's core, where its CPU counts against the proxy: cpu 0 is full, and anything added
# there slows wrk and nginx whatever the proxy does (with the driver on cpu 0: p99 1.12-1.13x).
# env: DURATION=60 RELOADS=100 ROUNDS=3 THREADS=2 CONNS=64 PIN=1 DEPS=1 BUILD=1. Loopback only.
set -euo pipefail
B=$(cd "$(dirname "$0")" && pwd); SRC=$(dirname "$B"); L=$B/lib
DURATION=${DURATION:-60}; RELOADS=${RELOADS:-100}; ROUNDS=${ROUNDS:-3}; PIN=${PIN:-1}; THREADS=${THREADS:-2}; CONNS=${CONNS:-64}
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
C0=(); C1=()
[ "$PIN" = 1 ] && { C0=(taskset -c 0); C1=(taskset -c 1); }
[ "$PIN" = 1 ] && export ORIGIN_CPUS=0
"$L/origin.sh" start >/dev/null
"${C1[@]}" "$EG" run -c "$CONF" --listen "$EG_LISTEN" --admin "$EG_ADMIN" 2>"$RUN/logs/reload-bench.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null -x "$EG_LISTEN" "http://$ORIGIN/small" && break; sleep 0.1; done

wrk_run() { # name -> metric lines
  "${C0[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$L/proxy.lua" "http://$EG_LISTEN" -- "http://$ORIGIN/small" |
    awk -v n="$1" '/^WRK/ { printf "%s %s %s %s %d\n", n, $3, $5, $7, $11 + $13 }'
}
# RELOADS POSTs to /reload, evenly spread over DURATION seconds; prints "ok failed"
reloader() {
  "${C1[@]}" python3 - "$EG_ADMIN" "$RELOADS" "$DURATION" <<'PY'
import http.client, sys, time
addr, n, dur = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
host, port = addr.rsplit(":", 1)
ok = bad = 0
t0 = time.monotonic()
for i in range(n):
    time.sleep(max(0.0, t0 + dur * (i + 1) / (n + 1) - time.monotonic()))
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("POST", "/reload")
        r = c.getresponse()
        body = r.read()
        ok, bad = (ok + 1, bad) if r.status == 200 and b'"ok"' in body else (ok, bad + 1)
        c.close()
    except OSError:
        bad += 1
print(ok, bad)
PY
}
generation() { curl -s "http://$EG_ADMIN/status" | sed -n 's/.*"generation":\([0-9]*\).*/\1/p'; }

log "warm-up"; DURATION=3 wrk_run warmup >/dev/null
: >"$RUN/reload-rounds.txt"
ok=0 bad=0 gen0=$(generation)
for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS: without reloads (${DURATION}s)"
  wrk_run steady >>"$RUN/reload-rounds.txt"
  log "round $r/$ROUNDS: with $RELOADS reloads (${DURATION}s)"
  reloader >"$RUN/reload-count.txt" &
  RP=$!
  wrk_run reloading >>"$RUN/reload-rounds.txt"
  wait "$RP"
  read -r o b <"$RUN/reload-count.txt"
  ok=$((ok + o)) bad=$((bad + b))
done
gen1=$(generation)
sed 's/^/# round: /' "$RUN/reload-rounds.txt"
python3 - "$RUN/reload-rounds.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    n, rps, p50, p99, err = line.split()
    rows.setdefault(n, []).append((float(rps), float(p50), float(p99), int(err)))
med = {}
for n in ("steady", "reloading"):
    r = rows.get(n, [])
    med[n] = [statistics.median(x[i] for x in r) for i in range(3)] if r else [0, 0, 0]
    print(f"reload.{n}.rps {med[n][0]:.1f} req/s")
    print(f"reload.{n}.p50 {med[n][1]:.3f} ms")
    print(f"reload.{n}.p99 {med[n][2]:.3f} ms")
    print(f"reload.{n}.errors {sum(x[3] for x in r)} count")
if med["steady"][2] and med["steady"][0]:
    print(f"ratio.reload.p99_with_vs_without {med['reloading'][2] / med['steady'][2]:.3f} x")
    print(f"ratio.reload.rps_with_vs_without {med['reloading'][0] / med['steady'][0]:.3f} x")
PY
echo "reload.reloads_ok $ok count"
echo "reload.reloads_failed $bad count"
echo "reload.generations_advanced $((gen1 - gen0)) count"

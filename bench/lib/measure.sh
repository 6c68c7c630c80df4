#!/usr/bin/env bash
# measure.sh — (bench/run.sh runs it once per target) the measurements against one HTTP forward proxy, or
# against the origin itself ("direct"). Prints one "metric value unit" line per metric (see bench/README.md).
# usage: measure.sh [-p PROXY_PID] [-r RELAY_HOST:PORT] PROXY_HOST:PORT|direct
#   -p PID   also report the proxy's RSS and CPU (PID and all its descendants; threads are included)
#   -r ADDR  the proxy cannot CONNECT (haproxy): tunnel and CONNECT-latency tests dial this TCP relay instead
# env: ORIGIN_HTTP=127.0.0.1:28080 ORIGIN_TLS=127.0.0.1:28443 DURATION=10 THREADS=2 CONNS=64 RUNS=5
#      CONNECT_N=1000 CLIENT_CPUS (taskset list for wrk/curl/connect_lat) ORIGIN_PIDFILE (nginx master pid)
#      CONNECT_LAT (compiled lib/connect_lat.c)
set -euo pipefail
H=$(cd "$(dirname "$0")" && pwd)
ORIGIN_HTTP=${ORIGIN_HTTP:-127.0.0.1:28080}; ORIGIN_TLS=${ORIGIN_TLS:-127.0.0.1:28443}
DURATION=${DURATION:-10}; THREADS=${THREADS:-2}; CONNS=${CONNS:-64}; RUNS=${RUNS:-5}; CONNECT_N=${CONNECT_N:-1000}
ORIGIN_PIDFILE=${ORIGIN_PIDFILE:?ORIGIN_PIDFILE not set}; CONNECT_LAT=${CONNECT_LAT:?CONNECT_LAT not set}
PID=; RELAY=
while getopts p:r: o; do case $o in p) PID=$OPTARG ;; r) RELAY=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1)); PROXY=${1:?usage: measure.sh [-p pid] [-r relay_host:port] proxy_host:port|direct}
for a in "$PROXY" "$RELAY" "$ORIGIN_HTTP" "$ORIGIN_TLS"; do              # loopback only, never anything else
  [[ -z $a || $a == direct || $a == 127.* ]] || { echo "measure.sh: refusing non-loopback $a" >&2; exit 2; }
done
CL=(); [ -n "${CLIENT_CPUS:-}" ] && CL=(taskset -c "$CLIENT_CPUS")
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
HZ=$(getconf CLK_TCK)

tree() { local p c; for p; do echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; done; }   # pids + descendants
ppids() { [ -n "$PID" ] && tree "$PID"; return 0; }
opids() { local m; m=$(cat "$ORIGIN_PIDFILE" 2>/dev/null) || return 0; tree "$m"; }
kpids() { pgrep -P 2; }                                                  # kernel threads (children of kthreadd)
ticks() {                                                                # utime+stime of the given pids, in ticks
  local t=0 p s f
  for p; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    read -r -a f <<< "${s##*) }"; t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
# per cpu: busy (user nice system irq softirq), all (busy + idle + iowait), steal (taken by the hypervisor)
cpus() { awk '/^cpu[0-9]/ { b = $2+$3+$4+$7+$8; printf "%d %d %d ", b, b+$5+$6, $9 }' /proc/stat; }
rss() { local s=0 p r; for p in $(ppids); do r=$(ps -o rss= -p "$p" 2>/dev/null | tr -d ' ') && s=$((s + ${r:-0})); done; echo "$s"; }
hwm() { local s=0 p r; for p in $(ppids); do r=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null) && s=$((s + ${r:-0})); done; echo "$s"; }

# measure NAME OUTFILE CMD...: run CMD (on CLIENT_CPUS if set), stdout to OUTFILE; print the CPU used during the run
# in %core (100 = one core busy for the whole run): proxy, origin, client (CMD and its children), kernel threads,
# steal (hypervisor), and foreign = everything else on the machine (the other users of a shared machine: a test with
# a large foreign figure was perturbed); <name>_cpuN_busy = how busy each cpu was (%). Proxy ticks go to $T/proxy_ticks.
measure() {
  local name=$1 out=$2; shift 2
  local c0 p0 o0 k0 t0 c1 p1 o1 k1 t1
  # shellcheck disable=SC2046  # pid lists are split on purpose
  { c0=$(cpus); p0=$(ticks $(ppids)); o0=$(ticks $(opids)); k0=$(ticks $(kpids)); t0=$(date +%s.%N); }
  /usr/bin/time -f '%U %S' -o "$T/time" "${CL[@]}" "$@" > "$out" || true
  # shellcheck disable=SC2046
  { t1=$(date +%s.%N); c1=$(cpus); p1=$(ticks $(ppids)); o1=$(ticks $(opids)); k1=$(ticks $(kpids)); }
  awk -v n="$name" -v hz="$HZ" -v w="$(echo "$t1 - $t0" | bc)" -v p=$((p1 - p0)) -v o=$((o1 - o0)) -v k=$((k1 - k0)) \
      -v c="$(tail -1 "$T/time")" -v a="$c0" -v b="$c1" -v haspid="$PID" 'BEGIN {
    split(c, u, " "); split(a, x, " "); split(b, y, " "); cl = (u[1] + u[2]) * 100 / w; tot = 0; st = 0
    for (i = 1; i < length(x); i += 3) {
      all = y[i+1] - x[i+1] + y[i+2] - x[i+2]; if (all <= 0) all = 1
      busy = (y[i] - x[i]) / all * 100; tot += busy; st += (y[i+2] - x[i+2]) / all * 100
      printf "%s_cpu%d_busy %.0f %%\n", n, (i - 1) / 3, busy }
    pp = p / hz * 100 / w; oo = o / hz * 100 / w; kk = k / hz * 100 / w
    if (haspid != "") printf "%s_cpu_proxy %.0f %%core\n", n, pp
    printf "%s_cpu_origin %.0f %%core\n%s_cpu_client %.0f %%core\n", n, oo, n, cl
    printf "%s_cpu_kernel %.0f %%core\n%s_cpu_steal %.0f %%core\n", n, kk, n, st
    printf "%s_cpu_foreign %.0f %%core\n", n, tot - pp - oo - cl - kk }'
  echo $((p1 - p0)) > "$T/proxy_ticks"
}

[ -n "$PID" ] && echo "rss_idle $(rss) KiB"

# 1+2. small GETs (100 B) through the proxy: keep-alive, then "Connection: close" (new-connection rate)
if [ "$PROXY" = direct ]; then URL=http://$ORIGIN_HTTP; TGT=/small; else URL=http://$PROXY; TGT=http://$ORIGIN_HTTP/small; fi
for mode in keepalive close; do
  extra=(); [ "$mode" = close ] && extra=(close)
  if [ -n "$PID" ] && [ "$mode" = keepalive ]; then
    for p in $(ppids); do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done   # reset VmHWM (peak RSS)
    (sleep "$(echo "$DURATION / 2" | bc -l)"; rss > "$T/rss_mid") &
  fi
  measure "http_$mode" "$T/wrk" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$H/proxy.lua" "$URL" -- "$TGT" "${extra[@]}"
  awk -v m="http_$mode" '/^WRK/ { printf "%s_rps %s req/s\n%s_p50 %s ms\n%s_p99 %s ms\n%s_errors %s count\n%s_non2xx %s count\n",
      m, $3, m, $5, m, $7, m, $11, m, $13 }' "$T/wrk"
  grep -q '^WRK' "$T/wrk" || echo "http_${mode}_failed 1 count"
  [ -n "$PID" ] && awk -v t="$(cat "$T/proxy_ticks")" -v hz="$HZ" -v m="http_$mode" \
      '/^WRK/ && $9 > 0 { printf "%s_proxy_cpu_per_req %.1f us\n", m, t / hz / $9 * 1e6 }' "$T/wrk"
  if [ -n "$PID" ] && [ "$mode" = keepalive ]; then
    wait; echo "rss_load_mid $(cat "$T/rss_mid") KiB"; echo "rss_load_peak $(hwm) KiB"
  fi
done

# 3. 100 MiB downloads: HTTPS through a CONNECT tunnel (or the relay), then plain HTTP through the proxy
stats() { sort -g | awk -v m="$1" '{ v[NR] = $1 } END { if (NR) printf "%s_median %.1f MB/s\n%s_min %.1f MB/s\n%s_max %.1f MB/s\n",
  m, (NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2), m, v[1], m, v[NR] }'; }
tput() {
  local name=$1; shift
  # shellcheck disable=SC2016  # the loop is expanded by the inner bash
  measure "$name" "$T/speeds" bash -c 'for i in $(seq '"$RUNS"'); do
      curl -s -k -o /dev/null -w "%{speed_download} %{size_download}\n" "$@"; echo; done' _ "$@"
  awk -v n="$name" 'NF == 2 && $2 != 104857600 { bad++ } END { printf "%s_bad_size %d count\n", n, bad }' "$T/speeds"
  awk 'NF == 2 && $2 == 104857600 { print $1 / 1e6 }' "$T/speeds" | stats "${name}_tput"
  [ -n "$PID" ] && awk -v t="$(cat "$T/proxy_ticks")" -v hz="$HZ" -v r="$RUNS" -v n="$name" \
      'BEGIN { printf "%s_proxy_cpu %.2f s/GB\n", n, t / hz / (r * 104857600 / 1e9) }'
  return 0
}
if [ "$PROXY" = direct ]; then tput https_tunnel "https://$ORIGIN_TLS/big"
elif [ -n "$RELAY" ]; then tput https_tunnel "https://$RELAY/big"
else tput https_tunnel -x "http://$PROXY" "https://$ORIGIN_TLS/big"; fi
if [ "$PROXY" = direct ]; then tput http_big "http://$ORIGIN_HTTP/big"
else tput http_big -x "http://$PROXY" "http://$ORIGIN_HTTP/big"; fi

# 4. CONNECT_N sequential new connections: [CONNECT +] TCP + TLS 1.3 handshake + GET /small
if [ "$PROXY" = direct ]; then a=("$ORIGIN_TLS"); elif [ -n "$RELAY" ]; then a=("$RELAY"); else a=(-x "$PROXY" "$ORIGIN_TLS"); fi
measure connect_setup "$T/cl" "$CONNECT_LAT" -n "$CONNECT_N" "${a[@]}"
sed 's/^/connect_setup_/' "$T/cl"
[ -n "$PID" ] && awk -v t="$(cat "$T/proxy_ticks")" -v hz="$HZ" \
    '/^ok/ && $2 > 0 { printf "connect_setup_proxy_cpu_per_conn %.1f us\n", t / hz / $2 * 1e6 }' "$T/cl"
[ -n "$PID" ] && echo "rss_end $(rss) KiB"
exit 0

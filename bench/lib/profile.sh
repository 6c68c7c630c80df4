# bench/lib/profile.sh — (sourced by bench/est.sh and bench/cmp.sh) placement, the runs, CPU per
# operation of the processes over a measured run, and an optional perf profile of enrollgate.
#   profile_begin PID SECONDS DIR    before the run: PROFILE=1 starts `perf record` of PID
#                                    (PERF_CG: call-graph option, default -g)
#   profile_end                      after the run: PROFILE=1 prints the top objects and symbols as
#                                    "# profile" lines and copies perf.data to KEEP_PERF if set
#   cpu_per_op METRIC TICKS FILE RATE   prints "METRIC n us": TICKS of CPU over the run divided by
#                                    the operations of the run (the RATE line of FILE times SECS)
#   place direct|relay-core|ca-core CA_PID EG_PID   before a run, PIN=1 (default): the load
#                                    generator on cpu 0 (LOAD_PIN: its taskset prefix); direct: the
#                                    CA on cpu 1; relay-core: the CA beside the load generator on
#                                    cpu 0, enrollgate on cpu 1 (the relay has a core of its own, as a
#                                    proxy has in run.sh); ca-core: enrollgate beside the load
#                                    generator on cpu 0, the CA on cpu 1 (the CA keeps the core it had
#                                    in the direct run). PIN=0: no pinning.
#   measure NAME PLACEMENT URL       one run of the sourcing script's `load NAME URL`, placed; prints
#                                    its lines (kept in W/run.NAME.txt), then BENCH.NAME.ca_cpu_per_OP
#                                    and, through enrollgate, BENCH.NAME.cpu_per_OP (enrollgate's). Needs
#                                    BENCH, OP, RATE (the load's rate metric), CA_PID, EG_PID, W. The
#                                    run named enrollgate_relay_core is the one profiled (PROFILE=1).
#   bench_runs CA_URL EG_URL         the six runs below (measure), then pair_ratios
#   pair_ratios                      after the runs direct, enrollgate_ca_core, enrollgate_relay_core,
#                                    direct_again (THREADS in flight) and direct_1, enrollgate_1 (one
#                                    in flight): each placement's ratio to the mean of the two direct
#                                    runs around them; "best", the higher of the two (on
#                                    two cores one of the three programs must share the load
#                                    generator's core, and the placement where the one that is not the
#                                    bottleneck shares it is the one that resembles three machines);
#                                    added_p50 with one in flight (no queue anywhere) and loaded.
cpu_per_op() {
  awk -v m="$1" -v c="$2" -v k="$4" -v s="$SECS" -v hz="$(getconf CLK_TCK)" '$1 == k { r = $2 }
    END { printf "%s %.0f us\n", m, r ? c / hz / (r * s) * 1e6 : 0 }' "$3"
}
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # utime + stime, in clock ticks

profile_begin() {
  PROFILE_DIR=$3 PROFILE_PERF=
  if [ "${PROFILE:-0}" = 1 ] && command -v perf >/dev/null; then
    # shellcheck disable=SC2086 # PERF_CG holds options
    perf record -e cpu-clock ${PERF_CG:--g} -p "$1" -o "$3/perf.data" -- sleep "$2" >/dev/null 2>&1 &
    PROFILE_PERF=$!
  fi
}

profile_end() {
  [ -n "$PROFILE_PERF" ] || return 0
  wait "$PROFILE_PERF" || true
  perf report -i "$PROFILE_DIR/perf.data" --no-children --sort dso -g none 2>/dev/null | grep '%' | head -n 8 |
    sed 's/^/# profile dso: /' || true
  perf report -i "$PROFILE_DIR/perf.data" --no-children --sort sym -g none 2>/dev/null | grep '%' | head -n 25 |
    sed 's/^/# profile sym: /' || true
  if [ -n "${KEEP_PERF:-}" ]; then cp "$PROFILE_DIR/perf.data" "$KEEP_PERF"; fi
}

LOAD_PIN=()
place() {
  LOAD_PIN=()
  [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] || return 0
  LOAD_PIN=(taskset -c 0)
  case $1 in
    direct) taskset -a -cp 1 "$2" >/dev/null; taskset -a -cp 1 "$3" >/dev/null ;;
    relay-core) taskset -a -cp 0 "$2" >/dev/null; taskset -a -cp 1 "$3" >/dev/null ;;
    ca-core) taskset -a -cp 1 "$2" >/dev/null; taskset -a -cp 0 "$3" >/dev/null ;;
    *) echo "place: $1?" >&2; return 1 ;;
  esac
}

measure() {
  local name=$1 where=$2 url=$3 ca0 eg0 prof=0
  [ "$name" = enrollgate_relay_core ] && prof=1
  place "$where" "$CA_PID" "$EG_PID"
  ca0=$(proc_ticks "$CA_PID") eg0=$(proc_ticks "$EG_PID")
  [ $prof = 1 ] && profile_begin "$EG_PID" "$SECS" "$W"
  log "$name ($where, $THREADS in flight)"
  load "$name" "$url" | tee "$W/run.$name.txt"
  [ $prof = 1 ] && profile_end
  local f=$W/run.$name.txt k=$BENCH.$name.$RATE
  cpu_per_op "$BENCH.$name.ca_cpu_per_$OP" $(($(proc_ticks "$CA_PID") - ca0)) "$f" "$k" | tee -a "$f"
  [ "$where" = direct ] || cpu_per_op "$BENCH.$name.cpu_per_$OP" $(($(proc_ticks "$EG_PID") - eg0)) "$f" "$k" | tee -a "$f"
}

pair_ratios() {
  cat "$W"/run.*.txt | awk -v b="$BENCH" -v r="$RATE" '
    { v[$1] = $2 }
    function ratio(n,   x) {
      if (v[b "." n "." r] == "" || !d) return 0
      x = v[b "." n "." r] / d
      printf "ratio.%s.%s_vs_direct.%s %.3f x\n", b, n, r, x
      return x
    }
    END {
      # the direct rate: the mean of the runs before and after the relayed ones (the machine drifts)
      d = v[b ".direct." r]
      if (v[b ".direct_again." r] != "") d = (d + v[b ".direct_again." r]) / 2
      c = ratio("enrollgate_ca_core"); e = ratio("enrollgate_relay_core")
      printf "ratio.%s.best_vs_direct.%s %.3f x\n", b, r, (c > e ? c : e)
      if (v[b ".direct_1.p50"] != "")
        printf "%s.added_p50 %.2f ms\n", b, v[b ".enrollgate_1.p50"] - v[b ".direct_1.p50"]
      n = c > e ? "enrollgate_ca_core" : "enrollgate_relay_core"
      printf "%s.added_p50_loaded %.2f ms\n", b, v[b "." n ".p50"] - v[b ".direct.p50"]
    }'
}

bench_runs() {
  measure direct direct "$1"
  measure enrollgate_ca_core ca-core "$2"
  measure enrollgate_relay_core relay-core "$2"
  measure direct_again direct "$1"
  THREADS=1 measure direct_1 direct "$1"
  THREADS=1 measure enrollgate_1 ca-core "$2"
  pair_ratios
}

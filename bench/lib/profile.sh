# bench/lib/profile.sh — (sourced by bench/est.sh and bench/cmp.sh) CPU of a process over a
# measured run, and an optional perf profile of it.
#   profile_begin PID SECONDS DIR    before the run: CPU ticks so far; PROFILE=1 starts
#                                    `perf record` (PERF_CG: call-graph option, default -g)
#   profile_end                      after the run: sets PROFILE_TICKS (ticks spent in between);
#                                    PROFILE=1 prints the top objects and symbols as "# profile"
#                                    lines and copies perf.data to KEEP_PERF if set
#   cpu_per_op METRIC TICKS FILE RATE   prints "METRIC n us": TICKS of CPU over the run divided by
#                                    the operations of the run (the RATE line of FILE times SECS)
#   place direct|enrollgate CA_PID EG_PID   before a run, PIN=1 (default) as in bench/run.sh: the
#                                    load generator on cpu 0 (LOAD_PIN: its taskset prefix); direct,
#                                    the CA on cpu 1; through enrollgate, the CA beside the load
#                                    generator on cpu 0 and enrollgate on cpu 1 (the relay gets a core
#                                    of its own, as a proxy does in run.sh). PIN=0: no pinning.
cpu_per_op() {
  awk -v m="$1" -v c="$2" -v k="$4" -v s="$SECS" -v hz="$(getconf CLK_TCK)" '$1 == k { r = $2 }
    END { printf "%s %.0f us\n", m, r ? c / hz / (r * s) * 1e6 : 0 }' "$3"
}
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # utime + stime, in clock ticks

profile_begin() {
  PROFILE_PID=$1 PROFILE_DIR=$3 PROFILE_PERF=
  PROFILE_T0=$(proc_ticks "$1")
  if [ "${PROFILE:-0}" = 1 ] && command -v perf >/dev/null; then
    # shellcheck disable=SC2086 # PERF_CG holds options
    perf record -e cpu-clock ${PERF_CG:--g} -p "$1" -o "$3/perf.data" -- sleep "$2" >/dev/null 2>&1 &
    PROFILE_PERF=$!
  fi
}

profile_end() {
  PROFILE_TICKS=$(( $(proc_ticks "$PROFILE_PID") - PROFILE_T0 ))
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
  taskset -a -cp "$([ "$1" = direct ] && echo 1 || echo 0)" "$2" >/dev/null
  taskset -a -cp 1 "$3" >/dev/null
}

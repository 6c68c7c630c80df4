# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared helpers for the peer end-to-end tests (sourced, not executed).
#
# Every test script is called as:   peer_X.sh EG_BIN SRC_DIR
# and re-executes itself as:        unshare -n -m -- bash peer_X.sh inner EG_BIN SRC_DIR
# so that all servers (some bind every interface) live in a private network namespace with only
# a loopback interface, and /etc/hosts can be replaced by a bind mount (ca.test -> 127.0.0.1)
# without touching the system file.
#
# Proxy selection (environment):
#   PROXY_KIND=enrollgate (default)  run EG_BIN with tests/e2e/conf, wait for /healthz, check access log
#   PROXY_KIND=tinyproxy             run tinyproxy with a generated config (reference forward proxy)
#   PROXY_CMD='...'                  any other proxy: run with bash -c inside the namespace; it must listen
#                                    on 127.0.0.1:$PROXY_PORT (exported); its stderr+stdout go to $PROXY_LOG.
#                                    Log assertions are skipped.
#   KEEP_TMP=1                       keep the scratch directory (path printed at exit)
#   EG_TEST_TIMEOUT=58               hard limit (seconds) for the whole inner run
#
# Exit codes: 0 pass, 1 fail, 77 skipped (not root, no unshare, peer program missing).

PROXY_PORT=3128
ADMIN_PORT=3129
EG_PIDS=()
EG_T=""

eg_log()  { printf '[%s] %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
eg_ok()   { printf 'ok - %s\n' "$*"; }
eg_fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
eg_skip() { printf 'SKIP: %s\n' "$*"; exit 77; }

# eg_enter "$@" -- call first thing in every script. Outside the namespace: checks and re-exec.
# Inside: sets EG_BIN, SRC, EG_T (scratch dir), hosts file, traps.
eg_enter() {
  if [[ "${1:-}" != inner ]]; then
    local p
    [[ $(id -u) -eq 0 ]] || eg_skip "needs root (unshare -n -m)"
    for p in unshare ip ss timeout curl openssl python3 "${EG_NEED[@]}"; do
      command -v "$p" >/dev/null 2>&1 || eg_skip "program not installed: $p"
    done
    if [[ -n "${PROXY_CMD:-}" ]]; then :
    elif [[ "${PROXY_KIND:-enrollgate}" == tinyproxy ]]; then
      command -v tinyproxy >/dev/null 2>&1 || eg_skip "tinyproxy not installed"
    else
      [[ -n "${1:-}" && -x "${1:-}" ]] || eg_fail "usage: $0 ENROLLGATE_BINARY SRC_DIR (binary '${1:-}' not executable)"
    fi
    [[ -n "${2:-}" && -d "${2:-}/tests/e2e" ]] || eg_fail "usage: $0 ENROLLGATE_BINARY SRC_DIR (bad SRC_DIR '${2:-}')"
    unshare -n -m -- true 2>/dev/null || eg_skip "unshare -n -m not permitted here"
    local rc=0
    timeout -k 5 "${EG_TEST_TIMEOUT:-58}" unshare -n -m -- bash "$0" inner "$@" || rc=$?
    [[ $rc -eq 124 ]] && echo "FAIL: timed out after ${EG_TEST_TIMEOUT:-58} s" >&2
    exit "$rc"
  fi
  shift
  EG_BIN=$(realpath -m "${1:-}")
  SRC=$(realpath "$2")
  if [[ -n "${PROXY_CMD:-}" ]]; then PROXY_KIND=cmd; else PROXY_KIND=${PROXY_KIND:-enrollgate}; fi
  # No inherited proxy settings: each client gets exactly the variables the test gives it.
  unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
  EG_T=$(mktemp -d /tmp/eg-peer.XXXXXX)
  # The script's own stdout/stderr, kept on fds 8/9: a signal trap may run while a client's output is
  # redirected to a log file, and the cleanup must still report to the console.
  exec 8>&1 9>&2
  trap eg_cleanup EXIT
  trap 'exit 1' INT TERM
  ip link set lo up
  printf '127.0.0.1 localhost ca.test origin.test denied.example.org\n::1 localhost6\n' >"$EG_T/hosts"
  mount --bind "$EG_T/hosts" /etc/hosts
  # Resolver queries for anything else fail immediately instead of waiting for an unreachable server.
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$EG_T/resolv.conf"
  mount --bind "$EG_T/resolv.conf" /etc/resolv.conf 2>/dev/null || true
  [[ "$(getent hosts ca.test | awk '{print $1; exit}')" == 127.0.0.1 ]] || eg_fail "private hosts file not effective"
  eg_log "scratch dir $EG_T, proxy kind $PROXY_KIND"
}

eg_cleanup() {
  local rc=$? pid i
  set +e  # best effort from here on: a failing kill/tail must not cut the cleanup short
  trap - INT TERM
  exec 1>&8 2>&9
  [[ -n "${EG_CLIENT:-}" ]] && kill -TERM "$EG_CLIENT" 2>/dev/null
  for ((i = ${#EG_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${EG_PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || continue
  done
  for ((i = 0; i < 30; i++)); do
    local alive=0
    for pid in "${EG_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${EG_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [[ $rc -ne 0 && -n "$EG_T" ]]; then
    local f
    for f in "$EG_T"/*.log; do
      [[ -f "$f" ]] || continue
      echo "----- tail of $(basename "$f") -----" >&2
      tail -n 40 "$f" >&2
    done
  fi
  if [[ -n "$EG_T" ]]; then
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then echo "kept $EG_T" >&2; else rm -rf "$EG_T"; fi
  fi
  exit "$rc"
}

# eg_bg LOGNAME CMD...  -- start a background server, output to $EG_T/LOGNAME.log, pid remembered
eg_bg() {
  local name=$1; shift
  "$@" >"$EG_T/$name.log" 2>&1 8>&- 9>&- &
  EG_PIDS+=($!)
  EG_LAST_PID=$!
}

# eg_run SECONDS CMD... -- run a client with a time limit. It runs in the background and the script
# waits for it with the `wait` builtin, so a TERM from the outer timeout is handled at once (cleanup runs).
EG_CLIENT=""
eg_run() {
  local secs=$1 rc=0; shift
  timeout -k 2 "$secs" "$@" 8>&- 9>&- &
  EG_CLIENT=$!
  wait "$EG_CLIENT" || rc=$?
  EG_CLIENT=""
  [[ $rc -eq 124 ]] && eg_log "client timed out after ${secs}s: $1"
  return "$rc"
}

# eg_wait_listen PORT [SECONDS] [PID] -- wait until something listens on TCP PORT (checked with ss, no
# connection is made: some peers are single-threaded and would be disturbed by a probe)
eg_wait_listen() {
  local port=$1 secs=${2:-15} pid=${3:-} i
  for ((i = 0; i < secs * 10; i++)); do
    [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]] && return 0
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then eg_fail "process $pid exited before listening on :$port"; fi
    sleep 0.1
  done
  eg_fail "nothing listening on port $port after ${secs}s"
}

# eg_wait_http URL [SECONDS] [CURL ARGS...] -- wait until URL answers 200
eg_wait_http() {
  local url=$1 secs=${2:-15} i code; shift 2 || shift $#
  for ((i = 0; i < secs * 10; i++)); do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$@" "$url" 2>/dev/null || true)
    [[ "$code" == 200 ]] && return 0
    sleep 0.1
  done
  eg_fail "$url did not answer 200 within ${secs}s (last code '$code')"
}

# eg_start_proxy -- start the proxy under test on 127.0.0.1:$PROXY_PORT, log in $PROXY_LOG
eg_start_proxy() {
  PROXY_LOG=$EG_T/proxy.log
  PROXY_URL=http://127.0.0.1:$PROXY_PORT
  case $PROXY_KIND in
  enrollgate)
    "$EG_BIN" run -c "$SRC/tests/e2e/conf" --listen "127.0.0.1:$PROXY_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
      2>"$PROXY_LOG" >"$EG_T/proxy-stdout.log" 8>&- 9>&- &
    EG_PIDS+=($!)
    EG_PROXY_PID=$!
    local pid=$! i code=
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || eg_fail "enrollgate exited during startup"
      code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz" 2>/dev/null || true)
      [[ "$code" == 200 ]] && break
      sleep 0.1
    done
    [[ "$code" == 200 ]] || eg_fail "enrollgate /healthz did not answer 200 within 10 s (last '$code')"
    ;;
  tinyproxy)
    # Reference forward proxy: host filter equivalent to tests/e2e/conf/policy.lua's local-origin rule.
    printf '%s\n' '^localhost$' '^origin\.test$' '^.*\.test$' '^127\.[0-9]+\.[0-9]+\.[0-9]+$' >"$EG_T/tp-allow.txt"
    cat >"$EG_T/tinyproxy.conf" <<EOF
Port $PROXY_PORT
Listen 127.0.0.1
Allow 127.0.0.1
Timeout 30
MaxClients 64
LogLevel Connect
Filter "$EG_T/tp-allow.txt"
FilterURLs Off
FilterType ere
FilterDefaultDeny Yes
EOF
    tinyproxy -d -c "$EG_T/tinyproxy.conf" >"$PROXY_LOG" 2>&1 8>&- 9>&- &
    EG_PIDS+=($!)
    eg_wait_listen "$PROXY_PORT" 10 $!
    ;;
  cmd)
    export PROXY_PORT ADMIN_PORT PROXY_LOG
    bash -c "$PROXY_CMD" >"$PROXY_LOG" 2>&1 8>&- 9>&- &
    EG_PIDS+=($!)
    eg_wait_listen "$PROXY_PORT" 10 $!
    ;;
  esac
  eg_log "proxy ($PROXY_KIND) up on $PROXY_URL"
}

# eg_access_count COND... -- number of enrollgate access-log records matching all conditions.
#   key=value  field equals value (compared as text: port=14000 matches 14000 and "14000")
#   key~text   field contains text
eg_access_count() {
  python3 - "$PROXY_LOG" "$@" <<'EOF'
import json, sys
log, conds = sys.argv[1], sys.argv[2:]
def txt(v):
    return "" if v is None else (v if isinstance(v, str) else json.dumps(v))
n = 0
with open(log, errors="replace") as f:
    for line in f:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("event") != "access":
            continue
        ok = True
        for c in conds:
            if "~" in c and ("=" not in c or c.index("~") < c.index("=")):
                k, v = c.split("~", 1); ok = v in txt(rec.get(k))
            else:
                k, v = c.split("=", 1); ok = txt(rec.get(k)) == v
            if not ok:
                break
        n += ok
print(n)
EOF
}

# eg_assert_proxied DESCRIPTION TINYPROXY_TEXT COND... -- prove a request went through the proxy:
# enrollgate: an access record matching COND...; tinyproxy: TINYPROXY_TEXT in its log; PROXY_CMD: skipped.
eg_assert_proxied() {
  local what=$1 tp=$2; shift 2
  case $PROXY_KIND in
  enrollgate)
    # the daemon flushes its log every 100 ms: a client that just got its answer may be quicker
    # (the pause also lets the exact counts some tests take after this see every record)
    local n i
    sleep 0.3
    for i in $(seq 20); do
      n=$(eg_access_count "$@")
      [[ "$n" -ge 1 ]] && break
      sleep 0.1
    done
    if [[ "$n" -lt 1 ]]; then
      echo "--- access records in proxy log:" >&2
      grep -F '"access"' "$PROXY_LOG" | tail -n 20 >&2 || true
      eg_fail "proxy log has no access record with $* ($what)"
    fi
    eg_ok "proxy logged $what ($n access record(s) with $*)"
    ;;
  tinyproxy)
    grep -qF -- "$tp" "$PROXY_LOG" || eg_fail "tinyproxy log lacks '$tp' ($what)"
    eg_ok "tinyproxy logged $what ('$tp')"
    ;;
  *) eg_log "log assertion skipped for PROXY_CMD: $what" ;;
  esac
}

# eg_pass -- final checks and line. For enrollgate: SIGTERM after the traffic above must stop it
# cleanly (exit 0 within drain_timeout + margin); warn/error log lines are shown (not fatal).
eg_pass() {
  if [[ $PROXY_KIND == enrollgate ]]; then
    local i rc=0
    kill -TERM "$EG_PROXY_PID" 2>/dev/null || eg_fail "enrollgate died before the end of the test"
    for ((i = 0; i < 60; i++)); do kill -0 "$EG_PROXY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$EG_PROXY_PID" 2>/dev/null && eg_fail "enrollgate still running 6 s after SIGTERM"
    wait "$EG_PROXY_PID" || rc=$?
    [[ $rc -eq 0 ]] || eg_fail "enrollgate exited with $rc after SIGTERM"
    eg_ok "enrollgate stopped cleanly on SIGTERM"
    if grep -E '"level": *"(warn|warning|error|crit|fatal)"' "$PROXY_LOG" >"$EG_T/proxy-warn.txt"; then
      eg_log "note: enrollgate logged $(wc -l <"$EG_T/proxy-warn.txt") warn/error line(s):"
      head -n 10 "$EG_T/proxy-warn.txt" >&2
    fi
  fi
  echo "PASS: $(basename "$0" .sh) via $PROXY_KIND"
}

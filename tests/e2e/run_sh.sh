#!/usr/bin/env bash
# The README's first command, as a user runs it: ./run.sh (deps, build into build/, start with the
# bundled configuration in the foreground), here on free loopback ports. It must answer through the
# proxy with the bundled policy (403 for a host the allowlist does not name) and on /healthz, and
# stop cleanly on SIGTERM. Usage: run_sh.sh SRC_DIR
set -euo pipefail
SRC=$1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
P=$(port) A=$(port)
LOG=$(mktemp)
trap 'kill "$PID" 2>/dev/null || true; rm -f "$LOG"' EXIT
"$SRC/run.sh" --listen "127.0.0.1:$P" --admin "127.0.0.1:$A" >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 1200); do   # the first build can take minutes on a busy two-core machine
  curl -sf -o /dev/null "http://127.0.0.1:$A/healthz" && break
  kill -0 "$PID" 2>/dev/null || { echo "run.sh exited:"; tail -n 30 "$LOG"; exit 1; }
  sleep 0.5
done
curl -sf -o /dev/null "http://127.0.0.1:$A/healthz" || { echo "no /healthz:"; tail -n 30 "$LOG"; exit 1; }
out=$(curl -s -o - -w ' %{http_code}' -x "127.0.0.1:$P" http://evil.example/)
[[ $out == *"not in the allowlist"*" 403" ]] || { echo "expected the bundled policy's 403, got: $out"; exit 1; }
grep -q '"event":"start"' "$LOG" || { echo "no start record"; exit 1; }
kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
[[ $rc -eq 0 ]] || { echo "exit status $rc after SIGTERM"; tail -n 10 "$LOG"; exit 1; }
echo "ok - ./run.sh builds, starts with the bundled configuration, answers 403 for evil.example, exits 0 on SIGTERM"

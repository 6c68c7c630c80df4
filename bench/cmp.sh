#!/usr/bin/env bash
# bench/cmp.sh — CMP transactions per second and latency, directly against the `openssl cmp` mock CA
# and through enrollgate's CMP proxy (MAC check, policy hook, relay), in one run with the same
# message: a MAC-protected genm (one round trip; the mock answers the same message again and again).
# Prints "metric value unit" lines and the ratios; the runs are bench/lib/profile.sh's bench_runs
# (direct, both placements, direct again, then one message in flight). Runs in a private network namespace (the mock binds every interface; needs
# root). env: SECONDS_PER_RUN=10 THREADS=8 PIN=1 DEPS=1 BUILD=1.
# THREADS=8: enough messages in flight to saturate the direct path and the relayed one alike
# (with 2 in flight the relayed run is bound by each exchange's latency, not by anyone's CPU).
set -euo pipefail
B=$(cd "$(dirname "$0")" && pwd); SRC=$(dirname "$B")
# shellcheck source=bench/lib/profile.sh
. "$B/lib/profile.sh"
if [ "${1:-}" != inner ]; then
  [ "${DEPS:-1}" = 1 ] && "$SRC/scripts/deps.sh" test >&2
  if [ "${BUILD:-1}" = 1 ]; then
    (cd "$SRC" && cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-bench -j2 >/dev/null)
  fi
  exec unshare -n -- "$0" inner
fi
ip link set lo up
SECS=${SECONDS_PER_RUN:-10}; THREADS=${THREADS:-8}
PY=/usr/bin/python3; EG=$SRC/build-bench/enrollgate
W=$(mktemp -d "${TMPDIR:-/tmp}/eg-cmp-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
log() { echo "[$(date +%T)] $*" >&2; }

log "test PKI and the mock CA in $W"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key "$W/root.key"
openssl req -x509 -new -key "$W/root.key" -subj /CN=bench-root -days 1 -out "$W/root.crt" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
for n in srv new; do
  key "$W/$n.key"
  openssl req -new -key "$W/$n.key" -subj "/CN=bench-$n" -out "$W/$n.csr"
  openssl x509 -req -in "$W/$n.csr" -CA "$W/root.crt" -CAkey "$W/root.key" -CAcreateserial -days 1 -out "$W/$n.crt" 2>/dev/null
done
openssl cmp -port 8082 -srv_ref 1234 -srv_secret pass:bench1234 -srv_cert "$W/srv.crt" -srv_key "$W/srv.key" \
  -srv_trusted "$W/root.crt" -rsp_cert "$W/new.crt" >"$W/mock.log" 2>&1 &
PIDS+=($!)
mkdir -p "$W/conf"
cp "$SRC/conf/enrollgate.lua" "$SRC/conf/policy.lua" "$W/conf/"
sed -i 's/level = "info"/level = "warn"/' "$W/conf/enrollgate.lua"
cat > "$W/conf/cmp.lua" <<EOF2
return {
  listen = { "127.0.0.1:8829" },
  aliases = { bench = { upstreams = { "http://127.0.0.1:8082/pkix/" }, mac = { ["1234"] = "bench1234" } } },
  on_message = require("policies.cmp").policy{},
}
EOF2
"$EG" check -c "$W/conf" >&2
"$EG" run -c "$W/conf" --listen 127.0.0.1:48999 --admin 127.0.0.1:48998 2>"$W/eg.log" &
PIDS+=($!)
for _ in $(seq 100); do
  [ -n "$(ss -Hltn 'sport = :8082')" ] && [ -n "$(ss -Hltn 'sport = :8829')" ] && break; sleep 0.1
done
# the message: what `openssl cmp` sends for a genm with MAC protection
openssl cmp -server 127.0.0.1:8082 -path pkix/ -cmd genm -ref 1234 -secret pass:bench1234 -recipient /CN=bench-srv \
  -infotype signKeyPairTypes -reqout "$W/genm.der" >"$W/client.log" 2>&1 || { cat "$W/client.log" >&2; exit 1; }

cc -O2 -pthread -o "$W/post_load" "$B/lib/post_load.c" -lssl -lcrypto -lm
load() { "${LOAD_PIN[@]}" "$W/post_load" -u "$2" -t application/pkixcmp -e application/pkixcmp -g -m "cmp.$1" -r tps:tx/s \
  -c "$THREADS" -s "$SECS" "$W/genm.der"; }
log "warm-up"; SECS=2 load warmup http://127.0.0.1:8829/.well-known/cmp/p/bench >/dev/null
echo "# cmp bench: $(nproc) cpus, ${SECS}s per run, $THREADS threads (and 1), PIN=${PIN:-1}, MAC-protected genm, mock CA: openssl cmp -port (one thread)"
BENCH=cmp OP=tx RATE=tps CA_PID=${PIDS[0]} EG_PID=$(pgrep -f "enrollgate run -c $W/conf" | head -n 1)
CA_URL=http://127.0.0.1:8082/pkix/ EG_URL=http://127.0.0.1:8829/.well-known/cmp/p/bench
bench_runs "$CA_URL" "$EG_URL"

#!/usr/bin/env bash
# bench/est.sh — EST enrollments per second and latency, directly against the test EST CA
# (tests/est/estca.py) and through enrollgate's EST registration authority, in one run with the
# same CSR mix (RSA 2048, EC P-256, EC P-384, Ed25519). Prints "metric value unit" lines and the
# ratios. Runs (bench/lib/profile.sh: bench_runs): direct, through enrollgate placed both ways,
# direct again, then both with one enrollment in flight for the added latency without queueing.
# Loopback only. env: SECONDS_PER_RUN=10 THREADS=4 PIN=1 DEPS=1 BUILD=1 (0 skips apt / build).
# The load: bench/lib/post_load.c (with the User-Agent and Accept an EST client such as curl or
# libest sends: the test CA's CPU per request grows with each header it parses).
set -euo pipefail
B=$(cd "$(dirname "$0")" && pwd); SRC=$(dirname "$B")
# shellcheck source=bench/lib/profile.sh
. "$B/lib/profile.sh"
SECS=${SECONDS_PER_RUN:-10}; THREADS=${THREADS:-4}
PY=/usr/bin/python3; ESTCA=$SRC/tests/est/estca.py
W=$(mktemp -d "${TMPDIR:-/tmp}/eg-est-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
log() { echo "[$(date +%T)] $*" >&2; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

[ "${DEPS:-1}" = 1 ] && "$SRC/scripts/deps.sh" test >&2
if [ "${BUILD:-1}" = 1 ]; then
  (cd "$SRC" && cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-bench -j2 >/dev/null)
fi
EG=$SRC/build-bench/enrollgate

log "CA, identities and CSRs in $W"
$PY "$ESTCA" init --dir "$W" >/dev/null
$PY "$ESTCA" issue-client --dir "$W" --cn enrollgate-bench --out "$W/appliance" --password pw-a >/dev/null
$PY "$ESTCA" issue-client --dir "$W" --cn device.bench.example --out "$W/device" --password pw-d >/dev/null
mkdir -p "$W/csrs"
i=0
for k in "RSA -pkeyopt rsa_keygen_bits:2048" "EC -pkeyopt ec_paramgen_curve:prime256v1" \
         "EC -pkeyopt ec_paramgen_curve:secp384r1" "ED25519"; do
  for _ in 1 2; do
    i=$((i + 1))
    # shellcheck disable=SC2086  # the key options are split on purpose
    openssl genpkey -algorithm $k -out "$W/k$i.key" 2>/dev/null
    openssl req -new -key "$W/k$i.key" -subj "/CN=dev$i.bench.example" -addext "subjectAltName=DNS:dev$i.bench.example" \
      -outform DER 2>/dev/null | base64 -w 64 > "$W/csrs/$i.b64"
  done
done

CA_PORT=$(free_port); EST_PORT=$(free_port); ADMIN=$(free_port); PROXY=$(free_port)
$PY "$ESTCA" serve --dir "$W" --port "$CA_PORT" --client-ca "$W/clientca.pem" --ready-file "$W/ready" 2>/dev/null &
PIDS+=($!)
mkdir -p "$W/conf"
cp "$SRC/conf/enrollgate.lua" "$SRC/conf/policy.lua" "$W/conf/"
sed -i 's/level = "info"/level = "warn"/' "$W/conf/enrollgate.lua"
cat > "$W/conf/est.lua" <<EOF
local est = require("policies.est")
return {
  listen = { "127.0.0.1:$EST_PORT" },
  tls = { cert = "$W/server.pem", key = "$W/server.key", device_ca = "$W/clientca.pem" },
  identity = { cert = "$W/appliance.pem", key = "$W/appliance.key", passphrase_file = "$W/appliance.pass" },
  labels = { [""] = { upstreams = { "https://127.0.0.1:$CA_PORT/.well-known/est" }, trust = "$W/ca.pem" } },
  on_enroll = est.policy{ labels = { ["*"] = { cn_in_san = true, dns_under = { "bench.example" } } } },
}
EOF
"$EG" check -c "$W/conf" >&2
"$EG" run -c "$W/conf" --listen "127.0.0.1:$PROXY" --admin "127.0.0.1:$ADMIN" 2>"$W/eg.log" &
EGPID=$!
PIDS+=($EGPID)
for _ in $(seq 100); do [ -e "$W/ready" ] && curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/healthz" && break; sleep 0.1; done

cc -O2 -pthread -o "$W/post_load" "$B/lib/post_load.c" -lssl -lcrypto -lm
load() { # name url
  "${LOAD_PIN[@]}" "$W/post_load" -u "$2/simpleenroll" -t application/pkcs10 -e application/pkcs7-mime -m "est.$1" \
    -r enroll_rps:enroll/s -c "$THREADS" -s "$SECS" -A "$W/ca.pem" -C "$W/device.pem" -K "$W/device.key" \
    -P pw-d -H "User-Agent: est-device/1.0" -H "Accept: */*" "$W"/csrs/*.b64
}
log "warm-up"; SECS=2 load warmup "https://localhost:$EST_PORT/.well-known/est" >/dev/null
echo "# est bench: $(nproc) cpus, ${SECS}s per run, $THREADS threads (and 1), PIN=${PIN:-1}, CSR mix RSA-2048/P-256/P-384/Ed25519; CA: tests/est/estca.py"
BENCH=est OP=enroll RATE=enroll_rps CA_PID=${PIDS[0]} EG_PID=$EGPID
CA_URL=https://localhost:$CA_PORT/.well-known/est EG_URL=https://localhost:$EST_PORT/.well-known/est
bench_runs "$CA_URL" "$EG_URL"

#!/usr/bin/env bash
# fuzz.sh [http|sni|csr|cmp|p7|all] [SECONDS]: build the libFuzzer targets with clang (ASan + UBSan) and fuzz
# the request-head parser, the ClientHello reader, the certification request parser, the CMP
# message parser and/or the reader of EST's certs-only PKCS#7 answers. New inputs go to fuzz/corpus-run/<target>
# (git-ignored); the seed corpus in fuzz/corpus/ is only read. A crash leaves crash-* in the
# current directory and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}" secs="${2:-60}"
scripts/deps.sh test
CC=clang cmake -S . -B build-fuzz -DEG_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_http_head fuzz_sni fuzz_csr fuzz_cmp fuzz_certs_only
run() { # target corpus-name
  mkdir -p "fuzz/corpus-run/$2"
  echo "fuzz: $1 for ${secs}s" >&2
  "build-fuzz/fuzz/$1" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
    "fuzz/corpus-run/$2" "fuzz/corpus/$2"
}
case "$which" in
  http) run fuzz_http_head http ;;
  sni) run fuzz_sni sni ;;
  csr) run fuzz_csr csr ;;
  cmp) run fuzz_cmp cmp ;;
  p7) run fuzz_certs_only p7 ;;
  all) run fuzz_http_head http; run fuzz_sni sni; run fuzz_csr csr; run fuzz_cmp cmp; run fuzz_certs_only p7 ;;
  *) echo "usage: $0 [http|sni|csr|cmp|p7|all] [SECONDS]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# test.sh: install what is missing, build with warnings as errors, run every test (C unit, LuaUnit,
# end-to-end with real peers on loopback) under ctest and print its summary.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh test
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEG_WERROR=ON >/dev/null
cmake --build build-test -j"$(nproc)"
cd build-test
ctest --output-on-failure -j2 "$@"

#!/usr/bin/env bash
# run.sh: install what is missing, build, and run enrollgate in the foreground with the bundled
# configuration (conf/): proxy on 127.0.0.1:48999, admin on 127.0.0.1:48998. Extra args go to `run`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec build/enrollgate run "$@"

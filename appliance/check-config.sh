#!/usr/bin/env bash
# appliance/check-config.sh ENROLLGATE: `enrollgate check` on the configuration the appliance boots
# with: the project's conf/ (policy.lua, ...) overlaid with appliance/rootfs/etc/enrollgate/
# (enrollgate.lua: listeners on all addresses), the way build.sh lays out the image's /etc/enrollgate.
# ctest: appliance_config (quick; the boot test checks the image itself too).
set -euo pipefail
EG=${1:?usage: check-config.sh PATH/TO/enrollgate}
SRC=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp -r "$SRC/conf/." "$dir/"
cp -r "$SRC/appliance/rootfs/etc/enrollgate/." "$dir/"
"$EG" check -c "$dir" --lua-dir "$SRC/lua"
grep -q '"0.0.0.0:48999"' "$dir/enrollgate.lua" || { echo "appliance: the proxy must listen on 0.0.0.0:48999" >&2; exit 1; }
grep -q 'admin *= *"127.0.0.1:48998"' "$dir/enrollgate.lua" || { echo "appliance: the admin API must stay on loopback" >&2; exit 1; }

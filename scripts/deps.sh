#!/usr/bin/env bash
# deps.sh [build|test|bench]: install the Debian packages enrollgate needs, only those missing.
set -euo pipefail
build=(build-essential cmake pkg-config liblua5.4-dev libevent-dev libssl-dev)
test=(lua5.4 lua-unit libcmocka-dev curl openssl python3 python3-cryptography iproute2 util-linux nginx-light
      tinyproxy pebble lego certbot scep clang libclang-rt-14-dev)
bench=(nginx-light wrk tinyproxy squid haproxy bc time gcc libssl-dev)
want=("${build[@]}")
case "${1:-build}" in
  test) want+=("${test[@]}") ;;
  bench) want+=("${test[@]}" "${bench[@]}") ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "deps: installing ${missing[*]}" >&2
$SUDO apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2

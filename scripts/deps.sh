#!/usr/bin/env bash
# deps.sh [build|test|bench|image|image-test]: install the Debian packages enrollgate needs, only
# those missing. image: what building the appliance image needs (file systems and boot loaders on
# plain files: cpio, kmod, squashfs-tools, e2fsprogs, dosfstools, mtools, fdisk, syslinux*,
# fakeroot, xz); image-test: that plus QEMU and OVMF for its boot test. The kernel, busybox and
# runit that go *into* the image are fetched by appliance/build.sh with `apt-get download`.
set -euo pipefail
build=(build-essential cmake pkg-config liblua5.4-dev libevent-dev libssl-dev)
test=(lua5.4 lua-unit libcmocka-dev curl openssl python3 python3-cryptography iproute2 util-linux nginx-light
      tinyproxy pebble lego certbot scep clang libclang-rt-14-dev)
bench=(nginx-light wrk tinyproxy squid haproxy bc time gcc libssl-dev)
image=(cpio kmod squashfs-tools e2fsprogs dosfstools mtools fdisk syslinux syslinux-common syslinux-efi fakeroot xz-utils)
image_test=(qemu-system-x86 ovmf python3)
want=("${build[@]}")
case "${1:-build}" in
  test) want+=("${test[@]}") ;;
  bench) want+=("${test[@]}" "${bench[@]}") ;;
  image) want+=("${image[@]}") ;;
  image-test) want+=("${image[@]}" "${image_test[@]}") ;;
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

#!/usr/bin/env bash
# appliance/build.sh: build the enrollgate appliance disk image from Debian packages, without root
# and without loop devices.
#
#   appliance/build.sh [--test] [--out DIR] [--root-password-hash HASH] [--no-xz]
#
# Produces DIR/enrollgate.img (raw disk: MBR, FAT boot partition with syslinux for BIOS and UEFI,
# squashfs read-only root, ext4 data partition) and DIR/enrollgate.img.xz (what you flash).
# DIR defaults to build-appliance/image (production) or build-appliance/image-test (--test).
#
#   --test                     test image: root shell on the serial console, rescue shell in the
#                              initramfs (never ship it: anyone on ttyS0 is root)
#   --root-password-hash HASH  production: root's password, as a crypt(3) hash (mkpasswd -m sha-512,
#                              openssl passwd -6); without it the console asks for one at first login
#   --no-xz                    skip enrollgate.img.xz (quicker when only booting the raw image)
#
# Steps: enrollgate is built (Release) in build-appliance/enrollgate and installed into a staging
# tree; the kernel, busybox-static and runit packages are fetched with `apt-get download` into
# build-appliance/cache and unpacked with dpkg-deb (the kernel package is never installed: its
# postinst would run update-initramfs on the build host); mkimage.sh assembles the image under
# fakeroot. Nothing outside build-appliance/ is written.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
APP=$SRC/appliance
WORK=${EG_APPLIANCE_WORK:-$SRC/build-appliance}
VARIANT=production
OUT=
PWHASH=
XZ=1
while [ $# -gt 0 ]; do
  case $1 in
    --test) VARIANT="test" ;;
    --out) OUT=$2; shift ;;
    --root-password-hash) PWHASH=$2; shift ;;
    --no-xz) XZ=0 ;;
    -h|--help) sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$VARIANT" = test ] && [ -n "$PWHASH" ]; then
  echo "build.sh: --root-password-hash is for production images" >&2; exit 2
fi
[ -n "$OUT" ] || OUT=$WORK/$([ "$VARIANT" = test ] && echo image-test || echo image)
mkdir -p "$OUT" "$WORK/cache"
OUT=$(cd "$OUT" && pwd)
# one build at a time in a work directory (they share the enrollgate build and the cache)
exec 9>"$WORK/.lock"
flock 9

T0=$(date +%s.%N)
step() { awk -v t0="$T0" -v now="$(date +%s.%N)" -v msg="$*" 'BEGIN { printf "[%5.1fs] %s\n", now - t0, msg }'; }

for tool in cmake flock cpio depmod modprobe mksquashfs mke2fs mkfs.vfat mcopy syslinux sfdisk fakeroot xz dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { echo "build.sh: '$tool' is missing: run scripts/deps.sh image" >&2; exit 1; }
done

# ---- enrollgate: Release build, installed for /usr (bundle in /usr/share, configuration in /etc) ----
step "enrollgate: Release build in ${WORK#"$SRC"/}/enrollgate"
cmake -S "$SRC" -B "$WORK/enrollgate" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DBUILD_TESTING=OFF >/dev/null
cmake --build "$WORK/enrollgate" -j2 >/dev/null
rm -rf "$WORK/install"
DESTDIR=$WORK/install cmake --install "$WORK/enrollgate" >/dev/null
rm -rf "$WORK/install/usr/share/doc"          # the image carries runtime pieces only
strip --strip-unneeded "$WORK/install/usr/sbin/enrollgate"
# the EST/CMP module (core/ra.h): OpenSSL is its dependency, not the executable's
RA_MODULE=$(find "$WORK/install/usr/lib" -name enrollgate-ra.so | head -1)
[ -n "$RA_MODULE" ] || { echo "build.sh: cmake --install left no enrollgate-ra.so" >&2; exit 1; }
strip --strip-unneeded "$RA_MODULE"

# ---- Debian packages that go into the image, cached per version ----
# candidate PKG: the version apt would install.
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}'; }
# apt's package lists may be missing on a fresh machine whose packages are all installed already
if [ -z "$(candidate busybox-static)" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -q >&2
fi
# fetch PKG: print the directory PKG's candidate version is unpacked in (download on first use).
fetch() {
  local pkg=$1 ver dir deb
  ver=$(candidate "$pkg")
  if [ -z "$ver" ]; then
    echo "build.sh: apt knows no candidate for $pkg: run 'apt-get update' (as root)" >&2
    return 1
  fi
  dir=$WORK/cache/$pkg/$ver
  if [ ! -e "$dir/.unpacked" ]; then
    rm -rf "$WORK/cache/$pkg"; mkdir -p "$dir"
    (cd "$WORK/cache/$pkg" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1) ||
      { echo "build.sh: apt-get download $pkg=$ver failed" >&2; return 1; }
    deb=$(ls "$WORK/cache/$pkg"/*.deb)
    dpkg-deb -x "$deb" "$dir/root"
    rm -f "$deb"
    touch "$dir/.unpacked"
  fi
  echo "$dir"
}
# The kernel: the version linux-image-amd64 currently points at (EG_KERNEL_PACKAGE overrides).
KPKG=${EG_KERNEL_PACKAGE:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
[ -n "$KPKG" ] || { echo "build.sh: cannot tell the kernel package: run 'apt-get update' (as root)" >&2; exit 1; }
step "fetch $KPKG busybox-static runit (apt-get download, cached in ${WORK#"$SRC"/}/cache)"
KDIR=$(fetch "$KPKG")
BBDIR=$(fetch busybox-static)
RUNITDIR=$(fetch runit)
KVER=${KPKG#linux-image-}
[ -f "$KDIR/root/boot/vmlinuz-$KVER" ] || { echo "build.sh: $KPKG has no /boot/vmlinuz-$KVER" >&2; exit 1; }

# ---- shared libraries: what ldd says the binaries need, resolved on this (Debian) build host ----
RUNIT_BINS="chpst runsv runsvdir sv svlogd"
LIBS=$WORK/libs.txt
{
  ldd "$WORK/install/usr/sbin/enrollgate"
  ldd "$RA_MODULE"
  for b in $RUNIT_BINS; do ldd "$RUNITDIR/root/usr/bin/$b"; done
} | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u >"$LIBS"

# The release file records what the image is made of; in the image it is
# /usr/lib/enrollgate-appliance/release (sourced by its scripts: shell syntax) and release.txt on
# the boot partition.
MANIFEST=$WORK/release-$VARIANT.txt
{
  echo "ENROLLGATE_VERSION='$("$WORK/install/usr/sbin/enrollgate" version 2>/dev/null | awk '{print $2}')'"
  echo "ENROLLGATE_COMMIT='$(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)'"
  echo "IMAGE_VARIANT='$VARIANT'"
  echo "BUILD_DATE='$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
  echo "KERNEL='$KVER'"
  echo "# Debian packages in the image (package version [files]):"
  for d in "$KDIR" "$BBDIR" "$RUNITDIR"; do echo "#   $(basename "$(dirname "$d")") $(basename "$d")"; done
  while read -r l; do
    p=$(dpkg-query -S "$(readlink -f "$l")" 2>/dev/null | head -1 | cut -d: -f1) || p=
    [ -n "$p" ] || p=$(dpkg-query -S "$l" 2>/dev/null | head -1 | cut -d: -f1) || p=
    echo "#   ${p:-?} $(dpkg-query -W -f='${Version}' "${p:-none}" 2>/dev/null || echo '?') [$l]"
  done <"$LIBS"
} >"$MANIFEST"

# ---- assemble under fakeroot: file owners (root, enrollgate) without being root ----
step "assemble rootfs, initramfs, file systems and disk (${VARIANT} image)"
fakeroot -- "$APP/mkimage.sh" \
  --variant "$VARIANT" --work "$WORK/$VARIANT" --out "$OUT/enrollgate.img" \
  --enrollgate "$WORK/install" --kernel "$KDIR/root" --kver "$KVER" \
  --busybox "$BBDIR/root/bin/busybox" --runit "$RUNITDIR/root/usr/bin" --runit-bins "$RUNIT_BINS" \
  --libs "$LIBS" --manifest "$MANIFEST" --password-hash "$PWHASH"

# The configuration the image boots with must load, exactly as the daemon will load it.
step "enrollgate check on the image's /etc/enrollgate"
"$WORK/enrollgate/enrollgate" check -c "$WORK/$VARIANT/rootfs/etc/enrollgate" \
  --lua-dir "$WORK/$VARIANT/rootfs/usr/share/enrollgate/lua"

rm -f "$OUT/enrollgate.img.xz" "$OUT/enrollgate.img.xz.sha256"
if [ "$XZ" = 1 ]; then
  step "compress enrollgate.img.xz"
  xz -T2 -6 -c "$OUT/enrollgate.img" >"$OUT/enrollgate.img.xz.tmp"
  mv "$OUT/enrollgate.img.xz.tmp" "$OUT/enrollgate.img.xz"
  (cd "$OUT" && sha256sum enrollgate.img.xz >enrollgate.img.xz.sha256)
fi
step "done"
ls -l "$OUT"/enrollgate.img*

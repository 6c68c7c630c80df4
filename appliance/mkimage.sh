#!/usr/bin/env bash
# appliance/mkimage.sh: assemble the appliance disk image from parts build.sh prepared. Runs under
# fakeroot (file owners in the image: root, enrollgate, svlog) and needs no loop device and no
# mount: every file system is made from a directory or written with mtools, then placed into the
# disk file with dd.
#
# Disk layout (MBR, so that one image boots under both BIOS and UEFI):
#   p1  48 MiB  FAT, type ef (EFI system), active: kernel, initramfs, syslinux (BIOS: ldlinux.sys
#               and mbr.bin; UEFI: EFI/BOOT/BOOTX64.EFI = syslinux.efi)
#   p2 128 MiB  squashfs (xz), the read-only root file system
#   p3  64 MiB  ext4 "egdata", mounted at /data: the /etc overlay's upper layer, logs, state
# Sizes are fixed so that a newer image's p1 and p2 fit an older disk's (see docs/appliance.md).
#
# Not meant to be run by hand: see build.sh.
set -euo pipefail

BOOT_MB=48
ROOT_MB=128
DATA_MB=64
EG_UID=900 EG_GID=900      # /etc/passwd in rootfs/ names the same
LOG_UID=901 LOG_GID=901

while [ $# -gt 0 ]; do
  case $1 in
    --variant) VARIANT=$2 ;;
    --work) W=$2 ;;
    --out) OUT=$2 ;;
    --enrollgate) EG=$2 ;;
    --kernel) KROOT=$2 ;;
    --kver) KVER=$2 ;;
    --busybox) BUSYBOX=$2 ;;
    --runit) RUNIT=$2 ;;
    --runit-bins) RUNIT_BINS=$2 ;;
    --libs) LIBS=$2 ;;
    --manifest) MANIFEST=$2 ;;
    --password-hash) PWHASH=$2 ;;
    *) echo "mkimage.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift 2
done
APP=$(cd "$(dirname "$0")" && pwd)
[ -n "${FAKEROOTKEY:-}" ] || [ "$(id -u)" = 0 ] || { echo "mkimage.sh: run it under fakeroot (build.sh does)" >&2; exit 1; }

R=$W/rootfs
rm -rf "$W"
mkdir -p "$W" "$R"

# modfiles LIST: the .ko files (with dependencies) of the modules named in LIST, relative to
# $KROOT. Modules built into this kernel have no file and are skipped.
modfiles() {
  grep -v '^#' "$1" | while read -r m; do
    [ -n "$m" ] || continue
    modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" 2>/dev/null |
      awk '$1 == "insmod" { print $2 }' | sed "s|^${KROOT%/}/||"
  done | sort -u
}
# copy_modules DEST LIST...: those modules into DEST/lib/modules, then depmod there
copy_modules() {
  local dest=$1 f
  shift
  for f in $(cat "$@" | modfiles /dev/stdin); do
    mkdir -p "$dest/$(dirname "$f")"
    cp "$KROOT/$f" "$dest/$f"
  done
  cp "$KROOT/lib/modules/$KVER/modules.order" "$KROOT/lib/modules/$KVER/modules.builtin" \
    "$KROOT/lib/modules/$KVER/modules.builtin.modinfo" "$dest/lib/modules/$KVER/"
  depmod -b "$dest" "$KVER"
}
[ -e "$KROOT/lib/modules/$KVER/modules.dep" ] || depmod -b "$KROOT" "$KVER"

# ---------------------------------------------------------------- root file system
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,proc,sys,dev,run,tmp,data,root,var,mnt}
chmod 0700 "$R/root"
chmod 1777 "$R/tmp"
# /var lives on the data partition (log, lib) or in memory (run, tmp)
ln -s /data/log "$R/var/log"
ln -s /data/lib "$R/var/lib"
ln -s /run "$R/var/run"
ln -s /run/lock "$R/var/lock"
ln -s /tmp "$R/var/tmp"

# busybox (Debian's busybox-static) and its applets
install -m 0755 "$BUSYBOX" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list-full); do
  [ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /bin/busybox "$R/$a"
done

# enrollgate as `cmake --install` laid it out: /usr/sbin/enrollgate, /usr/share/enrollgate/lua,
# /etc/enrollgate/{enrollgate.lua,policy.lua,est.lua.example,cmp.lua.example}
cp -a "$EG/." "$R/"
# runit's supervisor and log writer (Debian's runit package; busybox-static has neither)
for b in $RUNIT_BINS; do install -m 0755 "$RUNIT/$b" "$R/usr/bin/$b"; done
# shared libraries, at the paths ldd resolved them to (the loader's default search path)
while read -r l; do
  mkdir -p "$R$(dirname "$l")"
  cp -L "$l" "$R$l"
done <"$LIBS"

# The initramfs's storage and file-system modules are loaded before the switch and stay loaded:
# the root carries only the others (network, ...), with whatever they depend on.
copy_modules "$R" "$APP/modules-rootfs.txt"

# the project's overlay: init scripts, services, network, users, the appliance's enrollgate.lua
cp -a "$APP/rootfs/." "$R/"
mkdir -p "$R"/etc/network/if-{pre-up,up,down,post-down}.d "$R/etc/service" "$R/etc/enrollgate/keys"
ln -s /run/resolv.conf "$R/etc/resolv.conf"
ln -s /run/issue "$R/etc/issue"
ln -s /proc/mounts "$R/etc/mtab"
echo "UTC0" >"$R/etc/TZ"
# services runsvdir starts; their runsv control files live in /run (the root is read-only)
for s in enrollgate syslogd klogd; do
  ln -s "/etc/sv/$s" "$R/etc/service/$s"
  ln -s "/run/runit/supervise.$s" "$R/etc/sv/$s/supervise"
done
for s in enrollgate syslogd; do
  ln -s "/run/runit/supervise.$s-log" "$R/etc/sv/$s/log/supervise"
done

{
  cat "$MANIFEST"
  # an update may write a newer image's first UPDATE_BYTES over the disk only if LAYOUT is the same
  echo "LAYOUT='mbr:1M boot:${BOOT_MB}M root:${ROOT_MB}M data:${DATA_MB}M'"
  echo "UPDATE_BYTES=$(((1 + BOOT_MB + ROOT_MB) * 1024 * 1024))"
} >"$R/usr/lib/enrollgate-appliance/release"
if [ -n "$PWHASH" ]; then
  case $PWHASH in *:*) echo "mkimage.sh: a password hash has no ':'" >&2; exit 2 ;; esac
  sed -i "s|@ROOT_PASSWORD@|$(printf '%s' "$PWHASH" | sed 's/[|&\\]/\\&/g')|" "$R/etc/shadow"
else
  sed -i 's|@ROOT_PASSWORD@|!|' "$R/etc/shadow"      # locked: the first console login sets it
fi

# Owners and modes. Everything is root's but what the daemon needs: its configuration directory
# is readable by its group and writable by root only; keys/ is its own, readable by nobody else.
chown -R 0:0 "$R"
chown 0:"$EG_GID" "$R/etc/enrollgate"
chmod 0750 "$R/etc/enrollgate"
chmod 0644 "$R"/etc/enrollgate/*.lua*
chown "$EG_UID:$EG_GID" "$R/etc/enrollgate/keys"
chmod 0700 "$R/etc/enrollgate/keys"
chmod 0600 "$R/etc/shadow"

# ---------------------------------------------------------------- boot initramfs
# busybox, the storage and file-system modules, /init. It only finds and mounts the disk.
I=$W/initramfs
mkdir -p "$I"/{bin,dev,proc,sys,newroot,etc}
install -m 0755 "$BUSYBOX" "$I/bin/busybox"
for a in sh mount umount switch_root modprobe sleep hexdump mkdir cat cut rm sync reboot date echo; do
  ln -s busybox "$I/bin/$a"
done
copy_modules "$I" "$APP/modules-initrd.txt"
grep -v '^#' "$APP/modules-initrd.txt" | sed '/^$/d' >"$I/etc/modules"
echo "VARIANT=$VARIANT" >"$I/etc/variant"
install -m 0755 "$APP/initramfs/init" "$I/init"
chown -R 0:0 "$I"
# xz with CRC32: the only check the kernel's own xz decoder knows
(cd "$I" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | xz --check=crc32 -9 >"$W/initrd.xz"

# ---------------------------------------------------------------- file systems
mksquashfs "$R" "$W/root.sqfs" -noappend -comp xz -Xbcj x86 -b 1M -no-progress -quiet
ROOT_BYTES=$(stat -c %s "$W/root.sqfs")
if [ "$ROOT_BYTES" -gt $((ROOT_MB * 1024 * 1024)) ]; then
  echo "mkimage.sh: the root file system ($ROOT_BYTES bytes) outgrew its $ROOT_MB MiB partition" >&2
  exit 1
fi

# data: empty but for the overlay's directories; rcS creates the rest at boot
D=$W/data
mkdir -p "$D/etc/upper" "$D/etc/work" "$D/log/enrollgate" "$D/log/system" "$D/lib/enrollgate"
chown -R 0:0 "$D"
chown "$LOG_UID:$LOG_GID" "$D/log/enrollgate" "$D/log/system"
chmod 0750 "$D/log/enrollgate" "$D/log/system"
chown "$EG_UID:$EG_GID" "$D/lib/enrollgate"
chmod 0700 "$D/lib/enrollgate"
truncate -s "${DATA_MB}M" "$W/data.ext4"
mke2fs -q -t ext4 -L egdata -m 1 -d "$D" "$W/data.ext4"

# boot partition: the same syslinux.cfg serves syslinux (BIOS) and syslinux.efi (UEFI)
DISKSIG=0x$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
ALLOWOPTIONS=0     # production: kernel options cannot be typed at the boot prompt (init=/bin/sh)
[ "$VARIANT" = test ] && ALLOWOPTIONS=1
cat >"$W/syslinux.cfg" <<EOF
# syslinux (BIOS) and syslinux.efi (UEFI), on the screen and the serial console. The "boot:" prompt
# waits 2 s, then boots "enrollgate"; typing "factory-reset" there erases every change to /etc
# first (a key pressed stops the countdown; TOTALTIMEOUT still boots after 60 s).
SERIAL 0 115200
SAY enrollgate appliance: Enter boots now; "factory-reset" erases all settings first.
PROMPT 1
TIMEOUT 20
TOTALTIMEOUT 600
ALLOWOPTIONS $ALLOWOPTIONS
DEFAULT enrollgate
LABEL enrollgate
  LINUX /vmlinuz
  INITRD /initrd.xz
  APPEND console=tty0 console=ttyS0,115200 quiet enrollgate.disk=$DISKSIG
LABEL factory-reset
  LINUX /vmlinuz
  INITRD /initrd.xz
  APPEND console=tty0 console=ttyS0,115200 quiet enrollgate.disk=$DISKSIG enrollgate.factory_reset=1
EOF
export MTOOLS_SKIP_CHECK=1
truncate -s "${BOOT_MB}M" "$W/boot.fat"
mkfs.vfat -n EGBOOT -h 2048 "$W/boot.fat" >/dev/null
mcopy -i "$W/boot.fat" "$KROOT/boot/vmlinuz-$KVER" ::/vmlinuz
mcopy -i "$W/boot.fat" "$W/initrd.xz" "$W/syslinux.cfg" ::/
mcopy -i "$W/boot.fat" "$R/usr/lib/enrollgate-appliance/release" ::/release.txt
syslinux --install "$W/boot.fat"
mmd -i "$W/boot.fat" ::/EFI ::/EFI/BOOT
mcopy -i "$W/boot.fat" /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$W/boot.fat" /usr/lib/syslinux/modules/efi64/ldlinux.e64 "$W/syslinux.cfg" ::/EFI/BOOT/

# ---------------------------------------------------------------- the disk
rm -f "$OUT"
truncate -s $((1 + BOOT_MB + ROOT_MB + DATA_MB))M "$OUT"
sfdisk -q "$OUT" <<EOF
label: dos
label-id: $DISKSIG
start=1MiB, size=${BOOT_MB}MiB, type=ef, bootable
size=${ROOT_MB}MiB, type=83
size=${DATA_MB}MiB, type=83
EOF
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$OUT" bs=440 count=1 conv=notrunc status=none
dd if="$W/boot.fat" of="$OUT" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$W/root.sqfs" of="$OUT" bs=1M seek=$((1 + BOOT_MB)) conv=notrunc,sparse status=none
dd if="$W/data.ext4" of="$OUT" bs=1M seek=$((1 + BOOT_MB + ROOT_MB)) conv=notrunc,sparse status=none

printf 'mkimage.sh: %s (disk signature %s): kernel %s, initramfs %s, root %s, data %s bytes\n' \
  "$OUT" "$DISKSIG" "$(stat -c %s "$KROOT/boot/vmlinuz-$KVER")" "$(stat -c %s "$W/initrd.xz")" \
  "$ROOT_BYTES" "$(du -B1 "$W/data.ext4" | cut -f1)"

#!/usr/bin/env bash
# Builds a Debian 12 (bookworm) cloud image from Debian packages only: a
# real distribution with systemd, Debian's own cloud-init (its OpenStack
# datasource finds our metadata by SMBIOS "OpenStack Nova" and reads
# 169.254.169.254 or the config drive), ifupdown with dhclient, and
# OpenSSH. cloud-init's default user is `debian` (sudo without password);
# it installs the instance's key, sets the hostname and runs user data.
#
#   scripts/build-debian-image.sh     # prints the qcow2's path as its last line
#
# The image is built once and cached (FERRO_GUEST_DIR, default
# ~/.cache/ferrostack/guest): mmdebstrap fetches the packages from the
# machine's Debian mirror (http://deb.debian.org/debian unless DEBIAN_MIRROR
# says otherwise); the root file system is made with `mke2fs -d` and the
# disk boots with syslinux, so no loop device or mount is needed. Takes a
# few minutes; the image is about 350 MiB.
set -euo pipefail
trap 'echo "build-debian-image.sh: line $LINENO: exit status $?" >&2' ERR
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${FERRO_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrostack/guest}
mkdir -p "$OUT"
exec 9> "$OUT/.build-debian.lock"
flock 9

source "$REPO/scripts/lib.sh"
[ "$(id -u)" = 0 ] || { echo "build-debian-image.sh runs as root (mmdebstrap's root mode)" >&2; exit 1; }
ferro_need mmdebstrap mmdebstrap
ferro_need mke2fs e2fsprogs
ferro_need mkfs.vfat dosfstools
ferro_need mcopy mtools
ferro_need syslinux syslinux
ferro_need sfdisk fdisk
ferro_need qemu-img qemu-utils
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q syslinux-common > /dev/null

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=linux-image-cloud-amd64,initramfs-tools,systemd-sysv,udev,dbus,cloud-init,cloud-guest-utils,openssh-server,ifupdown,isc-dhcp-client,sudo,iproute2,iputils-ping,netbase,procps,e2fsprogs,less,locales
STAMP=$( (echo "$SUITE $MIRROR $PACKAGES"; cat "$0") | sha256sum | cut -c1-16)
IMG=$OUT/ferro-debian-$STAMP.qcow2
if [ -f "$IMG" ]; then
  echo "$IMG"
  exit 0
fi

W=$(mktemp -d "$OUT/build-debian.XXXXXX")
trap 'rm -rf "$W"' EXIT
R=$W/root
# What a cloud image needs on top of the packages: no host keys or machine
# id baked in (each instance makes its own), the root file system by label,
# the en_US.UTF-8 locale cloud-init sets already generated, and cloud-init
# asked to look for OpenStack (config drive first) and to keep /etc/hosts
# naming the instance (as Debian's own cloud images do).
mmdebstrap --mode=root --variant=minbase --include="$PACKAGES" \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook=': > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
  --customize-hook='echo "LABEL=debian-root / ext4 defaults,errors=remount-ro 0 1" > "$1/etc/fstab"' \
  --customize-hook='echo debian > "$1/etc/hostname"' \
  --customize-hook='printf "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n" > "$1/etc/network/interfaces"' \
  --customize-hook='echo "en_US.UTF-8 UTF-8" > "$1/etc/locale.gen"; chroot "$1" locale-gen > /dev/null; chroot "$1" update-locale LANG=en_US.UTF-8' \
  --customize-hook='printf "datasource_list: [ ConfigDrive, OpenStack, None ]\nmanage_etc_hosts: true\n" > "$1/etc/cloud/cloud.cfg.d/90_ferrostack.cfg"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  "$SUITE" "$R" "$MIRROR" > "$W/mmdebstrap.log" 2>&1 || { tail -30 "$W/mmdebstrap.log" >&2; exit 1; }

KERNEL=$(ls "$R"/boot/vmlinuz-* | sort -V | tail -1)
INITRD=$(ls "$R"/boot/initrd.img-* | sort -V | tail -1)
[ -f "$KERNEL" ] && [ -f "$INITRD" ] || { echo "no kernel or initramfs in the root file system" >&2; exit 1; }

# The root file system: what is there plus room to work in.
USED_MB=$(du -sm "$R" | cut -f1)
ROOT_MB=$(( USED_MB * 13 / 10 + 512 ))
truncate -s "${ROOT_MB}M" "$W/root.raw"
mke2fs -q -t ext4 -L debian-root -d "$R" "$W/root.raw"
BOOT_START=2048; BOOT_SECTORS=$((96 * 2048))
ROOT_START=$((BOOT_START + BOOT_SECTORS)); ROOT_SECTORS=$(( $(stat -c %s "$W/root.raw") / 512 ))
mkfs.vfat -h "$BOOT_START" -n BOOT -C "$W/boot.fat" $((BOOT_SECTORS / 2)) > /dev/null
cat > "$W/syslinux.cfg" <<CFG
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  APPEND initrd=initrd.img root=LABEL=debian-root ro console=tty0 console=ttyS0
CFG
mcopy -i "$W/boot.fat" "$KERNEL" ::vmlinuz
mcopy -i "$W/boot.fat" "$INITRD" ::initrd.img
mcopy -i "$W/boot.fat" "$W/syslinux.cfg" ::syslinux.cfg
syslinux --install "$W/boot.fat"
truncate -s $(( (ROOT_START + ROOT_SECTORS + 2048) * 512 )) "$W/disk.raw"
sfdisk -q "$W/disk.raw" <<PT
label: dos
start=$BOOT_START, size=$BOOT_SECTORS, type=6, bootable
start=$ROOT_START, type=83
PT
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$W/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$W/boot.fat" of="$W/disk.raw" bs=512 seek="$BOOT_START" conv=notrunc,sparse status=none
dd if="$W/root.raw" of="$W/disk.raw" bs=512 seek="$ROOT_START" conv=notrunc,sparse status=none
qemu-img convert -q -f raw -O qcow2 -c "$W/disk.raw" "$IMG.tmp"
mv "$IMG.tmp" "$IMG"
echo "$IMG"

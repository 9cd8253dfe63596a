#!/usr/bin/env bash
# Builds the project's test guest image from Debian packages only: a
# cirros-like whole-disk qcow2 (MBR + syslinux on a FAT boot partition with
# Debian's cloud kernel and an initramfs, and an ext4 root partition with
# busybox, dropbear and scripts/guest/init). No loop device, mount or
# network access beyond Debian's archive is needed. What the guest does at
# boot is described at the top of scripts/guest/init.
#
#   scripts/build-guest-image.sh          prints the image's path as its last line
#
# Beside it (same name, other suffixes): `.vmlinuz`, `.initrd.gz` and
# `.root.qcow2`, the same guest as kernel, ramdisk and root images (Glance's
# AKI/ARI/AMI, booted with `-kernel`: no bootloader, ~2.5 s faster).
#
# Upload it as a new user would:
#   openstack image create --disk-format qcow2 --container-format bare \
#     --file "$(scripts/build-guest-image.sh | tail -1)" ferro-guest
#
# Env: FERRO_GUEST_DIR (default ~/.cache/ferrostack/guest). The image is
# rebuilt only when the kernel or scripts/guest/ changed.
set -euo pipefail
# A failing step says where (set -e alone exits without a word).
trap 'echo "build-guest-image.sh: line $LINENO: exit status $?" >&2' ERR
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${FERRO_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrostack/guest}
mkdir -p "$OUT"
# One build at a time per cache (tests and scripts may ask at once).
exec 9> "$OUT/.build.lock"
flock 9

# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
need() { ferro_need "$@"; }
need cpio cpio
need mke2fs e2fsprogs
need mkfs.vfat dosfstools
need mcopy mtools
need syslinux syslinux
need sfdisk fdisk
need qemu-img qemu-utils
need dropbear dropbear-bin
need dropbearkey dropbear-bin
need lsblk util-linux
need curl curl
[ -x /bin/busybox ] && /bin/busybox --list | grep -qx udhcpc || need busybox busybox-static
BUSYBOX=$(command -v busybox)
file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked" || {
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static > /dev/null 2>&1
  BUSYBOX=/bin/busybox
}
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || need syslinux syslinux-common
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || { [ "$(id -u)" = 0 ] && apt-get install -y -q syslinux-common > /dev/null 2>&1; }

# Debian's cloud kernel, unpacked (not installed).
KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -n 1 || true)
[ -n "$KPKG" ] || { apt-get update -q > /dev/null 2>&1; KPKG=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -n 1 || true); }
[ -n "$KPKG" ] || { echo "cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
KVER=${KPKG#linux-image-}
KROOT=$OUT/kernel-$KVER
if [ ! -f "$KROOT/boot/vmlinuz-$KVER" ]; then
  rm -rf "$KROOT.tmp"; mkdir -p "$KROOT.tmp"
  (cd "$KROOT.tmp" && apt-get download -q "$KPKG" > /dev/null 2>&1)
  dpkg-deb -x "$KROOT.tmp"/*.deb "$KROOT.tmp/root"
  rm -rf "$KROOT"; mv "$KROOT.tmp/root" "$KROOT"; rm -rf "$KROOT.tmp"
fi

# sed, not head: head's early exit would kill busybox with SIGPIPE (status
# 141 under pipefail) whenever busybox writes after head has left.
STAMP=$( (echo "$KVER"; cat "$REPO"/scripts/guest/* "$0"; "$BUSYBOX" | sed -n 1p) | sha256sum | cut -c1-16)
IMG=$OUT/ferro-guest-$STAMP.qcow2
if [ -f "$IMG" ]; then
  echo "$IMG"
  exit 0
fi

W=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$W"' EXIT
busybox_tree() {   # busybox_tree DIR: busybox and its applet links
  mkdir -p "$1"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run}
  cp "$BUSYBOX" "$1/bin/busybox"
  for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"
  done
}

# initramfs: busybox, the modules, stage 1 of init.
I=$W/initramfs; busybox_tree "$I"; mkdir -p "$I/lib/modules"
M=$KROOT/lib/modules/$KVER/kernel
for k in drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko \
         drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko \
         drivers/virtio/virtio_pci.ko net/core/failover.ko drivers/net/net_failover.ko \
         drivers/net/virtio_net.ko drivers/block/virtio_blk.ko drivers/char/hw_random/virtio-rng.ko \
         drivers/cdrom/cdrom.ko fs/isofs/isofs.ko drivers/acpi/button.ko drivers/input/evdev.ko \
         drivers/scsi/scsi_common.ko drivers/scsi/scsi_mod.ko drivers/ata/libata.ko \
         drivers/ata/ata_piix.ko drivers/scsi/sr_mod.ko \
         drivers/scsi/sd_mod.ko drivers/scsi/virtio_scsi.ko \
         fs/fat/fat.ko fs/fat/vfat.ko fs/nls/nls_cp437.ko fs/nls/nls_ascii.ko; do
  cp "$M/$k" "$I/lib/modules/"
done
install -m 0755 scripts/guest/init "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -9) > "$W/initrd.gz"

# root file system: busybox, dropbear and lsblk with their libraries, init, user cirros.
R=$W/root; busybox_tree "$R"; mkdir -p "$R"/{home/cirros,etc/dropbear,run/config,lib64,root,mnt}
install -m 0755 scripts/guest/init "$R/sbin/init"
install -m 0755 scripts/guest/udhcpc.script "$R/etc/udhcpc.script"
touch "$R/etc/ferrostack-root"
# lsblk (util-linux, on every Debian): Tempest's remote client lists the
# guest's disks with it. curl: Tempest reads the metadata service with it
# (tagged devices, hostnames), as in cirros.
# blkid (util-linux; busybox's lacks -L): it finds the config drive by its
# label (`blkid -L config-2 -o device`).
for b in "$(command -v dropbear)" "$(command -v dropbearkey)" "$(command -v lsblk)" \
    "$(command -v curl)" "$(command -v blkid)"; do
  case "$b" in */lsblk|*/curl) cp "$b" "$R/usr/bin/" ;; *) cp "$b" "$R/usr/sbin/" ;; esac
  for lib in $(ldd "$b" | grep -o '/[^ ]*'); do
    mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"
  done
done
# The test user is root under another name (as in many test images), so
# the `sudo` that Tempest's remote client runs is a shim.
cat > "$R/etc/passwd" <<PW
root:x:0:0:root:/root:/bin/sh
cirros:x:0:0:cirros:/home/cirros:/bin/sh
PW
cat > "$R/etc/shadow" <<PW
root:*:19000:0:99999:7:::
cirros:*:19000:0:99999:7:::
PW
printf 'root:x:0:\n' > "$R/etc/group"
printf '/bin/sh\n' > "$R/etc/shells"
cat > "$R/usr/bin/sudo" <<'SUDO'
#!/bin/sh
# The test user is uid 0: run the command as it is.
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
exec "$@"
SUDO
chmod 0755 "$R/usr/bin/sudo"
# `mkfs -t TYPE` (what Tempest's remote client runs) over busybox's makers.
cat > "$R/sbin/mkfs" <<'MKFS'
#!/bin/sh
t=ext2
while [ $# -gt 0 ]; do case "$1" in -t) t=$2; shift 2 ;; *) break ;; esac; done
case "$t" in
  vfat|fat|msdos) exec mkdosfs "$@" ;;
  ext2) exec mke2fs "$@" ;;
  *) echo "mkfs: $t is not supported here (vfat, ext2)" >&2; exit 1 ;;
esac
MKFS
chmod 0755 "$R/sbin/mkfs"
printf '#!/bin/sh\nexec mkdosfs "$@"\n' > "$R/sbin/mkfs.vfat"
chmod 0755 "$R/sbin/mkfs.vfat"
echo "ferrostack test guest ($(date -u +%F))" > "$R/etc/issue"
chmod 0700 "$R/root"

# Whole disk: p1 FAT (syslinux, kernel, initrd), p2 ext4 root.
truncate -s 96M "$W/root.raw"
mke2fs -q -t ext4 -L cirros-rootfs -d "$R" "$W/root.raw"
BOOT_START=2048; BOOT_SECTORS=$((48 * 2048))
ROOT_START=$((BOOT_START + BOOT_SECTORS)); ROOT_SECTORS=$(( $(stat -c %s "$W/root.raw") / 512 ))
mkfs.vfat -h "$BOOT_START" -n BOOT -C "$W/boot.fat" $((BOOT_SECTORS / 2)) > /dev/null
cat > "$W/syslinux.cfg" <<CFG
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  APPEND initrd=initrd.gz root=/dev/vda2 console=tty0 console=ttyS0 loglevel=3
CFG
mcopy -i "$W/boot.fat" "$KROOT/boot/vmlinuz-$KVER" ::vmlinuz
mcopy -i "$W/boot.fat" "$W/initrd.gz" ::initrd.gz
mcopy -i "$W/boot.fat" "$W/syslinux.cfg" ::syslinux.cfg
syslinux --install "$W/boot.fat"
truncate -s $(( (ROOT_START + ROOT_SECTORS + 2048) * 512 )) "$W/disk.raw"
sfdisk -q "$W/disk.raw" <<PT
label: dos
start=$BOOT_START, size=$BOOT_SECTORS, type=6, bootable
start=$ROOT_START, size=$ROOT_SECTORS, type=83
PT
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$W/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$W/boot.fat" of="$W/disk.raw" bs=512 seek="$BOOT_START" conv=notrunc,sparse status=none
dd if="$W/root.raw" of="$W/disk.raw" bs=512 seek="$ROOT_START" conv=notrunc,sparse status=none
# The same guest as Glance's AKI/ARI/AMI trio (kernel_id/ramdisk_id images
# and a root file system), which boots without the bootloader.
cp "$KROOT/boot/vmlinuz-$KVER" "${IMG%.qcow2}.vmlinuz"
cp "$W/initrd.gz" "${IMG%.qcow2}.initrd.gz"
qemu-img convert -q -f raw -O qcow2 -c "$W/root.raw" "${IMG%.qcow2}.root.qcow2"
qemu-img convert -q -f raw -O qcow2 -c "$W/disk.raw" "$IMG.tmp"
mv "$IMG.tmp" "$IMG"
echo "$IMG"

#!/usr/bin/env bash
# Volume transports benchmark (issue 20): one TCG guest of the project's
# image; a local file volume, an NBD volume (qemu-storage-daemon, TLS-PSK)
# and an iSCSI volume (tgt, CHAP; QEMU's initiator) hot-plugged in turn
# through the QEMU driver: attach call -> the disk seen in the guest, and a
# 64 MiB sequential write with fsync inside the guest, beside the same write
# to a file in the volumes' directory on the host, measured in the same run.
# The exports go over loopback; the guest's emulated CPU (TCG here) bounds
# what it can write.
#
#   scripts/bench-volumes.sh
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "runs as root (guests under their own uids, tgtd)" >&2; exit 1; }
for c in qemu-system-x86_64:qemu-system-x86 genisoimage:genisoimage tgtd:tgt \
         qemu-storage-daemon:qemu-system-common qemu-img:qemu-utils; do
  ferro_need "${c%%:*}" "${c#*:}" || exit 1
done
ferro_need_file /usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so qemu-block-extra || exit 1
cd "$REPO" || exit 1
FERRO_REQUIRE_DEPS=1 cargo test -q -p ferrostack --test guest_image -- \
  --ignored --exact volume_transports_benchmark --nocapture 2>&1 |
  grep -vE '^(running|test result|$)'
exit "${PIPESTATUS[0]}"

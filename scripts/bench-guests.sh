#!/usr/bin/env bash
# Real-guest boot benchmark: ferrostack's QEMU driver beside the data-plane
# prototype (../shared/reference/dataplane), measured in the same run with the
# same Debian cloud kernel and guest init (booted with -kernel, as the
# prototype boots it).
#   prototype:  QEMU start -> METADATA-OK for 1 guest (02) and for N at once (08)
#   ferrostack: create -> ACTIVE, create -> QEMU exec (host-side overhead),
#               create -> the INSTANCE-UUID line on the console; first boot of an
#               image (download + cache) and second boot (overlay only); N at
#               once; ferrostack's RSS with N guests.
# Targets (issue 16): second boot's API call -> QEMU exec <= 100 ms; create -> uuid
# line <= 1.1x the prototype's QEMU start -> metadata.
#
#   scripts/bench-guests.sh            N=5 FERRO_VIRT_TYPE=qemu FERRO_PROFILE (lib.sh)
source "$(dirname "$0")/lib.sh"
N="${N:-5}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-bench-guests.XXXXXX")"
DP="$(cd "$REPO/../shared/reference/dataplane" 2>/dev/null && pwd)" || DP=""
cleanup() {
  local rc=$?
  ferro_stop
  ferro_kill_guests "$work/data"
  [ -d "$work/dp" ] && DP_WORK="$work/dp" bash "$DP/cleanup.sh" > /dev/null 2>&1
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
for c in qemu-system-x86_64:qemu-system-x86 genisoimage:genisoimage qemu-img:qemu-utils; do
  ferro_need "${c%%:*}" "${c#*:}" || exit 1
done
IMG="$(bash "$REPO/scripts/build-guest-image.sh" | tail -1)"
KROOT="$(ls -d "$(dirname "$IMG")"/kernel-* | tail -1)"
KVER="${KROOT##*/kernel-}"

echo "== prototype ($DP), kernel $KVER"
if [ -n "$DP" ] && [ -f "$DP/02-network-dhcp-metadata.sh" ]; then
  for c in dnsmasq:dnsmasq-base cpio:cpio socat:socat nft:nftables; do ferro_need "${c%%:*}" "${c#*:}"; done
  # dnsmasq drops to an unprivileged user: it must be able to read its
  # files under the (mktemp, 0700) work dir.
  chmod 755 "$work"
  # The prototypes run in a clean environment, as run by hand.
  dp() { env -i PATH="$PATH" HOME="$HOME" DP_WORK="$work/dp" KVER="$KVER" KROOT="$KROOT" bash "$@"; }
  dp "$DP/01b-build-qcow2.sh" > "$work/dp-01b.log" 2>&1 || true
  # The prototypes' output goes to files: their background processes must not
  # hold a pipe (the guests do not get their leases then).
  dp "$DP/02-network-dhcp-metadata.sh" > "$work/dp-02.log" 2>&1 || true
  grep -E "qemu start -> (DHCP|METADATA)" "$work/dp-02.log" | sed 's/^\[[^]]*\] /prototype.1 /' || true
  dp "$DP/08-concurrency.sh" "$N" > "$work/dp-08.log" 2>&1 || true
  grep -E "qemu start -> METADATA-OK|all [0-9]+ guests" "$work/dp-08.log" | sed "s/^/prototype.$N /" || true
  dp "$DP/cleanup.sh" > /dev/null 2>&1
else
  echo "prototype not found: no reference figures"
fi

echo "== ferrostack (QEMU driver, virt_type ${FERRO_VIRT_TYPE:-qemu}, profile ${FERRO_PROFILE:-debug})"
export FERROSTACK__COMPUTE__COMPUTE_DRIVER=qemu FERROSTACK__COMPUTE__VIRT_TYPE="${FERRO_VIRT_TYPE:-qemu}"
ferro_start "$work/data" || { echo "bench-guests: ferrostack did not start"; exit 1; }
python3 "$REPO/scripts/bench/guests.py" "$FERRO_URL" "$(cat "$work/data/admin-password")" \
  "$FERROSTACK__COMPUTE__INSTANCES_PATH" "$FERRO_SERVICE_PID" "${IMG%.qcow2}.vmlinuz" "${IMG%.qcow2}.initrd.gz" \
  "${IMG%.qcow2}.root.qcow2" "$N"

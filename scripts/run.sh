#!/usr/bin/env bash
# Runs ferrostack all-in-one with its embedded defaults (SQLite, the
# in-process bus) and real guests: installs what a fresh Debian machine lacks
# for them (QEMU, qemu-img, genisoimage for config drives, noVNC for the
# browser console) when run as root,
# builds the release binary and starts `ferrostack serve` with the arguments
# given (see `ferrostack serve --help`).
#
#   scripts/run.sh [serve options]
#
# Without QEMU (not root, or no apt-get) ferrostack still starts, says so, and
# simulates guests with the fake driver (hypervisor type `fake`).
source "$(dirname "$0")/lib.sh"
if [ "$(id -u)" = 0 ]; then
  ferro_need qemu-system-x86_64 qemu-system-x86 || true
  ferro_need genisoimage genisoimage || true
  # DHCP for guests' networks (network.host_net_driver auto: linuxbridge)
  ferro_need dnsmasq dnsmasq-base || true
  ferro_need nft nftables || true
  # a floating IP that goes takes its open connections with it
  ferro_need conntrack conntrack || true
  # the browser console (`console url show`) serves Debian's noVNC client
  ferro_need_file /usr/share/novnc/vnc_lite.html novnc || true
  # last: installing qemu-system-x86 may replace qemu-utils
  ferro_need qemu-img qemu-utils || true
fi
cd "$REPO"
cargo build --release -p ferrostack
exec "$REPO/target/release/ferrostack" serve "$@"

#!/usr/bin/env bash
# A real distribution as the guest: the Debian 12 cloud image that
# scripts/build-debian-image.sh builds (systemd, Debian's cloud-init,
# OpenSSH) boots on a private ferrostack (QEMU driver, Linux bridge agent)
# that runs, with its bridges and taps, in a network namespace this script
# creates; nothing is routed out of it. Driven with the real `openstack`
# CLI as a user would:
#   a network, a subnet, a router to `public`, a group allowing ICMP and
#   SSH, a keypair, a server with #cloud-config user data and no config
#   drive, a floating IP; cloud-init's own OpenStack datasource reads
#   169.254.169.254: the guest gets its hostname (the server's name), the
#   key (installed for cloud-init's default user `debian`) and runs the
#   user data; the host logs in as debian through the floating IP; deleting
#   everything leaves no bridge or namespace.
#
#   scripts/debian-guest.sh
#
# Not part of scripts/test.sh: systemd and cloud-init's Python under TCG
# take minutes to boot (the figure is printed). Environment: VERBOSE=1,
# KEEP=1, FERROSTACK_BIN (see lib.sh), BOOT_WAIT_S=900, CLI_TIMEOUT=300,
# FERRO_VIRT_TYPE=qemu, DEBIAN_IMAGE (a prebuilt image).
#
# Each step prints `ok - <step>` or `not ok - <step>`; the last line is
# `debian-guest: N passed, N failed`. Exit status 1 if a step failed.
source "$(dirname "$0")/lib.sh"

WAIT_S=180
BOOT_WAIT_S="${BOOT_WAIT_S:-900}"
CLI_TIMEOUT="${CLI_TIMEOUT:-300}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-debian.XXXXXX")"
data="$work/data"
FERRO_NETNS="ferro-dg-$$"
cleanup() {
  local rc=$?
  ferro_stop
  ferro_kill_guests "$data"
  ferro_clean_network "$data"
  ip netns del "$FERRO_NETNS" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then
    echo "debian-guest.sh: kept $work (server log: $data/ferrostack.log)" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bail() {
  echo "not ok - $1"
  echo "debian-guest: 0 passed, 1 failed"
  exit 1
}
[ "$(id -u)" = 0 ] || bail "runs as root (bridges, namespaces, dnsmasq and mmdebstrap need it)"
for c in qemu-system-x86_64:qemu-system-x86 genisoimage:genisoimage qemu-img:qemu-utils \
         dnsmasq:dnsmasq-base nft:nftables conntrack:conntrack ssh:openssh-client ping:iputils-ping; do
  ferro_need "${c%%:*}" "${c#*:}" || bail "${c%%:*} is installed"
done
t_build=$SECONDS
DEBIAN_IMAGE="${DEBIAN_IMAGE:-$(bash "$REPO/scripts/build-debian-image.sh" 2> "$work/build.log" | tail -1)}"
[ -f "$DEBIAN_IMAGE" ] || { cat "$work/build.log"; bail "scripts/build-debian-image.sh built the Debian image"; }
echo "# Debian image $DEBIAN_IMAGE ($(du -m "$DEBIAN_IMAGE" | cut -f1) MiB; $((SECONDS - t_build)) s to build or find)"
venv="$(ferro_venv)"
PY="$venv/bin/python"
OSC="$work/openstack"
printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$FERRO_NETNS" "$venv/bin/openstack" > "$OSC"
chmod +x "$OSC"
CLOUD=ferrostack

ip netns add "$FERRO_NETNS" || bail "create the test's network namespace"
ip -n "$FERRO_NETNS" link set lo up
export FERRO_NETNS
export FERROSTACK__COMPUTE__COMPUTE_DRIVER=qemu
export FERROSTACK__COMPUTE__VIRT_TYPE="${FERRO_VIRT_TYPE:-qemu}"
export FERROSTACK__NETWORK__HOST_NET_DRIVER=linuxbridge
ferro_start "$data" || bail "start ferrostack (QEMU driver, Linux bridge agent) in $FERRO_NETNS"
echo "# ferrostack pid $FERRO_PID at $FERRO_URL in namespace $FERRO_NETNS (data $data)"
cp "$data/clouds.yaml" "$work/clouds.yaml"
mkdir -p "$work/home"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_CACHE_HOME="$work/home/.cache"
for v in $(compgen -e); do case "$v" in OS_*) unset "$v" ;; esac; done
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"
export OS_CLIENT_CONFIG_FILE="$work/clouds.yaml"

# shellcheck source=golden_cli.sh
source "$(dirname "$0")/golden_cli.sh"

NAME=dbn1 NET_ID='' IMG_ID='' SRV='' FIP='' T_CREATE=0
console() { admin console log show "$1" < /dev/null 2>/dev/null; }
gssh() {
  run ip netns exec "$FERRO_NETNS" ssh -i "$work/key" -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -o BatchMode=yes "debian@$FIP" "$1"
}

s_setup() {
  run admin image create --disk-format qcow2 --container-format bare --public \
      --file "$DEBIAN_IMAGE" debian-12 -f json || return 1
  IMG_ID="$(printf '%s' "$OUT" | js get id)"
  run admin flavor create --ram 1024 --disk 4 --vcpus 1 d1.small -f json || return 1
  run admin network create dg-net -f json || return 1
  NET_ID="$(printf '%s' "$OUT" | js get id)"
  run admin subnet create dg-sub --network dg-net --subnet-range 10.78.0.0/24 -f json || return 1
  run admin router create dg-router -f json || return 1
  run admin router set --external-gateway public dg-router || return 1
  run admin router add subnet dg-router dg-sub || return 1
  run admin security group create dg-sg -f json || return 1
  run admin security group rule create --ingress --protocol icmp dg-sg -f json || return 1
  run admin security group rule create --ingress --protocol tcp --dst-port 22 dg-sg -f json || return 1
  ssh-keygen -q -t ed25519 -N '' -f "$work/key" < /dev/null
  run admin keypair create --public-key "$work/key.pub" dg-key -f json
}

s_boot() {
  need IMG_ID NET_ID || return 1
  cat > "$work/user-data" <<'EOF'
#cloud-config
write_files:
  - path: /etc/ferro-user-data
    content: "written by cloud-init from user data\n"
runcmd:
  - [ sh, -c, 'echo "FERRO-DEBIAN-USERDATA $(hostname)" > /dev/ttyS0' ]
EOF
  T_CREATE=$SECONDS
  run admin server create --image "$IMG_ID" --flavor d1.small --key-name dg-key \
      --security-group dg-sg --nic "net-id=$NET_ID" --user-data "$work/user-data" "$NAME" -f json || return 1
  SRV="$(printf '%s' "$OUT" | js get id)"
  wait_status "$SRV" ACTIVE || return 1
  local p
  p="$(admin port list --server "$SRV" -f value -c ID < /dev/null)"
  run admin floating ip create public --port "$p" -f json || return 1
  FIP="$(printf '%s' "$OUT" | js get floating_ip_address)"
}

# cloud-init's final stage runs the user data's runcmd, which writes to the
# serial console: the guest booted systemd, got its network, read the
# metadata service and ran the user data.
s_user_data_ran() {
  need SRV || return 1
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$BOOT_WAIT_S" ]; do
    if console "$SRV" | grep -q "FERRO-DEBIAN-USERDATA"; then
      console "$SRV" | grep -a "FERRO-DEBIAN-USERDATA" | head -1
      echo "# create to user data run: $((SECONDS - T_CREATE)) s"
      expect_eq "the hostname the user data saw" \
        "$(console "$SRV" | grep -a -o "FERRO-DEBIAN-USERDATA [^ ]*" | head -1 | cut -d' ' -f2 | tr -d '\r')" "$NAME"
      return
    fi
    sleep 3
  done
  echo "no FERRO-DEBIAN-USERDATA on the console after $BOOT_WAIT_S s; console:"
  console "$SRV" | tail -40
  return 1
}

s_ssh() {
  need FIP || return 1
  local t0=$SECONDS
  until ip netns exec "$FERRO_NETNS" ssh -i "$work/key" -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -o BatchMode=yes "debian@$FIP" true 2>/dev/null; do
    [ $((SECONDS - t0)) -lt 120 ] || { echo "no SSH to debian@$FIP after 120 s"; return 1; }
    sleep 2
  done
  echo "# create to SSH login: $((SECONDS - T_CREATE)) s"
  gssh 'echo "user=$(id -un)"; hostname; cat /etc/ferro-user-data; cat /etc/os-release | grep ^PRETTY_NAME;
        sudo -n cloud-init status --long; sudo -n cat /run/cloud-init/result.json' || return 1
  printf '%s' "$OUT" | grep -qx "user=debian" || { echo "not logged in as debian"; return 1; }
  printf '%s' "$OUT" | grep -qx "$NAME" || { echo "the hostname is not $NAME"; return 1; }
  printf '%s' "$OUT" | grep -q "written by cloud-init from user data" || { echo "no file from user data"; return 1; }
  printf '%s' "$OUT" | grep -q "status: done" || { echo "cloud-init did not finish cleanly"; return 1; }
  printf '%s' "$OUT" | grep -q '"datasource": "DataSourceOpenStack' || { echo "not cloud-init's OpenStack datasource"; return 1; }
  printf '%s' "$OUT" | grep -q '"errors": \[\]' || { echo "cloud-init reported errors"; return 1; }
}

s_metadata_in_guest() {
  need FIP || return 1
  gssh 'sudo -n cloud-init query ds.meta_data.uuid; sudo -n cloud-init query v1.public_ssh_keys' || return 1
  printf '%s' "$OUT" | grep -qx "$SRV" || { echo "cloud-init's uuid is not $SRV"; return 1; }
  printf '%s' "$OUT" | grep -qF "$(cut -d' ' -f2 "$work/key.pub")" || { echo "the key is not among cloud-init's keys"; return 1; }
}

s_teardown() {
  need SRV NET_ID || return 1
  run admin floating ip delete "$FIP" || return 1
  run admin server delete --wait "$SRV" || return 1
  run admin router remove subnet dg-router dg-sub || return 1
  run admin router delete dg-router || return 1
  run admin network delete dg-net || return 1
  local br="brq${NET_ID:0:11}" t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 30 ]; do
    if ! ip -n "$FERRO_NETNS" link show "$br" > /dev/null 2>&1 && [ ! -e "/run/netns/qdhcp-$NET_ID" ]; then
      echo "$br and qdhcp-$NET_ID are gone"; return 0
    fi
    sleep 0.5
  done
  echo "$br or qdhcp-$NET_ID is still there"; return 1
}

step "image, flavor, network, router to public, group allowing ICMP and SSH, keypair" s_setup
step "the Debian server reaches ACTIVE and gets a floating IP" s_boot
step "cloud-init ran the user data with the server's name as hostname" s_user_data_ran
step "the host logs in as debian with the key cloud-init installed; cloud-init's OpenStack datasource, no errors" s_ssh
step "cloud-init's own query shows the instance's uuid and key" s_metadata_in_guest
step "deleting the floating IP, server, router and network removes the bridge and qdhcp namespace" s_teardown

echo "debian-guest: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

#!/usr/bin/env bash
# Two hosts and one controller over RabbitMQ, with real guests, driven with
# the real `openstack` CLI. Each host (`serve --roles compute,network`) runs
# in a network namespace of its own, joined to the other by an underlay
# bridge in a third, and with a mount namespace of its own for its
# qdhcp-/qrouter- namespaces, as two machines would have; the controller
# (`--roles controller`) runs on this machine's loopback, and each host
# reaches it and the broker through a socat relay this script starts.
# Nothing is routed out of the test's namespaces.
#   both hosts' agents report, with their tunnel endpoints;
#   a vxlan network, a subnet and a router: its DHCP and the router are
#   scheduled on one host (A); a guest on each host; the guest on B gets its
#   lease and its metadata from A across VXLAN, pings the guest on A and the
#   router; A's flooding entry names B's endpoint;
#   host A dies (its process killed, its underlay cut): after agent_down_time
#   the network's DHCP and the router move to B, B stops flooding to A, and a
#   new guest on B gets its lease, its metadata and the router from B;
#   host A returns: it lets go of what moved, the hosts flood to each other
#   again, and its guest, which ran on, is reached from B;
#   host A also holds the volumes (a volume agent, `serve --roles volume`):
#   one attached to a new guest on B travels over NBD with a key made for
#   the attachment; the guest writes, B cannot open the export without the
#   key, and after detach the export is gone and A's file holds the data;
#   A's volume agent restarts serving iSCSI (raw volumes, tgt): a volume
#   attached to the same guest travels through a target with a CHAP account
#   made for the attachment; the guest writes, B cannot log in without the
#   account, and after detach the target and its portal are gone.
#
#   scripts/multi-host.sh
#
# Environment: VERBOSE=1, KEEP=1, FERROSTACK_BIN (see lib.sh), WAIT_S=180,
# CLI_TIMEOUT=300, FERRO_VIRT_TYPE=qemu.
#
# Each step prints `ok - <step>` or `not ok - <step>`; the last line is
# `multi-host: N passed, N failed`. Exit status 1 if a step failed.
source "$(dirname "$0")/lib.sh"

WAIT_S="${WAIT_S:-180}"
CLI_TIMEOUT="${CLI_TIMEOUT:-300}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-multi-host.XXXXXX")"
data="$work/ctl"
HUB="fmh-u-$$" NSA="fmh-a-$$" NSB="fmh-b-$$"
HOSTA="mh-a-$$" HOSTB="mh-b-$$"
ULA=10.250.0.1 ULB=10.250.0.2
RELAYS=()
declare -A HOST_PID=() HOLDER=()
VOL_PID=''
cleanup() {
  local rc=$?
  local h p
  stop_volumes
  for h in a b; do
    p="${HOST_PID[$h]:-}"
    if [ -n "$p" ]; then
      for c in $(pgrep -P "$p" 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
      kill -KILL "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  ferro_stop
  for p in "${RELAYS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${HOLDER[@]}"; do kill "$p" 2>/dev/null || true; done
  for h in a b; do
    FERROSTACK__COMPUTE__INSTANCES_PATH="$FERRO_GUESTS_DIR/$h/instances" ferro_kill_guests
    ferro_clean_network "$work/$h"
  done
  [ -n "${FERRO_GUESTS_DIR:-}" ] && rm -rf "$FERRO_GUESTS_DIR"
  ferro_kill_guests "$data"
  for ns in "$NSA" "$NSB" "$HUB"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then
    echo "multi-host.sh: kept $work (logs: $work/{ctl,a,b}/ferrostack.log)" >&2
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
  echo "multi-host: 0 passed, 1 failed"
  exit 1
}
[ "$(id -u)" = 0 ] || bail "runs as root (bridges, namespaces and dnsmasq need it)"
for c in qemu-system-x86_64:qemu-system-x86 genisoimage:genisoimage qemu-img:qemu-utils \
         dnsmasq:dnsmasq-base busybox:busybox-static nft:nftables socat:socat conntrack:conntrack tgtd:tgt; do
  ferro_need "${c%%:*}" "${c#*:}" || bail "${c%%:*} is installed"
done
if ! timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; then
  if [ "${CI:-}" = true ]; then bail "RabbitMQ answers at 127.0.0.1:5672"; fi
  echo "# skipped: RabbitMQ is not reachable at 127.0.0.1:5672"
  echo "multi-host: 0 passed, 0 failed, 1 skipped"
  exit 0
fi
GUEST_IMAGE="$(bash "$REPO/scripts/build-guest-image.sh" 2> "$work/build.log" | tail -1)"
[ -f "$GUEST_IMAGE" ] || { cat "$work/build.log"; bail "scripts/build-guest-image.sh built the guest image"; }
venv="$(ferro_venv)"
PY="$venv/bin/python"
OSC="$venv/bin/openstack"
CLOUD=ferrostack
BIN="$(ferro_bin)"

# The underlay: a bridge in the hub namespace, a veth to each host.
ip netns add "$HUB" && ip netns add "$NSA" && ip netns add "$NSB" || bail "create the test's namespaces"
ip -n "$HUB" link add ul type bridge && ip -n "$HUB" link set ul up
for h in a b; do
  ns="$NSA" ip=$ULA; [ $h = b ] && ns="$NSB" ip=$ULB
  ip -n "$ns" link set lo up
  ip -n "$ns" link add ul0 type veth peer name "ul-$h" netns "$HUB"
  ip -n "$HUB" link set "ul-$h" master ul up
  ip -n "$ns" addr add "$ip/24" dev ul0
  ip -n "$ns" link set ul0 up
done

export FERROSTACK__NETWORK__HOST_NET_DRIVER=linuxbridge
export FERROSTACK__NETWORK__REPORT_INTERVAL=1 FERROSTACK__NETWORK__AGENT_DOWN_TIME=6
export FERROSTACK__NETWORK__BOOTSTRAP_PUBLIC_NETWORK=false
export FERROSTACK__BUS__URL='amqp://guest:guest@127.0.0.1:5672/%2f'
export FERROSTACK__COMPUTE__SHUTDOWN_TIMEOUT=10
# Block Storage sends volume work to host A's volume agent.
FERROSTACK__COMPUTE__HOST="mh-ctl-$$" FERROSTACK__COMPUTE__COMPUTE_DRIVER=fake \
  FERROSTACK__VOLUME__VOLUME_HOST="$HOSTA" \
  ferro_start "$data" --roles controller || bail "start the controller (--roles controller)"
echo "# controller pid $FERRO_PID at $FERRO_URL (data $data)"

# Relays: inside each host's namespace, the controller's port and the
# broker's on 127.0.0.1, through unix sockets to this namespace's.
for port in "$FERRO_PORT" 5672; do
  socat "UNIX-LISTEN:$work/relay-$port.sock,fork,mode=600" "TCP:127.0.0.1:$port" &
  RELAYS+=($!)
done
FERRO_GUESTS_DIR="$(mktemp -d /var/tmp/ferro-guests.XXXXXX)"
chmod 711 "$FERRO_GUESTS_DIR"
# Each host's "machine": a process holding its network namespace and a
# mount namespace whose /run/netns is its own (its qdhcp-/qrouter-
# namespaces); ferrostack is started (and restarted) inside both.
declare -A HOLDER=()
for h in a b; do
  ns="$NSA"; [ $h = b ] && ns="$NSB"
  nsenter "--net=/run/netns/$ns" unshare -m --propagation private \
    sh -c 'mount -t tmpfs ferro-netns /run/netns && exec sleep infinity' &
  HOLDER[$h]=$!
done
sleep 0.5
# start_host a|b: `serve --roles compute,network` on that host.
start_host() {
  local h="$1" host="$HOSTA" ip=$ULA roles=compute,network
  [ "$h" = b ] && host="$HOSTB" ip=$ULB
  mkdir -p "$work/$h"
  nsenter -t "${HOLDER[$h]}" -n -m \
    env FERROSTACK__COMPUTE__HOST="$host" FERROSTACK__COMPUTE__COMPUTE_DRIVER=qemu \
        FERROSTACK__COMPUTE__VIRT_TYPE="${FERRO_VIRT_TYPE:-qemu}" \
        FERROSTACK__NETWORK__LOCAL_IP="$ip" \
        FERROSTACK__COMPUTE__INSTANCES_PATH="$FERRO_GUESTS_DIR/$h/instances" \
        FERROSTACK__VNC__NOVNCPROXY_LISTEN="127.0.0.1:$(free_port)" \
    "$BIN" serve --roles "$roles" --data-dir "$work/$h" --listen 127.0.0.1:9 \
    >> "$work/$h/ferrostack.log" 2>&1 < /dev/null &
  HOST_PID[$h]=$!
}
# relay a|b: the controller's port and the broker's on the host's
# 127.0.0.1, through unix sockets to this namespace's.
declare -A HOST_RELAYS=()
relay() {
  local h="$1" port
  HOST_RELAYS[$h]=''
  for port in "$FERRO_PORT" 5672; do
    nsenter -t "${HOLDER[$h]}" -n socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" \
      "UNIX-CONNECT:$work/relay-$port.sock" &
    RELAYS+=($!); HOST_RELAYS[$h]="${HOST_RELAYS[$h]} $!"
  done
}
# start_volumes nbd|iscsi: host A's volume agent (`serve --roles volume`),
# opening volumes to other hosts over that transport (iSCSI: raw volumes).
start_volumes() {
  local format=qcow2
  [ "$1" = iscsi ] && format=raw
  mkdir -p "$work/a-vol"
  nsenter -t "${HOLDER[a]}" -n -m \
    env FERROSTACK__COMPUTE__HOST="$HOSTA" FERROSTACK__NETWORK__LOCAL_IP="$ULA" \
        FERROSTACK__VOLUME__VOLUMES_DIR="$FERRO_GUESTS_DIR/a/volumes" \
        FERROSTACK__VOLUME__REMOTE_TRANSPORT="$1" FERROSTACK__VOLUME__VOLUME_FORMAT="$format" \
        FERROSTACK__VNC__NOVNCPROXY_LISTEN="127.0.0.1:$(free_port)" \
    "$BIN" serve --roles volume --data-dir "$work/a-vol" --listen 127.0.0.1:9 \
    > "$work/a-vol/ferrostack-$1.log" 2>&1 < /dev/null &
  VOL_PID=$!
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 60 ]; do
    grep -q "^volume agent: " "$work/a-vol/ferrostack-$1.log" 2>/dev/null && return 0
    kill -0 "$VOL_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "host A's volume agent ($1) did not come up"; tail -5 "$work/a-vol/ferrostack-$1.log"; return 1
}
# stop_volumes: stops host A's volume agent, and the tgtd it started.
stop_volumes() {
  [ -n "$VOL_PID" ] || return 0
  kill -TERM "$VOL_PID" 2>/dev/null || true
  wait "$VOL_PID" 2>/dev/null || true
  VOL_PID=''
  local pidf="$FERRO_GUESTS_DIR/a/volumes/.exports/iscsi/tgtd.pid" p
  if [ -f "$pidf" ]; then
    p="$(cat "$pidf")"
    grep -q tgtd "/proc/$p/cmdline" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  fi
}
relay a; relay b
start_host a
start_host b
# in_host a|b CMD...: CMD in that host's network and mount namespaces.
in_host() {
  local p="${HOLDER[$1]}"; shift
  nsenter -t "$p" -n -m "$@"
}

cp "$data/clouds.yaml" "$work/clouds.yaml"
mkdir -p "$work/home"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_CACHE_HOME="$work/home/.cache"
for v in $(compgen -e); do case "$v" in OS_*) unset "$v" ;; esac; done
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"
export OS_CLIENT_CONFIG_FILE="$work/clouds.yaml"

# shellcheck source=golden_cli.sh
source "$(dirname "$0")/golden_cli.sh"

IP1=10.77.0.11 IP2=10.77.0.12 GW=10.77.0.1
NET_ID='' IMG_ID='' R_ID='' S1='' S2='' S3='' VNI=''

console() { admin console log show "$1" < /dev/null 2>/dev/null; }
wait_console() {  # wait_console SERVER PATTERN [TIMEOUT_S]
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "${3:-$WAIT_S}" ]; do
    if console "$1" | grep -q -- "$2"; then console "$1" | grep -- "$2" | head -3; return 0; fi
    sleep 1
  done
  echo "no '$2' on the console of $1 after ${3:-$WAIT_S} s; console:"; console "$1" | tail -30
  return 1
}
# has a|b KIND ID: whether that host's mount namespace has KIND-ID
# (qdhcp-<network>, qrouter-<router>).
has() { in_host "$1" ip netns list 2>/dev/null | grep -q "^$2-$3"; }
# hosting KIND ID: the hosts that have it ("a b", "a", "b" or "none").
hosting() {
  local h out=''
  for h in a b; do has "$h" "$1" "$2" && out="$out $h"; done
  out="${out# }"; echo "${out:-none}"
}
# The guest's user data: ping each address until it answers (PING-OK/-FAIL).
user_data() {
  local f="$work/ud-$1"; shift
  { echo '#!/bin/sh'
    for a in "$@"; do
      cat <<EOF
i=0
while [ \$i -lt 120 ]; do
  if ping -c 1 -W 1 $a > /dev/null 2>&1; then echo "PING-OK $a"; break; fi
  i=\$((i+1)); sleep 1
done
[ \$i -lt 120 ] || echo "PING-FAIL $a"
EOF
    done; } > "$f"
  echo "$f"
}

s_agents() {
  local t0=$SECONDS n=0
  while [ $((SECONDS - t0)) -lt 60 ]; do
    run admin network agent list --agent-type linux-bridge -f json || return 1
    n="$(printf '%s' "$OUT" | "$PY" -c 'import json,sys; print(sum(1 for a in json.load(sys.stdin) if a["Alive"] in (True, "True", ":-)")))')"
    [ "$n" = 2 ] && break
    sleep 1
  done
  expect_eq "Linux bridge agents alive" "$n" 2 || return 1
  local h ip id
  for h in "$HOSTA:$ULA" "$HOSTB:$ULB"; do
    id="$(admin network agent list --host "${h%%:*}" --agent-type linux-bridge -f value -c ID < /dev/null)"
    run admin network agent show "$id" -f json || return 1
    ip="$(printf '%s' "$OUT" | "$PY" -c 'import json,sys; a=json.load(sys.stdin); c=a.get("configuration", a.get("configurations", {})); c=json.loads(c) if isinstance(c, str) else c; print(c.get("tunneling_ip"))')"
    expect_eq "${h%%:*}'s tunnel endpoint" "$ip" "${h#*:}" || return 1
  done
  t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 60 ]; do
    n="$(admin compute service list --service nova-compute -f value -c Host -c State < /dev/null | grep -c "^mh-[ab]-$$ up" || true)"
    [ "$n" = 2 ] && { echo "both nova-compute services up"; return 0; }
    sleep 1
  done
  echo "nova-compute services up: $n"; return 1
}

s_setup() {
  run admin image create --disk-format qcow2 --container-format bare --public \
      --file "$GUEST_IMAGE" ferro-guest -f json || return 1
  IMG_ID="$(printf '%s' "$OUT" | js get id)"
  run admin network create mh-net -f json || return 1
  NET_ID="$(printf '%s' "$OUT" | js get id)"
  expect_eq "network type" "$(printf '%s' "$OUT" | js get provider:network_type)" vxlan || return 1
  VNI="$(printf '%s' "$OUT" | js get provider:segmentation_id)"
  run admin subnet create mh-sub --network mh-net --subnet-range 10.77.0.0/24 -f json || return 1
  run admin router create mh-router -f json || return 1
  R_ID="$(printf '%s' "$OUT" | js get id)"
  run admin router add subnet mh-router mh-sub || return 1
  # The default group lets its members reach each other (and ICMP from
  # the router's address does not need to come in: the guests ping out).
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 30 ]; do
    [ "$(hosting qdhcp "$NET_ID")" = a ] && [ "$(hosting qrouter "$R_ID")" = a ] && break
    sleep 0.5
  done
  expect_eq "hosts of the network's DHCP" "$(hosting qdhcp "$NET_ID")" a &&
    expect_eq "hosts of the router" "$(hosting qrouter "$R_ID")" a
}

s_boot() {
  need IMG_ID NET_ID || return 1
  run admin server create --image "$IMG_ID" --flavor m1.tiny --availability-zone "nova:$HOSTA" \
      --nic "net-id=$NET_ID,v4-fixed-ip=$IP1" mh1 -f json || return 1
  S1="$(printf '%s' "$OUT" | js get id)"
  run admin server create --image "$IMG_ID" --flavor m1.tiny --availability-zone "nova:$HOSTB" \
      --nic "net-id=$NET_ID,v4-fixed-ip=$IP2" --user-data "$(user_data 2 $IP1 $GW)" mh2 -f json || return 1
  S2="$(printf '%s' "$OUT" | js get id)"
  wait_status "$S1" ACTIVE && wait_status "$S2" ACTIVE || return 1
  expect_eq "mh1's host" "$(admin server show -f value -c OS-EXT-SRV-ATTR:host "$S1" < /dev/null)" "$HOSTA" &&
    expect_eq "mh2's host" "$(admin server show -f value -c OS-EXT-SRV-ATTR:host "$S2" < /dev/null)" "$HOSTB"
}

s_across() {
  need S1 S2 || return 1
  wait_console "$S1" "DHCP-LEASE ip=$IP1" && wait_console "$S2" "DHCP-LEASE ip=$IP2" &&
    wait_console "$S2" "METADATA-OK" && wait_console "$S2" "INSTANCE-UUID $S2" &&
    wait_console "$S2" "PING-OK $IP1" && wait_console "$S2" "PING-OK $GW"
}

s_flooding() {
  need VNI || return 1
  local fa fb
  fa="$(in_host a bridge fdb show dev "vxlan-$VNI" | grep '^00:00:00:00:00:00' || true)"
  fb="$(in_host b bridge fdb show dev "vxlan-$VNI" | grep '^00:00:00:00:00:00' || true)"
  echo "A: $fa"; echo "B: $fb"
  [ "$fa" = "00:00:00:00:00:00 dst $ULB self permanent" ] &&
    [ "$fb" = "00:00:00:00:00:00 dst $ULA self permanent" ]
}

s_kill_a() {
  local p="${HOST_PID[a]}" c
  for c in $(pgrep -P "$p"); do kill -KILL "$c"; done
  kill -KILL "$p"; wait "$p" 2>/dev/null || true
  for c in ${HOST_RELAYS[a]}; do kill "$c" 2>/dev/null || true; done
  ip -n "$HUB" link set ul-a down
  echo "host A's ferrostack (pid $p) killed, its relays stopped, its underlay down"
  local t0=$SECONDS alive=''
  while [ $((SECONDS - t0)) -lt 60 ]; do
    alive="$(admin network agent list --host "$HOSTA" --agent-type linux-bridge -f value -c Alive < /dev/null)"
    case "$alive" in False|XXX) break ;; esac
    sleep 1
  done
  expect_eq "host A's agent alive" "$alive" False
}

s_moved() {
  need NET_ID R_ID VNI || return 1
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 60 ]; do
    has b qdhcp "$NET_ID" && has b qrouter "$R_ID" && break
    sleep 0.5
  done
  echo "# on B $((SECONDS - t0)) s after host A was found dead (A, cut off, keeps its stale copies)"
  has b qdhcp "$NET_ID" && echo "B has qdhcp-$NET_ID" && has b qrouter "$R_ID" && echo "B has qrouter-$R_ID" || return 1
  local fb; fb="$(in_host b bridge fdb show dev "vxlan-$VNI" | grep '^00:00:00:00:00:00' || true)"
  expect_eq "B's flooding entries" "$fb" ""
}

s_after() {
  need IMG_ID NET_ID || return 1
  run admin server create --image "$IMG_ID" --flavor m1.tiny --availability-zone "nova:$HOSTB" \
      --nic "net-id=$NET_ID" --user-data "$(user_data 3 $GW $IP2)" mh3 -f json || return 1
  S3="$(printf '%s' "$OUT" | js get id)"
  wait_status "$S3" ACTIVE || return 1
  wait_console "$S3" "DHCP-LEASE ip=10.77.0." && wait_console "$S3" "METADATA-OK" &&
    wait_console "$S3" "INSTANCE-UUID $S3" && wait_console "$S3" "PING-OK $GW" &&
    wait_console "$S3" "PING-OK $IP2"
}

s_a_returns() {
  need NET_ID R_ID VNI S1 || return 1
  ip -n "$HUB" link set ul-a up
  relay a
  start_host a
  local t0=$SECONDS alive=''
  while [ $((SECONDS - t0)) -lt 60 ]; do
    alive="$(admin network agent list --host "$HOSTA" --agent-type linux-bridge -f value -c Alive < /dev/null)"
    case "$alive" in True|':-)') break ;; esac
    sleep 1
  done
  expect_eq "host A's agent alive" "$alive" True || return 1
  local fa='' fb=''
  t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 30 ]; do
    fa="$(in_host a bridge fdb show dev "vxlan-$VNI" 2>/dev/null | grep '^00:00:00:00:00:00' || true)"
    fb="$(in_host b bridge fdb show dev "vxlan-$VNI" | grep '^00:00:00:00:00:00' || true)"
    if [ "$(hosting qdhcp "$NET_ID")" = b ] && [ "$(hosting qrouter "$R_ID")" = b ] &&
       [ "$fa" = "00:00:00:00:00:00 dst $ULB self permanent" ] &&
       [ "$fb" = "00:00:00:00:00:00 dst $ULA self permanent" ]; then
      break
    fi
    sleep 0.5
  done
  echo "A: $fa"; echo "B: $fb"
  expect_eq "hosts of the network's DHCP" "$(hosting qdhcp "$NET_ID")" b &&
    expect_eq "hosts of the router" "$(hosting qrouter "$R_ID")" b &&
    expect_eq "A floods to" "$fa" "00:00:00:00:00:00 dst $ULB self permanent" &&
    expect_eq "B floods to" "$fb" "00:00:00:00:00:00 dst $ULA self permanent" || return 1
  # mh1 ran on through A's restart; B's guest reaches it again.
  run admin port list --server "$S1" -f value -c Status || return 1
  expect_eq "mh1's port" "$OUT" ACTIVE || return 1
  run admin server reboot --hard "$S2" || return 1
  wait_status "$S2" ACTIVE || return 1
  local n; n="$(console "$S2" | grep -c "PING-OK $IP1" || true)"
  t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$WAIT_S" ]; do
    [ "$(console "$S2" | grep -c "PING-OK $IP1" || true)" -gt "$n" ] && { echo "mh2 pings mh1 again"; return 0; }
    sleep 1
  done
  console "$S2" | tail -20; return 1
}

wait_volume() {  # wait_volume VOLUME STATUS
  local t0=$SECONDS st=''
  while [ $((SECONDS - t0)) -lt 60 ]; do
    st="$(admin volume show -f value -c status "$1" < /dev/null)"
    [ "$st" = "$2" ] && return 0
    sleep 0.5
  done
  echo "volume $1 is $st, not $2"; return 1
}

# A volume of host A (its volume agent exports it over NBD with a key made
# for the attachment) attached to a new guest on B: the guest writes
# through it; B without the key cannot open the export; detached, the
# export is gone and A's file holds what the guest wrote. The guest stays
# for the iSCSI step: its user data writes to each volume that appears.
VOL='' S4=''
s_volume_nbd() {
  need IMG_ID NET_ID || return 1
  start_volumes nbd || return 1
  run admin volume create --size 1 mh-vol -f json || return 1
  VOL="$(printf '%s' "$OUT" | js get id)"
  wait_volume "$VOL" available || return 1
  local ud="$work/ud-vol" exp port
  printf '#!/bin/sh\nfor t in NBD ISCSI; do\n i=0; while [ ! -b /dev/vdb ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done\n echo mh-$t-%s | dd of=/dev/vdb bs=512 conv=sync,fsync 2>/dev/null && echo $t-WROTE\n i=0; while [ -b /dev/vdb ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done\ndone\n' \
    "$$" > "$ud"
  run admin server create --image "$IMG_ID" --flavor m1.tiny --availability-zone "nova:$HOSTB" \
      --nic "net-id=$NET_ID" --user-data "$ud" mh4 -f json || return 1
  S4="$(printf '%s' "$OUT" | js get id)"
  wait_status "$S4" ACTIVE || return 1
  run admin server add volume "$S4" "$VOL" || return 1
  wait_console "$S4" NBD-WROTE || return 1
  exp="$FERRO_GUESTS_DIR/a/volumes/.exports/$VOL@$HOSTB"
  [ -f "$exp/connection.json" ] || { echo "host A has no NBD export of $VOL to $HOSTB"; ls -la "$FERRO_GUESTS_DIR/a/volumes/.exports"; return 1; }
  port="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["port"])' "$exp/connection.json")"
  echo "# the guest on B wrote to host A's volume through $ULA:$port"
  if in_host b qemu-img info --image-opts \
      "driver=nbd,server.type=inet,server.host=$ULA,server.port=$port,export=$VOL" > /dev/null 2>&1; then
    echo "host B opened the export without the attachment's key"; return 1
  fi
  run admin server remove volume "$S4" "$VOL" || return 1
  wait_volume "$VOL" available || return 1
  [ ! -e "$exp" ] || { echo "the export is still there after detach"; return 1; }
  if in_host b timeout 3 bash -c "exec 3<>/dev/tcp/$ULA/$port" 2> /dev/null; then
    echo "the export's port still answers after detach"; return 1
  fi
  run qemu-img convert -O raw "$FERRO_GUESTS_DIR/a/volumes/volume-$VOL" "$work/vol.raw" || return 1
  head -c 64 "$work/vol.raw" | grep -q "mh-NBD-$$" || { echo "host A's file does not hold what the guest wrote"; return 1; }
  run admin volume delete "$VOL"
}

# Host A's volume agent restarts serving iSCSI: a new (raw) volume attached
# to the same guest on B goes through a tgt target with a CHAP account made
# for the attachment; B cannot log in without the account or with another
# password; detached, the target and the portal are gone and A's file holds
# what the guest wrote.
s_volume_iscsi() {
  need S4 || return 1
  stop_volumes
  start_volumes iscsi || return 1
  run admin volume create --size 1 mh-vol-iscsi -f json || return 1
  VOL="$(printf '%s' "$OUT" | js get id)"
  wait_volume "$VOL" available || return 1
  run admin server add volume "$S4" "$VOL" || return 1
  wait_console "$S4" ISCSI-WROTE || return 1
  local rec="$FERRO_GUESTS_DIR/a/volumes/.exports/iscsi/$VOL@$HOSTB/target.json" iqn user
  [ -f "$rec" ] || { echo "host A has no iSCSI target of $VOL for $HOSTB"; ls -laR "$FERRO_GUESTS_DIR/a/volumes/.exports"; return 1; }
  iqn="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["iqn"])' "$rec")"
  user="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["user"])' "$rec")"
  echo "# the guest on B wrote to host A's volume through $ULA:3260 $iqn"
  if in_host b qemu-img info --image-opts \
      "driver=iscsi,transport=tcp,portal=$ULA:3260,target=$iqn,lun=1" > /dev/null 2>&1; then
    echo "host B logged in to the target without CHAP"; return 1
  fi
  if in_host b qemu-img info --object secret,id=s0,data=0123456789abcdef --image-opts \
      "driver=iscsi,transport=tcp,portal=$ULA:3260,target=$iqn,lun=1,user=$user,password-secret=s0" > /dev/null 2>&1; then
    echo "host B logged in to the target with another password"; return 1
  fi
  run admin server remove volume "$S4" "$VOL" || return 1
  wait_volume "$VOL" available || return 1
  [ ! -e "$(dirname "$rec")" ] || { echo "the target's record is still there after detach"; return 1; }
  if in_host b timeout 3 bash -c "exec 3<>/dev/tcp/$ULA/3260" 2> /dev/null; then
    echo "the portal still answers after the last detach"; return 1
  fi
  head -c 64 "$FERRO_GUESTS_DIR/a/volumes/volume-$VOL" | grep -q "mh-ISCSI-$$" || { echo "host A's file does not hold what the guest wrote"; return 1; }
  run admin server delete --wait "$S4" || return 1
  S4=''
  run admin volume delete "$VOL"
}

s_teardown() {
  need S2 S3 NET_ID || return 1
  # The volume steps' guest, if a failed step left it.
  [ -n "$S4" ] && admin server delete --wait "$S4" > /dev/null 2>&1 < /dev/null
  run admin server delete --wait "$S1" "$S2" "$S3" || return 1
  run admin router remove subnet mh-router mh-sub || return 1
  run admin router delete mh-router || return 1
  run admin network delete mh-net || return 1
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 30 ]; do
    if [ "$(hosting qdhcp "$NET_ID")" = none ] && [ "$(hosting qrouter "$R_ID")" = none ] &&
       ! in_host a ip link show "vxlan-$VNI" > /dev/null 2>&1 &&
       ! in_host b ip link show "vxlan-$VNI" > /dev/null 2>&1; then
      echo "neither host has a qdhcp, qrouter or vxlan-$VNI left"; return 0
    fi
    sleep 0.5
  done
  for h in a b; do in_host $h ip netns list; in_host $h ip -br link; done; return 1
}

step "both hosts' Linux bridge agents report, with their tunnel endpoints; both hypervisors are up" s_agents
step "a vxlan network, subnet and router: DHCP and the router are scheduled on host A" s_setup
step "a guest on each host reaches ACTIVE" s_boot
step "the guest on B gets its lease and metadata from A over VXLAN and pings the guest on A and the router" s_across
step "each host floods to exactly the other's tunnel endpoint" s_flooding
step "host A dies: its agents are reported dead" s_kill_a
step "the network's DHCP and the router move to host B, which stops flooding to A" s_moved
step "a new guest on B gets its lease, metadata and router from B and reaches the guest on B" s_after
step "host A returns: it lets go of the DHCP and the router, flooding between the hosts is back, and the guest on B reaches the guest on A" s_a_returns
step "a volume of host A attached to a new guest on B over NBD: the guest writes, B cannot open it without the key, detached the export is gone and A's file holds the data" s_volume_nbd
step "host A's volume agent serves iSCSI: a volume attached to the guest on B through a target with a CHAP account for the attachment; B cannot log in without it; detached, the target and portal are gone and A's file holds the data" s_volume_iscsi
step "deleting servers, router and network leaves nothing on either host" s_teardown

echo "multi-host: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

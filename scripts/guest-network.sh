#!/usr/bin/env bash
# Tenant networking of real guests on one host, driven with the real
# `openstack` CLI against a private ferrostack (QEMU driver, Linux bridge
# network agent) that runs, with its bridges and taps, in a network
# namespace this script creates (its qdhcp-<network> namespaces are named
# by network id); nothing is routed out of it:
#   the network agent reports as the Linux bridge, DHCP and metadata agents;
#   a network and subnet, a keypair and two guests with fixed addresses, each
#   created paused until its port is ACTIVE (network-vif-plugged); each gets
#   its lease from dnsmasq in qdhcp-<network> (seen on its console); gn2,
#   without a config drive, reads its uuid, EC2 instance-id and key from the
#   metadata service at 169.254.169.254, which answers no other address; gn1
#   (config drive) pings gn2 over the bridge from its user data; the DHCP
#   namespace reaches both; spoofed addresses and MACs get nothing through,
#   nor do a port's DHCP offers, nor its traffic to a service listening on
#   the host; another project's network with the same CIDR works beside it;
#   a stopped guest's port goes DOWN and ACTIVE again when it starts; a hard reboot gets a new lease; a router to `public`
#   (whose gateway address the host holds) gives gn2 a floating IP that the
#   host pings and logs in to with SSH; a NIC hot-plugged into gn2 gets its
#   lease on another network and leaves when removed; inside gn2 the metadata
#   service's public-ipv4 is the floating IP and the public gateway answers
#   through the router; disassociated, the floating IP reaches nothing, and
#   moved to gn1 it leads there; deleting the network removes its
#   bridge, namespace and dnsmasq.
#
#   scripts/guest-network.sh
#
# Environment: VERBOSE=1, KEEP=1, FERROSTACK_BIN (see lib.sh), WAIT_S=180,
# CLI_TIMEOUT=300, FERRO_VIRT_TYPE=qemu.
#
# Each step prints `ok - <step>` or `not ok - <step>`; the last line is
# `guest-network: N passed, N failed`. Exit status 1 if a step failed.
source "$(dirname "$0")/lib.sh"

WAIT_S="${WAIT_S:-180}"
CLI_TIMEOUT="${CLI_TIMEOUT:-300}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-guest-net.XXXXXX")"
data="$work/data"
FERRO_NETNS="ferro-gn-$$"
PORT_NS="ferro-gnp-$$" PORT2_NS="ferro-gnq-$$" PORT3_NS="ferro-gnr-$$"
cleanup() {
  local rc=$?
  for ns in "$PORT_NS" "$PORT2_NS" "$PORT3_NS"; do ip netns del "$ns" 2>/dev/null || true; done
  ferro_stop
  ferro_kill_guests "$data"
  ferro_clean_network "$data"
  ip netns del "$FERRO_NETNS" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then
    echo "guest-network.sh: kept $work (server log: $data/ferrostack.log)" >&2
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
  echo "guest-network: 0 passed, 1 failed"
  exit 1
}
[ "$(id -u)" = 0 ] || bail "runs as root (bridges, namespaces and dnsmasq need it)"
for c in qemu-system-x86_64:qemu-system-x86 genisoimage:genisoimage qemu-img:qemu-utils \
         dnsmasq:dnsmasq-base busybox:busybox-static nft:nftables conntrack:conntrack; do
  ferro_need "${c%%:*}" "${c#*:}" || bail "${c%%:*} is installed"
done
GUEST_IMAGE="$(bash "$REPO/scripts/build-guest-image.sh" 2> "$work/build.log" | tail -1)"
[ -f "$GUEST_IMAGE" ] || { cat "$work/build.log"; bail "scripts/build-guest-image.sh built the guest image"; }
venv="$(ferro_venv)"
READERS="$(bash "$REPO/scripts/cloud-init-readers.sh" 2> "$work/readers.log" | tail -1)" || READERS=''
PY="$venv/bin/python"
# The CLI runs inside the host's namespace, where ferrostack listens.
OSC="$work/openstack"
printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$FERRO_NETNS" "$venv/bin/openstack" > "$OSC"
chmod +x "$OSC"
CLOUD=ferrostack

ip netns add "$FERRO_NETNS" || bail "create the test's network namespace"
ip -n "$FERRO_NETNS" link set lo up
export FERRO_NETNS
export FERROSTACK__COMPUTE__COMPUTE_DRIVER=qemu
export FERROSTACK__COMPUTE__VIRT_TYPE="${FERRO_VIRT_TYPE:-qemu}"
export FERROSTACK__COMPUTE__SHUTDOWN_TIMEOUT=10
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

NET=tenant-net SUB=tenant-sub KEY=gn-key IP1=10.77.0.11 IP2=10.77.0.12
NET_ID='' IMG_ID='' S1='' S2='' P1='' SG_ID='' RULE_ID='' JUDGE='' CHOST=''

# console SERVER: the guest's console log.
console() { admin console log show "$1" < /dev/null 2>/dev/null; }
# wait_console SERVER PATTERN [TIMEOUT_S]: until the console shows PATTERN.
wait_console() {
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "${3:-$WAIT_S}" ]; do
    if console "$1" | grep -q -- "$2"; then console "$1" | grep -- "$2" | head -3; return 0; fi
    sleep 1
  done
  echo "no '$2' on the console of $1 after ${3:-$WAIT_S} s; console:"; console "$1" | tail -30
  return 1
}
# port_status PORT: the port's status
port_status() { admin port show -f value -c status "$1" < /dev/null; }
wait_port() {  # wait_port PORT WANT
  local t0=$SECONDS st=''
  while [ $((SECONDS - t0)) -lt 60 ]; do
    st="$(port_status "$1")"
    [ "$st" = "$2" ] && { echo "port $1: $st after $((SECONDS - t0)) s"; return 0; }
    sleep 0.5
  done
  echo "port $1 is $st, not $2"; return 1
}

s_agents() {
  run admin network agent list -f json || return 1
  local t
  for t in "Linux bridge agent" "DHCP agent" "Metadata agent"; do
    expect_eq "$t alive" "$(printf '%s' "$OUT" | js where agent_type "$t" alive)" True || return 1
  done
}

s_setup() {
  run admin image create --disk-format qcow2 --container-format bare --public \
      --file "$GUEST_IMAGE" ferro-guest -f json || return 1
  IMG_ID="$(printf '%s' "$OUT" | js get id)"
  run admin network create "$NET" -f json || return 1
  NET_ID="$(printf '%s' "$OUT" | js get id)"
  run admin subnet create "$SUB" --network "$NET" --subnet-range 10.77.0.0/24 -f json || return 1
  ssh-keygen -q -t ed25519 -N '' -f "$work/key" < /dev/null
  run admin keypair create --public-key "$work/key.pub" "$KEY" -f json || return 1
  # gn2's group: egress only (a new group's rules), until the test adds ICMP.
  run admin security group create gn-sg -f json || return 1
  SG_ID="$(printf '%s' "$OUT" | js get id)"
}

# The first guest pings the second from its user data, until it answers.
s_boot() {
  need IMG_ID NET_ID || return 1
  cat > "$work/ud1" <<EOF
#!/bin/sh
i=0
while [ \$i -lt 400 ]; do
  if ping -c 1 -W 1 $IP2 > /dev/null 2>&1; then echo "PING-OK $IP2"; exit 0; fi
  i=\$((i+1)); sleep 1
done
echo "PING-FAIL $IP2"
EOF
  run admin server create --image "$IMG_ID" --flavor m1.tiny --key-name "$KEY" --config-drive True \
      --nic "net-id=$NET_ID,v4-fixed-ip=$IP1" --user-data "$work/ud1" gn1 -f json || return 1
  S1="$(printf '%s' "$OUT" | js get id)"
  # No config drive: gn2 reads its identity from 169.254.169.254.
  run admin server create --image "$IMG_ID" --flavor m1.tiny --key-name "$KEY" \
      --security-group gn-sg --nic "net-id=$NET_ID,v4-fixed-ip=$IP2" gn2 -f json || return 1
  S2="$(printf '%s' "$OUT" | js get id)"
  wait_status "$S1" ACTIVE && wait_status "$S2" ACTIVE
}

s_ports_active() {
  need S1 S2 || return 1
  run admin port list --server "$S1" -f json || return 1
  P1="$(printf '%s' "$OUT" | js col id | head -1)"
  expect_eq "gn1's port" "$(printf '%s' "$OUT" | js col status)" ACTIVE || return 1
  run admin port list --server "$S2" -f json || return 1
  expect_eq "gn2's port" "$(printf '%s' "$OUT" | js col status)" ACTIVE
}

s_leases() {
  need S1 S2 NET_ID || return 1
  local mtu; mtu="$(admin network show -f value -c mtu "$NET_ID" < /dev/null)"
  wait_console "$S1" "DHCP-LEASE ip=$IP1 mask=24 router=10.77.0.1 mtu=$mtu" &&
    wait_console "$S2" "DHCP-LEASE ip=$IP2 mask=24 router=10.77.0.1 mtu=$mtu"
}

s_metadata() {
  need S2 || return 1
  wait_console "$S2" "METADATA-OK" && wait_console "$S2" "INSTANCE-UUID $S2" &&
    wait_console "$S2" "INSTANCE-ID i-[0-9a-f]\{8\}" && wait_console "$S2" "SSH-KEYS 1"
}

# Only a guest's own address is answered: the DHCP namespace itself is no
# instance.
s_metadata_unknown() {
  need NET_ID || return 1
  local code
  code="$(ip netns exec "qdhcp-$NET_ID" curl -s -m 5 -o /dev/null -w '%{http_code}' \
    http://169.254.169.254/openstack/latest/meta_data.json)"
  expect_eq "status for an address no port holds" "$code" 404
}

# Debian's cloud-init, as an independent judge: its OpenStack and EC2
# readers, run in a namespace plugged in as a port of gn2 (a veth named as
# the port's tap, which the agent wires like a guest's), read our answers.
s_cloud_init() {
  need S2 NET_ID || return 1
  local port mac key
  [ -n "$READERS" ] || { echo "Debian's cloud-init readers are not available (scripts/cloud-init-readers.sh)"; return 1; }
  CHOST="$(admin compute service list --service nova-compute -f value -c Host < /dev/null | head -1)"
  run admin port create --network "$NET" --fixed-ip "subnet=$SUB,ip-address=10.77.0.30" \
      --device-owner compute:nova --device "$S2" --host "$CHOST" gn2-judge -f json || return 1
  port="$(printf '%s' "$OUT" | js get id)"; mac="$(printf '%s' "$OUT" | js get mac_address)"
  JUDGE="$mac"
  ip netns add "$PORT_NS" && ip -n "$PORT_NS" link set lo up &&
    ip -n "$FERRO_NETNS" link add "tap${port:0:11}" type veth peer name eth0 netns "$PORT_NS" &&
    ip -n "$PORT_NS" link set eth0 address "$mac" up || return 1
  wait_port "$port" ACTIVE || return 1
  printf '%s\n' '#!/bin/sh' \
    'case "$1" in bound|renew)' \
    '  ip -4 addr flush dev "$interface"; ip -4 addr add "$ip/${mask:-24}" dev "$interface"' \
    '  set -- $staticroutes' \
    '  while [ $# -ge 2 ]; do' \
    '    if [ "$2" = 0.0.0.0 ]; then ip route add "$1" dev "$interface"; else ip route add "$1" via "$2" dev "$interface"; fi' \
    '    shift 2' \
    '  done ;;' \
    'esac' > "$work/udhcpc.sh"
  chmod +x "$work/udhcpc.sh"
  run ip netns exec "$PORT_NS" busybox udhcpc -i eth0 -n -q -t 5 -T 2 -O staticroutes -s "$work/udhcpc.sh" || return 1
  run ip -n "$PORT_NS" route || return 1
  printf '%s\n' 'import json' \
    'from cloudinit.sources.helpers import openstack' \
    'from cloudinit.sources.helpers import ec2' \
    'url = "http://169.254.169.254"' \
    'r = openstack.MetadataReader(url).read_v2()' \
    'e = ec2.get_instance_metadata(metadata_address=url, api_version="2009-04-04")' \
    'k = e["public-keys"]' \
    'print(json.dumps({"uuid": r["metadata"]["uuid"], "keys": r["metadata"]["public_keys"],' \
    '                  "instance_id": e["instance-id"], "local_ipv4": e["local-ipv4"], "ec2_keys": k}))' \
    > "$work/readers.py"
  run ip netns exec "$PORT_NS" env PYTHONPATH="$READERS" /usr/bin/python3 "$work/readers.py" || return 1
  key="$(cut -d' ' -f1,2 "$work/key.pub")"
  expect_eq "uuid (OpenStack reader)" "$(printf '%s' "$OUT" | js get uuid)" "$S2" || return 1
  printf '%s' "$OUT" | js get keys | grep -qF "$key" || { echo "the key is not in the OpenStack reader's public_keys"; return 1; }
  printf '%s' "$OUT" | js get ec2_keys | grep -qF "$key" || { echo "the key is not in the EC2 reader's public-keys"; return 1; }
  expect_eq "instance-id (EC2 reader) is i-%08x" "$(printf '%s' "$OUT" | js get instance_id | grep -c '^i-[0-9a-f]\{8\}$')" 1 &&
    expect_eq "local-ipv4" "$(printf '%s' "$OUT" | js get local_ipv4)" "$IP2"
}

s_ping_between() {
  need S1 || return 1
  wait_console "$S1" "PING-OK $IP2"
}

# ping_from NS ADDR [ping options]: one echo request, a second to answer.
ping_from() { local ns="$1" a="$2"; shift 2; ip netns exec "$ns" busybox ping -c 1 -W 1 "$@" "$a" > /dev/null 2>&1; }
# until_ping NS ADDR WANT(ok|blocked) LIMIT_S: pings until the answer is WANT;
# prints how long that took after the rule change.
# (a blocked ping takes its 1 s timeout; the attempts say which ping it was).
until_ping() {
  local t0 now r n=0
  t0=$(date +%s%N)
  while :; do
    n=$((n + 1))
    if ping_from "$1" "$2"; then r=ok; else r=blocked; fi
    now=$(date +%s%N)
    if [ "$r" = "$3" ]; then echo "# ping $2 from $1: $r at attempt $n, $(( (now - t0) / 1000000 )) ms after the change"; return 0; fi
    if [ $(( (now - t0) / 1000000000 )) -ge "$4" ]; then echo "ping $2 from $1: still $r after $4 s"; return 1; fi
  done
}

# Security groups: gn2's group has no ingress rule yet.
s_sg_blocks() {
  need S1 NET_ID || return 1
  if console "$S1" | grep -q "PING-OK"; then echo "gn1 reached gn2 before any rule allowed it"; return 1; fi
  echo "gn1's console: no PING-OK yet"
  if ping_from "qdhcp-$NET_ID" "$IP2"; then echo "qdhcp-$NET_ID reached gn2 before any rule allowed it"; return 1; fi
  echo "qdhcp-$NET_ID: $IP2 does not answer"
}

s_sg_allows() {
  need SG_ID NET_ID || return 1
  run admin security group rule create --ingress --protocol icmp "$SG_ID" -f json || return 1
  RULE_ID="$(printf '%s' "$OUT" | js get id)"
  until_ping "qdhcp-$NET_ID" "$IP2" ok 2
}

# Anti-spoofing: the judge's namespace (a port with port security) reaches
# gn2 with its own address and MAC, and not with another.
s_spoof() {
  need JUDGE || return 1
  ping_from "$PORT_NS" "$IP2" && echo "from its own address 10.77.0.30: answered" || { echo "not answered from its own address"; return 1; }
  ip -n "$PORT_NS" addr add 10.77.0.99/24 dev eth0 || return 1
  if ping_from "$PORT_NS" "$IP2" -I 10.77.0.99; then echo "a spoofed source address got through"; return 1; fi
  echo "from a spoofed address 10.77.0.99: nothing"
  ip -n "$PORT_NS" addr del 10.77.0.99/24 dev eth0
  ip -n "$PORT_NS" link set eth0 address fa:16:3e:de:ad:01 || return 1
  ip -n "$PORT_NS" neigh flush all 2>/dev/null
  local spoofed=0
  if ping_from "$PORT_NS" "$IP2"; then spoofed=1; fi
  ip -n "$PORT_NS" link set eth0 address "$JUDGE"
  [ "$spoofed" = 0 ] || { echo "a spoofed MAC got through"; return 1; }
  echo "from a spoofed MAC: nothing"
}

# plug NS PORT_ID MAC: a namespace NS plugged in as the port (a veth
# named as the port's tap, which the agent wires like a guest's).
plug() {
  ip netns add "$1" && ip -n "$1" link set lo up &&
    ip -n "$FERRO_NETNS" link add "tap${2:0:11}" type veth peer name eth0 netns "$1" &&
    ip -n "$1" link set eth0 address "$3" up && wait_port "$2" ACTIVE
}

# Another project's network with the same CIDR: a port there with the
# judge's own address gets its lease from that network's DHCP and reaches
# that network's DHCP port while the judge reaches gn2 (one conntrack zone
# per network), and it reaches nothing of the first network.
s_same_cidr() {
  need JUDGE || return 1
  local port mac
  run admin project create --domain default gn-other -f json || return 1
  run admin network create --project gn-other gn-net2 -f json || return 1
  run admin subnet create --project gn-other --network gn-net2 --subnet-range 10.77.0.0/24 gn-sub2 -f json || return 1
  run admin port create --project gn-other --network gn-net2 --fixed-ip "subnet=gn-sub2,ip-address=10.77.0.30" \
      --device-owner compute:nova --host "$CHOST" gn2-other -f json || return 1
  port="$(printf '%s' "$OUT" | js get id)"; mac="$(printf '%s' "$OUT" | js get mac_address)"
  plug "$PORT2_NS" "$port" "$mac" || return 1
  run ip netns exec "$PORT2_NS" busybox udhcpc -i eth0 -n -q -t 5 -T 2 -s "$work/udhcpc.sh" || return 1
  expect_eq "its address" "$(ip -n "$PORT2_NS" -4 -o addr show dev eth0 | awk '{print $4}')" 10.77.0.30/24 || return 1
  local a=0 b=0 i
  for i in 1 2 3; do
    ping_from "$PORT2_NS" 10.77.0.2 & a=$!
    ping_from "$PORT_NS" "$IP2" & b=$!
    wait "$a" || { echo "10.77.0.30 on gn-net2 did not reach its DHCP port"; return 1; }
    wait "$b" || { echo "10.77.0.30 on $NET did not reach gn2"; return 1; }
  done
  echo "the same address on both networks: its DHCP port and gn2 answer, 3 times at once"
  if ping_from "$PORT2_NS" "$IP2"; then echo "gn-net2 reached gn2 on $NET"; return 1; fi
  if ping_from "$PORT2_NS" "$IP1"; then echo "gn-net2 reached gn1 on $NET"; return 1; fi
  echo "from gn-net2: neither gn1 nor gn2 answer"
}

# A port cannot serve DHCP: an offer from the judge (UDP 67 -> 68) never
# reaches another port of the network, while the same datagram from
# another source port does.
s_dhcp_guard() {
  need JUDGE NET_ID || return 1
  local port mac r
  run admin port create --network "$NET" --fixed-ip "subnet=$SUB,ip-address=10.77.0.31" \
      --device-owner compute:nova --host "$CHOST" gn2-client -f json || return 1
  port="$(printf '%s' "$OUT" | js get id)"; mac="$(printf '%s' "$OUT" | js get mac_address)"
  plug "$PORT3_NS" "$port" "$mac" && ip -n "$PORT3_NS" addr add 10.77.0.31/24 dev eth0 || return 1
  printf '%s\n' 'import socket, sys' \
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)' \
    's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)' \
    's.bind(("0.0.0.0", 68)); s.settimeout(float(sys.argv[1]))' \
    'try: print(s.recvfrom(100)[0].decode())' \
    'except socket.timeout: print("nothing")' > "$work/listen68.py"
  printf '%s\n' 'import socket, sys' \
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)' \
    's.bind(("10.77.0.30", int(sys.argv[1])))' \
    'for _ in range(5): s.sendto(sys.argv[2].encode(), ("10.77.0.31", 68))' > "$work/send.py"
  for from in 1067 67; do
    ip netns exec "$PORT3_NS" python3 "$work/listen68.py" 3 > "$work/got68" &
    r=$!
    sleep 0.5
    ip netns exec "$PORT_NS" python3 "$work/send.py" "$from" "OFFER-FROM-$from"
    wait "$r"
    echo "# from UDP port $from to 10.77.0.31:68: $(cat "$work/got68")"
    if [ "$from" = 1067 ]; then
      grep -q OFFER-FROM-1067 "$work/got68" || { echo "the control datagram did not arrive"; return 1; }
    else
      expect_eq "a DHCP server's datagram" "$(cat "$work/got68")" nothing || return 1
    fi
  done
}

# The host is protected: a service listening on an address of the host
# (here its namespace's), which the port's namespace addresses to the
# bridge's own MAC, is not reached, though the host would even route the
# answer back.
s_host_protected() {
  need JUDGE NET_ID || return 1
  local br="brq${NET_ID:0:11}" brmac got lpid
  brmac="$(ip -n "$FERRO_NETNS" -o link show "$br" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')"
  [ -n "$brmac" ] || { echo "no $br"; return 1; }
  ip -n "$FERRO_NETNS" addr add 10.200.0.1/32 dev lo &&
    ip -n "$FERRO_NETNS" route add 10.77.0.30/32 dev "$br" &&
    ip -n "$PORT_NS" route add 10.200.0.1/32 dev eth0 &&
    ip -n "$PORT_NS" neigh replace 10.200.0.1 lladdr "$brmac" dev eth0 || return 1
  ip netns exec "$FERRO_NETNS" sh -c 'echo HOST-SERVICE | timeout 6 busybox nc -l -p 8777' > /dev/null 2>&1 &
  lpid=$!
  sleep 0.3
  got="$(ip netns exec "$PORT_NS" timeout 3 busybox nc 10.200.0.1 8777 < /dev/null 2>&1)"
  kill "$lpid" 2>/dev/null; wait "$lpid" 2>/dev/null
  ip -n "$PORT_NS" route del 10.200.0.1/32 dev eth0
  ip -n "$FERRO_NETNS" route del 10.77.0.30/32 dev "$br"
  ip -n "$FERRO_NETNS" addr del 10.200.0.1/32 dev lo
  if printf '%s' "$got" | grep -q HOST-SERVICE; then echo "the port's namespace reached a service listening on the host"; return 1; fi
  echo "a service at 10.200.0.1:8777 in the host's namespace, sent to $br's MAC: not reached"
}

s_sg_removes() {
  need RULE_ID NET_ID || return 1
  run admin security group rule delete "$RULE_ID" || return 1
  until_ping "qdhcp-$NET_ID" "$IP2" blocked 2
}

s_stop_start_port() {
  need S1 P1 || return 1
  run admin server stop "$S1" || return 1
  wait_status "$S1" SHUTOFF && wait_port "$P1" DOWN || return 1
  run admin server start "$S1" || return 1
  wait_status "$S1" ACTIVE && wait_port "$P1" ACTIVE
}

# A hard reboot makes the tap anew at once: it is wired again.
s_hard_reboot() {
  need S1 || return 1
  local before t0=$SECONDS n
  before="$(console "$S1" | grep -c "DHCP-LEASE ip=$IP1 ")"
  run admin server reboot --hard "$S1" || return 1
  wait_status "$S1" ACTIVE || return 1
  while [ $((SECONDS - t0)) -lt "$WAIT_S" ]; do
    n="$(console "$S1" | grep -c "DHCP-LEASE ip=$IP1 ")"
    if [ "$n" -gt "$before" ]; then echo "leases on gn1's console: $before, then $n"; return 0; fi
    if console "$S1" | tail -n +"$((before + 1))" | grep -q DHCP-FAIL; then break; fi
    sleep 1
  done
  echo "no new lease after the hard reboot; console:"; console "$S1" | tail -20; return 1
}

# A router between the tenant network and `public`, whose gateway address
# the host holds on its bridge (as DevStack's br-ex): its ports turn ACTIVE;
# gn2 gets a floating IP; the host pings it and logs in with SSH as
# cirros, with the keypair's key; the floating IP deleted, it answers no
# more.
s_router() {
  need NET_ID SUB || return 1
  run admin router create gn-router -f json || return 1
  run admin router set --external-gateway public gn-router || return 1
  run admin router add subnet gn-router "$SUB" || return 1
  local t0=$SECONDS st
  while [ $((SECONDS - t0)) -lt 30 ]; do
    st="$(admin port list --router gn-router -f value -c Status < /dev/null | sort -u | tr '\n' ' ')"
    [ "$st" = "ACTIVE " ] && { echo "the router's ports: ACTIVE after $((SECONDS - t0)) s"; return 0; }
    sleep 0.5
  done
  echo "the router's ports: $st"; return 1
}

FIP=''
s_floating_ip() {
  need S2 SG_ID || return 1
  local p2
  # gn2's own port (the cloud-init step's port is gn2's too).
  p2="$(admin port list --server "$S2" --fixed-ip "ip-address=$IP2" -f value -c ID < /dev/null)"
  run admin security group rule create --ingress --protocol icmp "$SG_ID" -f json || return 1
  run admin security group rule create --ingress --protocol tcp --dst-port 22 "$SG_ID" -f json || return 1
  run admin floating ip create public --port "$p2" -f json || return 1
  FIP="$(printf '%s' "$OUT" | js get floating_ip_address)"
  until_ping "$FERRO_NETNS" "$FIP" ok 10
}

s_ssh() {
  need FIP || return 1
  run ip netns exec "$FERRO_NETNS" ssh -i "$work/key" -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -o BatchMode=yes \
      "cirros@$FIP" 'echo "user=$USER home=$HOME"; hostname; ip -4 -o addr show dev eth0' || return 1
  # (the image's cirros has uid 0, so `id -un` says root)
  printf '%s' "$OUT" | grep -qx "user=cirros home=/home/cirros" || { echo "not logged in as cirros"; return 1; }
  printf '%s' "$OUT" | grep -q "inet $IP2/" || { echo "not gn2 ($IP2)"; return 1; }
}

# gssh CMD: CMD in gn2 over SSH through its floating IP.
gssh() {
  run ip netns exec "$FERRO_NETNS" ssh -i "$work/key" -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -o BatchMode=yes "cirros@$FIP" "$1"
}

# os-interface: a NIC hot-plugged into the running gn2 gets its lease on
# the other network; removed, it leaves the guest.
s_nic_hotplug() {
  need FIP S2 || return 1
  run admin network create gn-nic -f json || return 1
  run admin subnet create gn-nic-sub --network gn-nic --subnet-range 10.79.0.0/24 -f json || return 1
  run admin port list --server "$S2" -f value -c ID || return 1
  local before; before="$(printf '%s\n' "$OUT" | grep -c .)"
  run admin server add network "$S2" gn-nic || return 1
  run admin port list --server "$S2" --network gn-nic -f json || return 1
  local ip; ip="$(printf '%s' "$OUT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["Fixed IP Addresses"][0]["ip_address"])')"
  gssh 'i=0; while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        ip link set eth1 up && udhcpc -i eth1 -n -q -t 5 -T 2 -s /bin/true 2>&1' || return 1
  printf '%s' "$OUT" | grep -q "lease of $ip obtained" || { echo "eth1 did not get $ip"; return 1; }
  run admin server remove network "$S2" gn-nic || return 1
  gssh 'i=0; while [ -e /sys/class/net/eth1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        ls /sys/class/net' || return 1
  printf '%s' "$OUT" | grep -qx eth1 && { echo "eth1 is still in the guest"; return 1; }
  run admin port list --server "$S2" -f value -c ID || return 1
  expect_eq "gn2's ports" "$(printf '%s\n' "$OUT" | grep -c .)" "$before" || return 1
  run admin network delete gn-nic
}

# Inside gn2: the metadata service's public-ipv4 is its floating IP, and
# it reaches the public network's gateway (the host), whose answers come
# back only through the router's translation (the host has no route to
# the tenant network). Without DHCP's host route to the metadata service,
# it is reached through the router (by the default route).
s_fip_inside() {
  need FIP || return 1
  local gw
  gw="$(admin subnet list --network public -f value -c ID < /dev/null | head -1)"
  gw="$(admin subnet show "$gw" -f value -c gateway_ip < /dev/null)"
  gssh "ip route del 169.254.169.254; ip route | grep -c 169.254.169.254;
        timeout 5 wget -q -O - http://169.254.169.254/2009-04-04/meta-data/public-ipv4; echo;
        ping -c 1 -W 2 $gw > /dev/null && echo GATEWAY-REACHED $gw" || return 1
  printf '%s\n' "$OUT" | head -1 | grep -qx 0 || { echo "the host route to the metadata service is still there"; return 1; }
  printf '%s\n' "$OUT" | grep -qx "$FIP" || { echo "public-ipv4 is not $FIP"; return 1; }
  printf '%s' "$OUT" | grep -q "GATEWAY-REACHED $gw" || { echo "gn2 did not reach $gw"; return 1; }
}

# Disassociated, the floating IP reaches nothing, and an SSH session open
# through it ends (the router forgets its connections, as the L3 agent
# deletes their conntrack state); associated with gn1's port, the same
# address logs in to gn1.
s_fip_moves() {
  need FIP S1 || return 1
  local p1 ticks="$work/ticks" sshpid i=0 a b
  ip netns exec "$FERRO_NETNS" ssh -i "$work/key" -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -o BatchMode=yes \
      "cirros@$FIP" 'while :; do echo tick; sleep 0.2; done' > "$ticks" 2> /dev/null &
  sshpid=$!
  until [ -s "$ticks" ] || [ $i -ge 150 ]; do sleep 0.1; i=$((i + 1)); done
  [ -s "$ticks" ] || { kill "$sshpid"; echo "the SSH session did not start"; return 1; }
  run admin floating ip unset --port "$FIP" || { kill "$sshpid"; return 1; }
  until_ping "$FERRO_NETNS" "$FIP" blocked 5 || { kill "$sshpid"; return 1; }
  sleep 1; a="$(wc -l < "$ticks")"; sleep 3; b="$(wc -l < "$ticks")"
  kill "$sshpid" 2> /dev/null; wait "$sshpid" 2> /dev/null
  [ "$a" = "$b" ] || { echo "the session through the floating IP still runs ($a, then $b lines)"; return 1; }
  echo "the open session stopped at $a lines"
  p1="$(admin port list --server "$S1" --fixed-ip "ip-address=$IP1" -f value -c ID < /dev/null)"
  # gn1's group (its project's default) lets the host in too.
  local sg
  sg="$(admin port show "$p1" -f json -c security_group_ids < /dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["security_group_ids"][0])')"
  run admin security group rule create --ingress --protocol icmp "$sg" -f json || return 1
  run admin security group rule create --ingress --protocol tcp --dst-port 22 "$sg" -f json || return 1
  run admin floating ip set --port "$p1" "$FIP" || return 1
  until_ping "$FERRO_NETNS" "$FIP" ok 10 || return 1
  gssh 'ip -4 -o addr show dev eth0' || return 1
  printf '%s' "$OUT" | grep -q "inet $IP1/" || { echo "$FIP does not lead to gn1 ($IP1)"; return 1; }
}

s_floating_ip_gone() {
  need FIP || return 1
  run admin floating ip delete "$FIP" || return 1
  until_ping "$FERRO_NETNS" "$FIP" blocked 5
}

s_teardown() {
  need S1 S2 NET_ID || return 1
  run admin server delete --wait "$S1" "$S2" || return 1
  # The port the cloud-init step made (a user's port outlives its server).
  ip netns del "$PORT_NS" 2>/dev/null || true
  for ns in "$PORT2_NS" "$PORT3_NS"; do ip netns del "$ns" 2>/dev/null || true; done
  local p
  for p in gn2-judge gn2-client gn2-other; do
    if admin port show "$p" > /dev/null 2>&1 < /dev/null; then run admin port delete "$p" || return 1; fi
  done
  if admin router show gn-router > /dev/null 2>&1 < /dev/null; then
    run admin router remove subnet gn-router "$SUB" || return 1
    run admin router delete gn-router || return 1
  fi
  if admin network show gn-net2 > /dev/null 2>&1 < /dev/null; then run admin network delete gn-net2 || return 1; fi
  if admin project show gn-other > /dev/null 2>&1 < /dev/null; then run admin project delete gn-other || return 1; fi
  run admin network delete "$NET" || return 1
  local br="brq${NET_ID:0:11}" t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 30 ]; do
    if ! ip -n "$FERRO_NETNS" link show "$br" > /dev/null 2>&1 && [ ! -e "/run/netns/qdhcp-$NET_ID" ]; then
      echo "$br and qdhcp-$NET_ID are gone"; return 0
    fi
    sleep 0.5
  done
  echo "$br or qdhcp-$NET_ID is still there"; return 1
}

step "network agent list shows the Linux bridge, DHCP and metadata agents alive" s_agents
step "image, network, subnet 10.77.0.0/24 and keypair created" s_setup
step "two guests with fixed addresses reach ACTIVE" s_boot
step "their ports are ACTIVE (network-vif-plugged before they ran)" s_ports_active
step "each guest's console shows its DHCP lease from qdhcp-<network>" s_leases
step "gn2 reads its uuid, EC2 instance-id and key from 169.254.169.254" s_metadata
step "the metadata service answers no address that is not an instance's" s_metadata_unknown
step "Debian's cloud-init OpenStack and EC2 readers read gn2's metadata from a port's namespace" s_cloud_init
step "without an ICMP rule in gn2's group, neither gn1 nor the DHCP namespace reach it" s_sg_blocks
step "an ICMP ingress rule lets the DHCP namespace ping gn2 within 2 s" s_sg_allows
step "gn1 pings gn2 across the network's bridge once the rule allows it" s_ping_between
step "a port's namespace reaches gn2 from its own address and MAC, not from spoofed ones" s_spoof
step "another project's network with the same CIDR: its port and gn2's neighbours work at once, apart" s_same_cidr
step "a port serving DHCP reaches no other port" s_dhcp_guard
step "a port's namespace cannot reach a service listening on the host" s_host_protected
step "deleting the rule stops new pings within 2 s" s_sg_removes
step "a stopped guest's port goes DOWN, and ACTIVE again when it starts" s_stop_start_port
step "after a hard reboot the guest gets its lease again" s_hard_reboot
step "a router from the network to public: its ports turn ACTIVE" s_router
step "gn2's floating IP answers the host's ping" s_floating_ip
step "the host logs in to gn2 as cirros with SSH through its floating IP" s_ssh
step "a NIC hot-plugged into gn2 (server add network) gets its lease there; removed, it leaves the guest" s_nic_hotplug
step "inside gn2: metadata public-ipv4 (through the router, without the DHCP host route) is its floating IP; it reaches the public gateway through the router" s_fip_inside
step "the floating IP disassociated answers nothing and its open SSH session ends; associated with gn1, it leads to gn1" s_fip_moves
step "the floating IP deleted, it answers no more" s_floating_ip_gone
step "deleting the guests and the network removes its bridge and qdhcp namespace" s_teardown

echo "guest-network: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

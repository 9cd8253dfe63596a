#!/usr/bin/env bash
# The compute golden path, driven with the real `openstack` CLI (and osc-placement)
# against a private ferrostack started for this run with 3 fake hypervisor hosts
# (FERROSTACK__COMPUTE__FAKE_HOSTS=3), all as admin:
#   catalog and version discovery of compute + placement; upload a small raw image
#   (cirros); flavors m1.tiny and m1.small; a generated keypair (private key written)
#   and an imported one; boot s1 and take it through stop/start, soft and hard reboot,
#   pause/unpause, resize + confirm, snapshot, its instance actions, delete; boot 10
#   servers in one request and see them spread over at least 2 hosts; with the quotas
#   lifted, a flavor no host can hold ends in ERROR with a fault naming the filter (or
#   Placement); hypervisor, compute service, resource provider, availability zone,
#   quota and limits listings; clean-up.
#
#   scripts/golden-path-compute.sh
#
# Environment: VERBOSE=1 (print every step's output), KEEP=1 (keep the temp dir),
# FERRO_EXTRA_ARGS (extra `ferrostack serve` arguments), FERROSTACK_BIN (see lib.sh),
# WAIT_S=60 (timeout of each wait for a server status), CLI_TIMEOUT=120 (limit of each
# `openstack` command, `--wait` ones included; exit status 124 when it is hit).
# GP_CLOUD_FILE=clouds.yaml [GP_CLOUD=name]: run against that existing cloud instead of
# starting ferrostack (to check the script itself, e.g. against ../shared/peers; the
# checks of 3 hosts then fail there).
#
# Each step prints `ok - <step>` or `not ok - <step>` followed by its commands and
# output; the last line is `golden-path-compute: N passed, N failed`. Exit status 1 if
# a step failed.
source "$(dirname "$0")/lib.sh"

NHOSTS=3
WAIT_S="${WAIT_S:-60}"
CLI_TIMEOUT="${CLI_TIMEOUT:-120}"
read -r -a serve_args <<< "${FERRO_EXTRA_ARGS:-}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-golden-compute.XXXXXX")"
cleanup() {
  local rc=$?
  ferro_stop
  if [ "${KEEP:-0}" = 1 ]; then
    echo "golden-path-compute.sh: kept $work (server log: $work/data/ferrostack.log)" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bail() {  # bail STEP: one failed step before any check could run
  echo "not ok - $1"
  echo "golden-path-compute: 0 passed, 1 failed"
  exit 1
}
command -v ssh-keygen > /dev/null || bail "ssh-keygen is installed (apt-get install openssh-client)"
venv="$(ferro_venv)"
OSC="$venv/bin/openstack"
PY="$venv/bin/python"
data="$work/data"
CLOUD="${GP_CLOUD:-ferrostack}"
if [ -n "${GP_CLOUD_FILE:-}" ]; then
  cp "$GP_CLOUD_FILE" "$work/clouds.yaml"
  echo "# against the existing cloud '$CLOUD' of $GP_CLOUD_FILE (no ferrostack started)"
else
  export FERROSTACK__COMPUTE__FAKE_HOSTS="$NHOSTS"
  ferro_start "$data" "${serve_args[@]}" || bail "start ferrostack (FERROSTACK__COMPUTE__FAKE_HOSTS=$NHOSTS)"
  echo "# ferrostack pid $FERRO_PID at $FERRO_URL (data $data, $NHOSTS fake hosts)"
  [ -s "$data/clouds.yaml" ] || bail "ferrostack wrote $data/clouds.yaml"
  cp "$data/clouds.yaml" "$work/clouds.yaml"
fi

# The CLI gets a private HOME and none of the caller's OS_* variables.
mkdir -p "$work/home"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_CACHE_HOME="$work/home/.cache"
for v in $(compgen -e); do case "$v" in OS_*) unset "$v" ;; esac; done
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"
export OS_CLIENT_CONFIG_FILE="$work/clouds.yaml"

# ---------------------------------------------------------------- helpers

# shellcheck source=golden_cli.sh
source "$(dirname "$0")/golden_cli.sh"

# ---------------------------------------------------------------- names
IMG=cirros TINY=m1.tiny SMALL=m1.small HUGE=m1.huge KEY=k KEY2=k-imported
SRV=s1 SNAP=snap MANY=many BIG=huge
RAW="$work/cirros.raw" PRIV="$work/k.pem"
IMG_ID='' TINY_ID='' SMALL_ID='' HUGE_ID='' KEY_OK='' SRV_ID='' MANY_IDS='' BIG_ID=''
HYP_NAMES='' SNAP_ID=''

# ---------------------------------------------------------------- steps
s_admin_token() { run admin token issue -f json; }
s_catalog() {
  run admin catalog list -f json || return 1
  local t
  for t in compute placement image; do
    "$PY" -c 'import json, sys
rows = [r for r in json.load(sys.stdin) if r.get("Type") == sys.argv[1] and r.get("Endpoints")]
sys.exit(0 if rows else 1)' "$t" <<< "$OUT" || { echo "no $t service with endpoints"; return 1; }
  done
}
# `versions show` follows the catalog to each service's version document.
s_versions() {
  run admin versions show -f json --service compute --status CURRENT || return 1
  local max; max="$(js col "Max Microversion" <<< "$OUT" | head -1)"
  expect_eq "compute max microversion" "$max" 2.100 || return 1
  run admin versions show -f json --service placement --status CURRENT || return 1
  max="$(js col "Max Microversion" <<< "$OUT" | head -1)"
  expect_eq "placement max microversion" "$max" 1.39
}
s_image() {
  head -c 1048576 /dev/zero > "$RAW"
  run admin image create -f json --file "$RAW" --disk-format raw --container-format bare \
      "$IMG" || return 1
  IMG_ID="$(js get id <<< "$OUT")" || return 1
  run admin image show -f json "$IMG_ID" || return 1
  expect_eq status "$(js get status <<< "$OUT")" active
}
# ensure_flavor NAME RAM DISK VCPUS VAR: create it, or accept an existing one with the
# same sizes (m1.* flavors may already exist); sets VAR to its id
ensure_flavor() {
  local name="$1" ram="$2" disk="$3" vcpus="$4" var="$5"
  if admin flavor show -f json "$name" > "$work/flavor.json" 2> /dev/null < /dev/null; then
    echo "(flavor $name already exists)"
    run admin flavor show -f json "$name" || return 1
  else
    run admin flavor create -f json --ram "$ram" --disk "$disk" --vcpus "$vcpus" "$name" ||
      return 1
  fi
  expect_eq ram "$(js get ram <<< "$OUT")" "$ram" || return 1
  expect_eq disk "$(js get disk <<< "$OUT")" "$disk" || return 1
  expect_eq vcpus "$(js get vcpus <<< "$OUT")" "$vcpus" || return 1
  printf -v "$var" '%s' "$(js get id <<< "$OUT")"
}
s_tiny() { ensure_flavor "$TINY" 512 1 1 TINY_ID; }
s_small() { ensure_flavor "$SMALL" 2048 20 1 SMALL_ID; }
s_keypair() {
  run admin keypair create -f json --private-key "$PRIV" "$KEY" || return 1
  [ -s "$PRIV" ] || { echo "no private key written to $PRIV"; return 1; }
  head -1 "$PRIV"
  grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$PRIV" || { echo "not a private key"; return 1; }
  chmod 600 "$PRIV"
  local derived stored
  derived="$(ssh-keygen -y -f "$PRIV" | awk '{print $1, $2}')" || return 1
  run admin keypair show -f value --public-key "$KEY" || return 1
  stored="$(awk '{print $1, $2}' <<< "$OUT")"
  expect_eq "public key of the written private key (ssh-keygen -y)" "${derived:0:60}..." \
      "${stored:0:60}..." || return 1
  [ "$derived" = "$stored" ] || return 1
  KEY_OK=1
}
s_keypair_import() {
  run ssh-keygen -q -t rsa -b 2048 -N '' -C golden -f "$work/imported" || return 1
  run admin keypair create -f json --public-key "$work/imported.pub" "$KEY2" || return 1
  local want; want="$(ssh-keygen -l -E md5 -f "$work/imported.pub" | awk '{print $2}')"
  expect_eq fingerprint "$(js get fingerprint <<< "$OUT")" "${want#MD5:}" || return 1
  run admin keypair list -f json || return 1
  local names; names="$(js col name <<< "$OUT")"
  grep -qx "$KEY" <<< "$names" && grep -qx "$KEY2" <<< "$names"
}
# Compute 2.92 takes imported keys only: the CLI makes the key pair itself.
s_keypair_latest() {
  run admin --os-compute-api-version 2.100 keypair create -f json --private-key "$work/k3.pem" \
      k3 || return 1
  chmod 600 "$work/k3.pem"
  local derived stored
  derived="$(ssh-keygen -y -f "$work/k3.pem" | awk '{print $1, $2}')" || return 1
  run admin --os-compute-api-version 2.100 keypair show -f value --public-key k3 || return 1
  stored="$(awk '{print $1, $2}' <<< "$OUT")"
  [ -n "$derived" ] && [ "$derived" = "$stored" ] || { echo "stored key is not the written one's"; return 1; }
  run admin --os-compute-api-version 2.100 keypair delete k3
}
# 2.90 hostname on create and update (an FQDN from 2.94), shown to everyone.
s_hostname() {
  need IMG_ID TINY_ID || return 1
  run admin --os-compute-api-version 2.94 server create -f json --image "$IMG" \
      --flavor "$TINY" --nic none --hostname web-01.example.org --wait hn || return 1
  run admin --os-compute-api-version 2.100 server show -f json hn || return 1
  expect_eq hostname "$(js get OS-EXT-SRV-ATTR:hostname <<< "$OUT")" web-01.example.org || return 1
  expect_eq pinned_availability_zone "$(js get pinned_availability_zone <<< "$OUT")" None || return 1
  run admin --os-compute-api-version 2.90 server set --hostname web-02 hn || return 1
  run admin --os-compute-api-version 2.90 server show -f json hn || return 1
  expect_eq hostname "$(js get OS-EXT-SRV-ATTR:hostname <<< "$OUT")" web-02 || return 1
  run admin server delete --wait hn
}
s_boot() {
  need IMG_ID TINY_ID KEY_OK || return 1
  run admin server create -f json --image "$IMG" --flavor "$TINY" --key-name "$KEY" --wait \
      "$SRV" || return 1
  SRV_ID="$(js get id <<< "$OUT")" || return 1
  run admin server show -f json "$SRV" || return 1
  expect_eq status "$(js get status <<< "$OUT")" ACTIVE || return 1
  expect_eq key_name "$(js get key_name <<< "$OUT")" "$KEY" || return 1
  echo "flavor: $(js get flavor <<< "$OUT"); image: $(js get image <<< "$OUT")"
  js get flavor <<< "$OUT" | grep -q -- "$TINY" || { echo "(flavor is not $TINY)"; return 1; }
  js get image <<< "$OUT" | grep -q -- "$IMG_ID" || { echo "(image is not $IMG_ID)"; return 1; }
}
# action SUBCOMMAND... STATUS: `server SUBCOMMAND... s1`, then wait for STATUS
action() {
  need SRV_ID || return 1
  local want="${*: -1}" args=("${@:1:$#-1}")
  run admin server "${args[@]}" "$SRV" || return 1
  wait_status "$SRV" "$want"
}
s_stop() { action stop SHUTOFF && expect_eq power_state "$(power_state "$SRV")" Shutdown; }
s_start() { action start ACTIVE && expect_eq power_state "$(power_state "$SRV")" Running; }
s_reboot_soft() { action reboot --wait ACTIVE; }
s_reboot_hard() { action reboot --hard --wait ACTIVE; }
s_pause() { action pause PAUSED; }
s_unpause() { action unpause ACTIVE && expect_eq power_state "$(power_state "$SRV")" Running; }
s_resize() { need SMALL_ID && action resize --flavor "$SMALL" --wait VERIFY_RESIZE; }
s_resize_confirm() {
  need SMALL_ID || return 1
  action resize confirm ACTIVE || return 1
  run admin server show -f json "$SRV" || return 1
  echo "flavor: $(js get flavor <<< "$OUT")"
  js get flavor <<< "$OUT" | grep -q -- "$SMALL" || { echo "(flavor is not $SMALL)"; return 1; }
}
s_snapshot() {
  need SRV_ID || return 1
  run admin server image create -f json --wait --name "$SNAP" "$SRV" || return 1
  SNAP_ID="$(js get id <<< "$OUT")" || return 1
  run admin image list -f json || return 1
  expect_eq "status of $SNAP in image list" "$(js where ID "$SNAP_ID" Status <<< "$OUT")" active ||
    return 1
  expect_eq "name" "$(js where ID "$SNAP_ID" Name <<< "$OUT")" "$SNAP"
}
s_events() {
  need SRV_ID || return 1
  run admin server event list -f json "$SRV" || return 1
  local actions a missing=''
  actions="$(js col Action <<< "$OUT")"
  for a in create stop start reboot pause unpause resize confirmResize; do
    grep -qx "$a" <<< "$actions" || missing="$missing $a"
  done
  [ -z "$missing" ] || { echo "(actions missing:$missing)"; return 1; }
  local req; req="$(js col "Request ID" <<< "$OUT" | head -1)"
  run admin server event show -f json "$SRV" "$req"
}
s_list() {
  need SRV_ID || return 1
  run admin server list -f json || return 1
  expect_eq "status of $SRV in server list" "$(js where ID "$SRV_ID" Status <<< "$OUT")" ACTIVE
}
s_delete() {
  need SRV_ID || return 1
  run admin server delete --wait "$SRV" || return 1
  run admin server list -f json || return 1
  if js col ID <<< "$OUT" | grep -qx "$SRV_ID"; then echo "$SRV_ID still listed"; return 1; fi
  if admin server show "$SRV_ID" < /dev/null > /dev/null 2>&1; then
    echo "server show $SRV_ID still works"; return 1
  fi
  echo "server show $SRV_ID: not found"
}
s_many() {
  need IMG_ID TINY_ID || return 1
  run admin server create -f json --image "$IMG" --flavor "$TINY" --nic none \
      --min 10 --max 10 --wait "$MANY" || return 1
  local t0=$SECONDS n=0 act=0
  while :; do
    admin server list -f json --name "$MANY" > "$work/many.json" 2> "$work/stderr" < /dev/null || true
    n="$(js count < "$work/many.json" 2> /dev/null || echo 0)"
    act="$(js col Status < "$work/many.json" 2> /dev/null | grep -cx ACTIVE)"
    echo "  $((SECONDS - t0)) s: $n servers named $MANY*, $act ACTIVE"
    [ "$act" = 10 ] && [ "$n" = 10 ] && break
    js col Status < "$work/many.json" 2> /dev/null | grep -qx ERROR && { cat "$work/many.json"; return 1; }
    [ $((SECONDS - t0)) -ge "$WAIT_S" ] && { cat "$work/many.json" "$work/stderr"; return 1; }
    sleep 1
  done
  MANY_IDS="$(js col ID < "$work/many.json" | paste -sd' ')"
  js col Name < "$work/many.json" | sort -V | paste -sd' '
}
s_spread() {
  need MANY_IDS || return 1
  run admin server list -f json --long -c ID -c Name -c Host --name "$MANY" || return 1
  local hosts first; hosts="$(js col Host <<< "$OUT" | sort | uniq -c)"
  echo "servers per host:"; echo "$hosts"
  [ "$(js col Host <<< "$OUT" | grep -c .)" = 10 ] || { echo "(a server without a host)"; return 1; }
  [ "$(wc -l <<< "$hosts")" -ge 2 ] || { echo "(all on one host)"; return 1; }
  first="${MANY_IDS%% *}"
  run admin server show -f value -c OS-EXT-SRV-ATTR:host "$first" || return 1
  expect_eq "OS-EXT-SRV-ATTR:host of $first (server show)" "$OUT" \
      "$(js where ID "$first" Host <<< "$(admin server list -f json --long -c ID -c Host \
         --name "$MANY" < /dev/null)")"
}
# The project's quotas are lifted first, so that scheduling refuses the server, not the
# quota check of the API (Nova's default ram quota is 51200 MB, instances 10).
s_no_host() {
  need IMG_ID || return 1
  local project; project="$(admin token issue -f value -c project_id < /dev/null)"
  run admin quota set --instances -1 --cores -1 --ram -1 "$project" || return 1
  run admin flavor create -f json --ram 100000000 --disk 1 --vcpus 1 "$HUGE" || return 1
  HUGE_ID="$(js get id <<< "$OUT")" || return 1
  run admin server create -f json --image "$IMG" --flavor "$HUGE" --nic none "$BIG" || return 1
  BIG_ID="$(js get id <<< "$OUT")" || return 1
  wait_status "$BIG" ERROR || return 1
  run admin server show -f json -c status -c fault "$BIG" || return 1
  local fault; fault="$(js get fault <<< "$OUT")"
  [ -n "$fault" ] && [ "$fault" != None ] && [ "$fault" != null ] || { echo "(no fault)"; return 1; }
  grep -qiE 'filter|placement' <<< "$fault" ||
    { echo "(the fault names no filter and not Placement)"; return 1; }
  echo "fault names: $(grep -oiE '[A-Za-z]*filter[A-Za-z]*|placement' <<< "$fault" | sort -u | paste -sd' ')"
}
s_hypervisors() {
  run admin hypervisor list -f json || return 1
  expect_eq "hypervisors" "$(js count <<< "$OUT")" "$NHOSTS" || return 1
  HYP_NAMES="$(js col "Hypervisor Hostname" <<< "$OUT" | sort)"
  expect_eq "distinct hostnames" "$(sort -u <<< "$HYP_NAMES" | wc -l)" "$NHOSTS" || return 1
  local bad; bad="$(js col State <<< "$OUT" | grep -vcx up)"
  expect_eq "hypervisors not up" "$bad" 0
}
s_services() {
  run admin compute service list -f json || return 1
  local hosts; hosts="$(js where Binary nova-compute Host <<< "$OUT" | sort)"
  expect_eq "nova-compute hosts" "$(sort -u <<< "$hosts" | grep -c .)" "$NHOSTS" || return 1
  local states; states="$(js where Binary nova-compute State <<< "$OUT" | sort | uniq -c)"
  echo "nova-compute states: $(echo $states)"
  [ "$(js where Binary nova-compute State <<< "$OUT" | grep -vcx up)" = 0 ] || return 1
  [ "$(js where Binary nova-compute Status <<< "$OUT" | grep -vcx enabled)" = 0 ] || return 1
  if [ -n "$HYP_NAMES" ]; then
    expect_eq "nova-compute hosts = hypervisor hostnames" "$(echo $hosts)" "$(echo $HYP_NAMES)"
  fi
}
s_providers() {
  run admin resource provider list -f json || return 1
  expect_eq "resource providers" "$(js count <<< "$OUT")" "$NHOSTS" || return 1
  if [ -n "$HYP_NAMES" ]; then
    expect_eq "provider names = hypervisor hostnames" "$(js col name <<< "$OUT" | sort | paste -sd' ')" \
        "$(echo $HYP_NAMES)" || return 1
  fi
  local rp; rp="$(js col uuid <<< "$OUT" | head -1)"
  run admin resource provider inventory list -f json "$rp" || return 1
  local rc; rc="$(js col resource_class <<< "$OUT" | sort | paste -sd' ')"
  expect_eq "inventory resource classes" "$rc" "DISK_GB MEMORY_MB VCPU"
}
s_azs() {
  run admin availability zone list -f json || return 1
  expect_eq "status of zone nova" "$(js where "Zone Name" nova "Zone Status" <<< "$OUT" | head -1)" \
      available
}
s_quota() {
  run admin quota show -f json || return 1
  local r v
  for r in instances cores ram; do
    v="$(js kv Resource Limit "$r" <<< "$OUT")" || return 1
    echo "$r: $v"
    [[ "$v" =~ ^-?[0-9]+$ ]] || return 1
  done
}
s_limits() {
  run admin limits show --absolute -f json || return 1
  local max used servers
  max="$(js kv Name Value maxTotalInstances <<< "$OUT")" || return 1
  used="$(js kv Name Value totalInstancesUsed <<< "$OUT")" || return 1
  echo "maxTotalInstances $max, totalInstancesUsed $used"
  js kv Name Value totalCoresUsed <<< "$OUT" > /dev/null || return 1
  js kv Name Value totalRAMUsed <<< "$OUT" > /dev/null || return 1
  servers="$(admin server list -f value -c ID < /dev/null | grep -c .)"
  expect_eq "totalInstancesUsed = servers in the project" "$used" "$servers"
}
s_delete_all() {
  local ids; ids="$(admin server list -f value -c ID --name "$MANY" < /dev/null | paste -sd' ')"
  ids="$(echo $ids $BIG_ID)"
  [ -n "$ids" ] || { echo "no servers to delete"; return 1; }
  # shellcheck disable=SC2086
  run admin server delete --wait $ids || return 1
  run admin server list -f json || return 1
  expect_eq "servers left" "$(js count <<< "$OUT")" 0
}
s_cleanup() {
  local rc=0
  [ -n "$SNAP_ID" ] && { run admin image delete "$SNAP_ID" || rc=1; }
  [ -n "$IMG_ID" ] && { run admin image delete "$IMG_ID" || rc=1; }
  run admin keypair delete "$KEY" "$KEY2" || rc=1
  [ -n "$HUGE_ID" ] && { run admin flavor delete "$HUGE_ID" || rc=1; }
  run admin keypair list -f json || rc=1
  [ "$(js count <<< "$OUT")" = 0 ] || { echo "keypairs left"; rc=1; }
  return "$rc"
}

step "token issue (admin)"                                          s_admin_token
step "catalog list shows compute, placement and image"              s_catalog
step "versions show: compute max 2.100, placement max 1.39"         s_versions
step "image create --file cirros.raw (raw, 1 MiB): active"          s_image
step "flavor create $TINY (512 MB, 1 GB, 1 vCPU)"                   s_tiny
step "flavor create $SMALL (2048 MB, 20 GB, 1 vCPU)"                s_small
step "keypair create --private-key: key written, matches the stored public key" s_keypair
step "keypair create --public-key (import): md5 fingerprint"         s_keypair_import
step "keypair create --private-key at compute 2.100 (the CLI generates it)" s_keypair_latest
step "server create --hostname (2.94 FQDN), server set --hostname (2.90)" s_hostname
step "server create --image --flavor --key-name --wait $SRV: ACTIVE" s_boot
step "server stop: SHUTOFF"                                         s_stop
step "server start: ACTIVE"                                         s_start
step "server reboot --wait (soft): ACTIVE"                          s_reboot_soft
step "server reboot --hard --wait: ACTIVE"                          s_reboot_hard
step "server pause: PAUSED"                                         s_pause
step "server unpause: ACTIVE"                                       s_unpause
step "server resize --flavor $SMALL --wait: VERIFY_RESIZE"          s_resize
step "server resize confirm: ACTIVE with $SMALL"                    s_resize_confirm
step "server image create --wait --name $SNAP: active in image list" s_snapshot
step "server event list: every action recorded; event show"         s_events
step "server list shows $SRV ACTIVE"                                s_list
step "server delete --wait $SRV: gone"                              s_delete
step "server create --min 10 --max 10 --nic none: 10 ACTIVE"        s_many
step "the 10 servers are spread over >= 2 hosts (list --long Host, show host)" s_spread
step "a flavor no host can hold (100000000 MB): ERROR, fault names the filter" s_no_host
step "hypervisor list: $NHOSTS hosts, up"                           s_hypervisors
step "compute service list: nova-compute up and enabled on each host" s_services
step "resource provider list: $NHOSTS providers (one per host) with VCPU/MEMORY_MB/DISK_GB" s_providers
step "availability zone list: nova available"                       s_azs
step "quota show: instances, cores, ram"                            s_quota
step "limits show --absolute: totalInstancesUsed = servers"         s_limits
step "server delete --wait (all the others): none left"             s_delete_all
step "clean-up: images, keypairs, flavor"                           s_cleanup

echo "golden-path-compute: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

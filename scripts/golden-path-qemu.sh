#!/usr/bin/env bash
# The real-guest golden path, driven with the real `openstack` CLI against a
# private ferrostack started with the QEMU driver (virt_type qemu: TCG, as on
# this machine; FERRO_VIRT_TYPE=kvm or auto elsewhere), all as admin:
#   hypervisor show says QEMU; upload the project's guest image
#   (scripts/build-guest-image.sh) as a new user would; `server create --wait
#   --user-data --config-drive True` and `console log show` shows the user data's
#   random string and the server's uuid; `console url show` opens noVNC in
#   headless Chromium, which types on the guest's screen; stop, start, soft and hard reboot, pause,
#   unpause, suspend, resume, resize --confirm, rebuild, each reaching the upstream
#   state with the QEMU process in the matching state (running, paused, gone);
#   `server image create`, and the snapshot boots a second guest; delete leaves no
#   QEMU process, overlay or socket behind.
#
#   scripts/golden-path-qemu.sh
#
# Environment: VERBOSE=1, KEEP=1, FERRO_EXTRA_ARGS, FERROSTACK_BIN (see lib.sh),
# WAIT_S=120 (each wait for a server status), CLI_TIMEOUT=300, FERRO_VIRT_TYPE=qemu.
#
# Each step prints `ok - <step>` or `not ok - <step>`; the last line is
# `golden-path-qemu: N passed, N failed`. Exit status 1 if a step failed.
source "$(dirname "$0")/lib.sh"

WAIT_S="${WAIT_S:-120}"
CLI_TIMEOUT="${CLI_TIMEOUT:-300}"
read -r -a serve_args <<< "${FERRO_EXTRA_ARGS:-}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-golden-qemu.XXXXXX")"
data="$work/data"
cleanup() {
  local rc=$?
  ferro_stop
  ferro_kill_guests "$data"
  if [ "${KEEP:-0}" = 1 ]; then
    echo "golden-path-qemu.sh: kept $work (server log: $data/ferrostack.log)" >&2
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
  echo "golden-path-qemu: 0 passed, 1 failed"
  exit 1
}
for c in qemu-system-x86_64:qemu-system-x86 genisoimage:genisoimage qemu-img:qemu-utils \
         chromium:chromium chromedriver:chromium-driver; do
  ferro_need "${c%%:*}" "${c#*:}" || bail "${c%%:*} is installed"
done
ferro_need_file /usr/share/novnc/vnc_lite.html novnc || bail "noVNC (Debian's novnc) is installed"
GUEST_IMAGE="$(bash "$REPO/scripts/build-guest-image.sh" 2> "$work/build.log" | tail -1)"
[ -f "$GUEST_IMAGE" ] || { cat "$work/build.log"; bail "scripts/build-guest-image.sh built the guest image"; }
venv="$(ferro_venv)"
OSC="$venv/bin/openstack"
PY="$venv/bin/python"
CLOUD=ferrostack
export FERROSTACK__COMPUTE__COMPUTE_DRIVER=qemu
export FERROSTACK__COMPUTE__VIRT_TYPE="${FERRO_VIRT_TYPE:-qemu}"
export FERROSTACK__COMPUTE__SHUTDOWN_TIMEOUT=20
ferro_start "$data" "${serve_args[@]}" || bail "start ferrostack (compute_driver qemu)"
echo "# ferrostack pid $FERRO_PID at $FERRO_URL (data $data, QEMU driver)"
[ -s "$data/clouds.yaml" ] || bail "ferrostack wrote $data/clouds.yaml"
cp "$data/clouds.yaml" "$work/clouds.yaml"

mkdir -p "$work/home"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_CACHE_HOME="$work/home/.cache"
for v in $(compgen -e); do case "$v" in OS_*) unset "$v" ;; esac; done
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"
export OS_CLIENT_CONFIG_FILE="$work/clouds.yaml"

# shellcheck source=golden_cli.sh
source "$(dirname "$0")/golden_cli.sh"

IMG=ferro-guest TINY=m1.tiny SMALL=m1.small SRV=g1 SRV2=g2 SNAP=g1-snap
WORD="golden-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
IMG_ID='' SRV_ID='' SNAP_ID='' SRV2_ID=''
INST="$FERROSTACK__COMPUTE__INSTANCES_PATH"

# qemu_pid UUID: the pid of that guest's QEMU, if it runs
qemu_pid() {
  local pid; pid="$(cat "$INST/$1/qemu.pid" 2>/dev/null)" || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1" || return 1
  echo "$pid"
}
# qemu_state UUID: running | paused | gone (the process of that guest, asked over QMP)
qemu_state() {
  qemu_pid "$1" > /dev/null || { echo gone; return; }
  qmp "$1" query-status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["status"])'
}
# qmp UUID COMMAND [ARGUMENTS_JSON]: QMP's answer (JSON) to COMMAND, from that guest's QEMU
qmp() {
  "$PY" - "$INST/$1/run/qmp.sock" "$2" "${3:-}" <<'PYEOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
def ex(c, args=None):
    f.write(json.dumps({"execute": c, **({"arguments": args} if args else {})}) + "\n"); f.flush()
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
ex("qmp_capabilities")
r = ex(sys.argv[2], json.loads(sys.argv[3]) if sys.argv[3] else None)
if "error" in r:
    sys.exit(r["error"]["desc"])
print(json.dumps(r.get("return")))
PYEOF
}
expect_qemu() {  # expect_qemu UUID WANT
  local st t0=$SECONDS
  while :; do
    st="$(qemu_state "$1")"
    [ "$st" = "$2" ] && { echo "QEMU of $1: $st"; return 0; }
    [ $((SECONDS - t0)) -ge 30 ] && { echo "QEMU of $1: $st (want $2)"; return 1; }
    sleep 0.5
  done
}
# console_has SERVER TEXT [COUNT]: wait until `console log show` has TEXT COUNT times
console_has() {
  local srv="$1" text="$2" n="${3:-1}" t0=$SECONDS got
  while :; do
    got="$(admin console log show "$srv" < /dev/null 2>/dev/null | grep -cF -- "$text")"
    [ "${got:-0}" -ge "$n" ] && { echo "console of $srv: \"$text\" x$got"; return 0; }
    if [ $((SECONDS - t0)) -ge "$WAIT_S" ]; then
      echo "console of $srv: \"$text\" x${got:-0} (want $n) after $WAIT_S s; last lines:"
      admin console log show "$srv" < /dev/null | tail -20
      return 1
    fi
    sleep 1
  done
}
boots() { admin console log show "$1" < /dev/null 2>/dev/null | grep -c GUEST-BOOTED; }

s_hypervisor() {
  run admin hypervisor list -f json --long || return 1
  expect_eq "hypervisor type" "$(js col "Hypervisor Type" <<< "$OUT" | head -1)" QEMU
}
s_image() {
  run admin image create -f json --file "$GUEST_IMAGE" --disk-format qcow2 \
      --container-format bare --public "$IMG" || return 1
  IMG_ID="$(js get id <<< "$OUT")"
  expect_eq status "$(js get status <<< "$OUT")" active
}
s_flavors() {
  run admin flavor show -f json "$TINY" && run admin flavor show -f json "$SMALL"
}
s_boot() {
  need IMG_ID || return 1
  printf '#!/bin/sh\necho %s\n' "$WORD" > "$work/user-data"
  run admin server create -f json --image "$IMG" --flavor "$TINY" --config-drive True \
      --user-data "$work/user-data" --nic none --wait "$SRV" || return 1
  SRV_ID="$(js get id <<< "$OUT")"
  expect_eq status "$(js get status <<< "$OUT")" ACTIVE || return 1
  expect_qemu "$SRV_ID" running
}
s_console() {
  need SRV_ID || return 1
  console_has "$SRV" "INSTANCE-UUID $SRV_ID" && console_has "$SRV" "$WORD" &&
    console_has "$SRV" GUEST-READY
}
# Diagnostics are the QEMU process's own counters (CPU time, disk reads).
s_diagnostics() {
  need SRV_ID || return 1
  run admin server show --diagnostics -f json "$SRV" || return 1
  local got
  got="$(printf '%s' "$OUT" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
if "cpu_details" in d:
    cpu, disk = d["cpu_details"][0]["time"], d["disk_details"][0]["read_bytes"]
else:
    cpu, disk = d["cpu0_time"], d["vda_read"]
print(f"cpu0 {cpu / 1e9:.1f} s, vda read {disk // 1024} KiB" if cpu > 0 and disk > 0 else "empty")
')" || return 1
  echo "# diagnostics: $got"
  [ "$got" != empty ]
}
# The browser console: noVNC in headless Chromium types on the guest's screen
# a command that copies a random string to the serial port, and `console log
# show` has it. Then the proxy refuses the used token; with a new URL it
# refuses a foreign Origin (without spending the token), greets a client
# that sends no Origin (as Tempest's does), and refuses that token again.
s_vnc() {
  need SRV_ID || return 1
  local word url cb="$REPO/scripts/console_browser.py"
  word="vnc$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')"
  run admin console url show -f value -c url "$SRV" || return 1
  url="$OUT"
  run "$PY" "$cb" type "$url" "$word" "$work/console.png" || return 1
  console_has "$SRV" "$word" || return 1
  echo "# typed through noVNC in Chromium, read back by console log show: $word"
  run "$PY" "$cb" refused "$url" "" || return 1
  run admin console url show -f value -c url "$SRV" || return 1
  url="$OUT"
  run "$PY" "$cb" refused "$url" "http://evil.example" &&
    run "$PY" "$cb" rfb "$url" && run "$PY" "$cb" refused "$url" "" || return 1
  echo "# refused: the used token, a foreign Origin, the token once used; greeted: RFB"
}
act() {  # act WANT_STATUS WANT_QEMU SUBCOMMAND...
  need SRV_ID || return 1
  local want="$1" q="$2"; shift 2
  run admin server "$@" "$SRV" || return 1
  wait_status "$SRV" "$want" && expect_qemu "$SRV_ID" "$q"
}
s_stop() { act SHUTOFF gone stop && expect_eq power_state "$(power_state "$SRV")" Shutdown; }
s_start() {
  local b; b="$(boots "$SRV")"
  act ACTIVE running start && console_has "$SRV" GUEST-BOOTED $((b + 1))
}
s_reboot_soft() {
  local b; b="$(boots "$SRV")"
  act ACTIVE running reboot --wait && console_has "$SRV" GUEST-BOOTED $((b + 1))
}
s_reboot_hard() {
  local b; b="$(boots "$SRV")"
  act ACTIVE running reboot --hard --wait && console_has "$SRV" GUEST-BOOTED $((b + 1))
}
s_pause() { act PAUSED paused pause && expect_eq power_state "$(power_state "$SRV")" Paused; }
s_unpause() { act ACTIVE running unpause; }
s_suspend() {
  act SUSPENDED gone suspend || return 1
  [ -s "$INST/$SRV_ID/state.save" ] && echo "memory saved: $(du -h "$INST/$SRV_ID/state.save" | cut -f1)"
}
s_resume() {
  local b; b="$(boots "$SRV")"
  act ACTIVE running resume || return 1
  [ ! -e "$INST/$SRV_ID/state.save" ] || { echo "state.save left"; return 1; }
  # Restored, not rebooted: no new boot on the console.
  sleep 2; expect_eq "boots after resume" "$(boots "$SRV")" "$b"
}
s_resize() {
  act VERIFY_RESIZE running resize --flavor "$SMALL" --wait || return 1
  run admin server resize confirm "$SRV" || return 1
  wait_status "$SRV" ACTIVE || return 1
  run admin server show -f json "$SRV" || return 1
  js get flavor <<< "$OUT" | grep -q -- "$SMALL" || { echo "(flavor is not $SMALL)"; return 1; }
  local pid; pid="$(cat "$INST/$SRV_ID/qemu.pid")"
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "-m 2048" || { echo "QEMU has not 2048 MB"; return 1; }
  echo "QEMU runs with -m 2048"
}
s_rebuild() {
  local b; b="$(boots "$SRV")"
  act ACTIVE running rebuild --image "$IMG" --wait || return 1
  console_has "$SRV" "INSTANCE-UUID $SRV_ID" 1
}
s_snapshot() {
  need SRV_ID || return 1
  run admin server image create -f json --wait --name "$SNAP" "$SRV" || return 1
  SNAP_ID="$(js get id <<< "$OUT")"
  run admin image show -f json "$SNAP_ID" || return 1
  expect_eq status "$(js get status <<< "$OUT")" active
}
s_boot_snapshot() {
  need SNAP_ID || return 1
  run admin server create -f json --image "$SNAP" --flavor "$SMALL" --config-drive True \
      --nic none --wait "$SRV2" || return 1
  SRV2_ID="$(js get id <<< "$OUT")"
  expect_qemu "$SRV2_ID" running && console_has "$SRV2" "INSTANCE-UUID $SRV2_ID"
}
# confined UUID RAM_MB: QEMU under an uid of its own with seccomp on, in a
# cgroup limited to the flavor's RAM plus QEMU's overhead
confined() {
  local pid uid seccomp limit cg="ferrostack/instance-$1"
  pid="$(qemu_pid "$1")" || { echo "no QEMU for $1"; return 1; }
  uid="$(awk '/^Uid:/{print $2}' "/proc/$pid/status")"
  seccomp="$(awk '/^Seccomp:/{print $2}' "/proc/$pid/status")"
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then limit="$(cat "/sys/fs/cgroup/$cg/memory.max")"
  else limit="$(cat "/sys/fs/cgroup/memory/$cg/memory.limit_in_bytes")"; fi
  echo "# QEMU $pid of $1: uid $uid, seccomp $seccomp, memory limit $((limit >> 20)) MiB"
  [ "$uid" != 0 ] && [ "$seccomp" = 2 ] && [ "$((limit >> 20))" = "$(($2 + 208))" ] || return 1
  UIDS="${UIDS:-} $uid"
}
s_confined() {
  need SRV2_ID || return 1
  UIDS=''
  confined "$SRV_ID" 2048 && confined "$SRV2_ID" 2048 || return 1
  [ "$(tr ' ' '\n' <<< "$UIDS" | sed '/^$/d' | sort -u | wc -l)" = 2 ] || { echo "uids shared:$UIDS"; return 1; }
  ps -o user,pid,args -p "$(qemu_pid "$SRV_ID")" | cut -c1-100
}
# Privilege separation: what serves HTTP (the APIs and the console proxy)
# runs as the service user with no capabilities, a child of the root helper
# that started it, which itself listens on no TCP port; the guest's files
# are its uid's with the service's group, its directory the service's.
s_privsep() {
  need SRV_ID || return 1
  local api vnc uid caps svc pid quid
  api="$FERRO_SERVICE_PID"
  vnc="$(ss -ltnpH "sport = :${FERROSTACK__VNC__NOVNCPROXY_LISTEN##*:}" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
  [ -n "$api" ] || { echo "no process listens on $FERRO_PORT"; return 1; }
  uid="$(awk '/^Uid:/{print $2}' "/proc/$api/status")"
  caps="$(awk '/^CapEff:/{print $2}' "/proc/$api/status")"
  svc="$(id -u ferrostack)" || { echo "no user ferrostack"; return 1; }
  echo "# API :$FERRO_PORT and console proxy: pid $api, uid $uid ($(id -nu "$uid")), CapEff $caps; root helper: pid $FERRO_PID, uid $(awk '/^Uid:/{print $2}' "/proc/$FERRO_PID/status")"
  expect_eq "uid serving HTTP" "$uid" "$svc" && expect_eq "its capabilities" "$caps" 0000000000000000 &&
    expect_eq "console proxy's pid" "$vnc" "$api" &&
    expect_eq "its parent" "$(awk '{print $4}' "/proc/$api/stat")" "$FERRO_PID" || return 1
  if ss -ltnpH | grep -q "pid=$FERRO_PID,"; then echo "the root helper listens on TCP"; return 1; fi
  pid="$(qemu_pid "$SRV_ID")" || return 1
  quid="$(awk '/^Uid:/{print $2}' "/proc/$pid/status")"
  stat -c '# %n %U:%G %a' "$INST/$SRV_ID" "$INST/$SRV_ID/disk" "$INST/$SRV_ID/run/qmp.sock"
  expect_eq "guest directory" "$(stat -c '%u:%g %a' "$INST/$SRV_ID")" "$svc:$quid 710" &&
    expect_eq "guest disk" "$(stat -c '%u:%g %a' "$INST/$SRV_ID/disk")" "$quid:$(id -g ferrostack) 660" || return 1
}
# kill -9 of ferrostack while guests run: they still run, and after a
# restart they are ACTIVE and obey stop and start.
s_kill9() {
  need SRV2_ID || return 1
  # A third guest, so that three run when ferrostack dies.
  local k=g-k9 kid p1 p2 p3 s
  run admin server create --image "$IMG" --flavor "$TINY" --nic none --wait -f value -c id "$k" || return 1
  kid="$OUT"
  p1="$(qemu_pid "$SRV_ID")" p2="$(qemu_pid "$SRV2_ID")" p3="$(qemu_pid "$kid")"
  kill -KILL "$FERRO_PID"; wait "$FERRO_PID" 2>/dev/null || true
  FERRO_PID=
  expect_eq "QEMU of $SRV after kill -9" "$(qemu_pid "$SRV_ID")" "$p1" || return 1
  expect_eq "QEMU of $SRV2 after kill -9" "$(qemu_pid "$SRV2_ID")" "$p2" || return 1
  expect_eq "QEMU of $k after kill -9" "$(qemu_pid "$kid")" "$p3" || return 1
  ferro_start "$data" "${serve_args[@]}" || return 1
  echo "# restarted: ferrostack pid $FERRO_PID; 3 guests ran through it"
  for s in "$SRV" "$SRV2" "$k"; do wait_status "$s" ACTIVE || return 1; done
  expect_qemu "$SRV_ID" running && expect_qemu "$SRV2_ID" running && expect_qemu "$kid" running || return 1
  # Each obeys stop and start (SRV's own stop/start come in later steps).
  for s in "$SRV2" "$k"; do run admin server stop "$s" || return 1; done
  for s in "$SRV2" "$k"; do wait_status "$s" SHUTOFF || return 1; done
  expect_qemu "$SRV2_ID" gone && expect_qemu "$kid" gone || return 1
  for s in "$SRV2" "$k"; do run admin server start "$s" || return 1; done
  for s in "$SRV2" "$k"; do wait_status "$s" ACTIVE || return 1; done
  expect_qemu "$SRV2_ID" running && expect_qemu "$kid" running || return 1
  run admin server stop "$SRV" && wait_status "$SRV" SHUTOFF && expect_qemu "$SRV_ID" gone &&
    run admin server start "$SRV" && wait_status "$SRV" ACTIVE && expect_qemu "$SRV_ID" running || return 1
  run admin server delete --wait "$k"
}
# A guest powered off from inside (`poweroff -f` typed on its serial
# console; QEMU ends): SHUTOFF at the next power-state sync.
s_poweroff_inside() {
  need SRV2_ID || return 1
  # Once the guest has booted again after the start above (a power button
  # pressed while its kernel starts is not seen).
  console_has "$SRV2" GUEST-READY 2 || return 1
  local t0=$SECONDS
  "$PY" - "$INST/$SRV2_ID/run/serial.sock" <<'PYEOF' || return 1
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
import time
# One byte at a time, as typed: the guest's UART has a 16-byte FIFO.
for b in b"\npoweroff -f\n":
    s.sendall(bytes([b])); time.sleep(0.05)
time.sleep(1)
s.close()
PYEOF
  wait_status "$SRV2" SHUTOFF || return 1
  echo "# SHUTOFF $((SECONDS - t0)) s after the guest powered off"
}
# A host reboot as Nova's resume_guests_state_on_host_boot sees it: while
# ferrostack is down, the guests' QEMU processes are gone. Started again
# with the option, the guest that ran boots again; the stopped one stays
# SHUTOFF.
s_host_boot() {
  need SRV_ID SRV2_ID || return 1
  local b p; b="$(boots "$SRV")"; p="$(qemu_pid "$SRV_ID")"
  [ -n "$p" ] || { echo "QEMU of $SRV is not running"; return 1; }
  kill -KILL "$FERRO_PID"; wait "$FERRO_PID" 2>/dev/null || true
  FERRO_PID=
  kill -KILL "$p"
  for _ in $(seq 50); do [ -d "/proc/$p" ] || break; sleep 0.1; done
  expect_qemu "$SRV_ID" gone || return 1
  FERROSTACK__COMPUTE__RESUME_GUESTS_STATE_ON_HOST_BOOT=true ferro_start "$data" "${serve_args[@]}" || return 1
  echo "# restarted with resume_guests_state_on_host_boot: ferrostack pid $FERRO_PID"
  expect_qemu "$SRV_ID" running && console_has "$SRV" GUEST-BOOTED $((b + 1)) &&
    wait_status "$SRV" ACTIVE || return 1
  expect_eq "status of $SRV2 (stopped before)" "$(admin server show -f value -c status "$SRV2" < /dev/null)" SHUTOFF &&
    expect_qemu "$SRV2_ID" gone || return 1
  echo "# $SRV booted again after the host's reboot; $SRV2 stayed SHUTOFF"
}
# A guest whose disk holds 1 GiB of data (written through its QEMU's block
# layer while it runs, past the image's own blocks): `server image create` copies it while the guest runs
# and streams it to the Image service with ferrostack's RSS nearly flat; the
# image boots.
s_big_snapshot() {
  need SRV_ID || return 1
  local off rss0 peak sampler t0
  "$PY" - "$INST/$SRV_ID/run/qmp.sock" <<'PYEOF' || return 1
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(120); s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
def ex(c, args=None):
    f.write(json.dumps({"execute": c, **({"arguments": args} if args else {})}) + "\n"); f.flush()
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
ex("qmp_capabilities")
# 16 writes of 64 MiB (QEMU's memory stays within its cgroup), from 1 GiB
# on: the image's own blocks (its first 146 MiB) stay intact, so it boots.
for n in range(16):
    r = ex("human-monitor-command",
           {"command-line": f'qemu-io drive0 "write -P 0x5a {(1 << 30) + (n << 26)} {1 << 26}"'})
    if "error" in r or "error" in r.get("return", "").lower():
        sys.exit(f"write {n}: {r}")
PYEOF
  echo "# wrote 1 GiB into the running guest's disk; overlay now $(du -h "$INST/$SRV_ID/disk" | cut -f1)"
  # the process serving the APIs and streaming the image
  rss0="$(awk '/^VmRSS:/{print $2}' "/proc/$FERRO_SERVICE_PID/status")"
  ( while kill -0 "$FERRO_SERVICE_PID" 2>/dev/null; do awk '/^VmRSS:/{print $2}' "/proc/$FERRO_SERVICE_PID/status"; sleep 0.2; done ) > "$work/rss" 2>/dev/null &
  sampler=$!
  t0=$SECONDS
  run admin server image create -f json --wait --name big-snap "$SRV" || { kill "$sampler"; return 1; }
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  peak="$(sort -n "$work/rss" | tail -1)"
  run admin image show -f json big-snap || return 1
  echo "# 1 GiB disk snapshot in $((SECONDS - t0)) s, image $(( $(js get size <<< "$OUT") >> 20 )) MiB; ferrostack RSS $((rss0 >> 10)) MiB before, $((peak >> 10)) MiB peak (+$(((peak - rss0) >> 10)) MiB)"
  expect_qemu "$SRV_ID" running || return 1
  [ $((peak - rss0)) -lt $((64 << 10)) ] || { echo "RSS grew by $(((peak - rss0) >> 10)) MiB (limit 64)"; return 1; }
  run admin server create -f json --image big-snap --flavor "$SMALL" --config-drive True --nic none --wait g3 || return 1
  local g3; g3="$(js get id <<< "$OUT")"
  console_has g3 "INSTANCE-UUID $g3" || return 1
  run admin server delete --wait g3 && run admin image delete big-snap
}
# kill -9 of ferrostack during 10 builds: after the restart each one ends
# ACTIVE with its QEMU running or ERROR with a fault, never ACTIVE without a
# guest; deleting them leaves no QEMU behind.
s_kill9_builds() {
  need IMG_ID || return 1
  run admin quota set --instances -1 --cores -1 --ram -1 admin || return 1
  run admin server create -f json --image "$IMG" --flavor "$TINY" --nic none \
      --min 10 --max 10 kb || return 1
  sleep "${KILL_AFTER_S:-4}"
  kill -KILL "$FERRO_PID"; wait "$FERRO_PID" 2>/dev/null || true
  FERRO_PID=
  ferro_start "$data" "${serve_args[@]}" || return 1
  echo "# killed during the builds, restarted: ferrostack pid $FERRO_PID"
  local t0=$SECONDS ids id st active=0 error=0 bad=0 pending
  while :; do
    run admin server list -f json --name '^kb-' -c ID -c Status > /dev/null || return 1
    pending="$("$PY" -c 'import json,sys; print(sum(1 for s in json.load(sys.stdin) if s["Status"] not in ("ACTIVE","ERROR")))' <<< "$OUT")"
    [ "$pending" = 0 ] && break
    [ $((SECONDS - t0)) -ge 300 ] && { echo "$pending builds unfinished after 300 s"; printf '%s\n' "$OUT"; return 1; }
    sleep 2
  done
  ids="$("$PY" -c 'import json,sys; [print(s["ID"], s["Status"]) for s in json.load(sys.stdin)]' <<< "$OUT")"
  [ "$(wc -l <<< "$ids")" = 10 ] || { echo "not 10 servers: $ids"; return 1; }
  while read -r id st; do
    if [ "$st" = ACTIVE ]; then
      if qemu_pid "$id" > /dev/null; then active=$((active + 1)); else echo "$id ACTIVE without QEMU"; bad=1; fi
    else
      run admin server show -f json -c fault "$id" > /dev/null
      if grep -q '"message"' <<< "$OUT"; then error=$((error + 1)); else echo "$id ERROR without a fault"; bad=1; fi
    fi
  done <<< "$ids"
  echo "# after kill -9 during 10 builds: $active ACTIVE with QEMU running, $error ERROR with a fault"
  KB_IDS="$(cut -d' ' -f1 <<< "$ids")"
  [ "$bad" = 0 ] || return 1
  # shellcheck disable=SC2086
  run admin server delete --wait $KB_IDS || return 1
  for id in $KB_IDS; do
    [ "$(qemu_state "$id")" = gone ] || { echo "QEMU of $id still runs"; return 1; }
  done
}
s_delete() {
  need SRV_ID || return 1
  local ids="$SRV_ID $SRV2_ID"
  run admin server delete --wait $SRV ${SRV2_ID:+$SRV2} || return 1
  local id left=0
  for id in $ids; do
    [ "$(qemu_state "$id")" = gone ] || { echo "QEMU of $id still runs"; left=1; }
    [ ! -e "$INST/$id" ] || { echo "$INST/$id left:"; ls -la "$INST/$id"; left=1; }
  done
  [ "$left" = 0 ] && echo "no QEMU process, overlay or socket left"
}
s_cleanup() {
  run admin image delete "$SNAP" ${IMG_ID:+"$IMG"}
}

step "hypervisor list --long: QEMU"                                      s_hypervisor
step "image create --file <guest image> --disk-format qcow2: active"     s_image
step "flavors $TINY and $SMALL exist"                                    s_flavors
step "server create --config-drive True --user-data --wait: ACTIVE, QEMU running" s_boot
step "console log show: the user data's string, the uuid, GUEST-READY"   s_console
step "server show --diagnostics: the guest's CPU time and disk reads"   s_diagnostics
step "console url show: noVNC in Chromium types to the guest; tokens one-time, Origin checked" s_vnc
step "server stop: SHUTOFF, no QEMU process"                             s_stop
step "server start: ACTIVE, QEMU running, booted again"                  s_start
step "server reboot --wait (soft): ACTIVE, booted again"                 s_reboot_soft
step "server reboot --hard --wait: ACTIVE, booted again"                 s_reboot_hard
step "server pause: PAUSED, QEMU paused"                                 s_pause
step "server unpause: ACTIVE, QEMU running"                              s_unpause
step "server suspend: SUSPENDED, memory saved, no QEMU process"          s_suspend
step "server resume: ACTIVE, restored (not rebooted)"                    s_resume
step "server resize --flavor $SMALL --wait + confirm: ACTIVE, QEMU -m 2048" s_resize
step "server rebuild --image --wait: ACTIVE, booted from the image again" s_rebuild
step "server image create --wait: snapshot active"                       s_snapshot
step "server create --image <snapshot>: a second guest boots"            s_boot_snapshot
step "confined: own uids, seccomp, cgroup memory = RAM + overhead"    s_confined
step "privilege separation: HTTP served by user ferrostack, root only in the helper" s_privsep
step "kill -9 ferrostack with 3 guests: they run on; after restart ACTIVE, stop/start" s_kill9
step "guest powers off from inside: SHUTOFF at the next sync"           s_poweroff_inside
step "host reboot + resume_guests_state_on_host_boot: the running guest boots again" s_host_boot
step "1 GiB disk: server image create while running, RSS flat, it boots" s_big_snapshot
step "kill -9 during 10 builds: each ACTIVE with QEMU or ERROR with a fault" s_kill9_builds
step "server delete --wait: no QEMU process, overlay or socket left"     s_delete
step "clean-up: images"                                                  s_cleanup

echo "golden-path-qemu: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

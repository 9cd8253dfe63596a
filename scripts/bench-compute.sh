#!/usr/bin/env bash
# Compute benchmark: ferrostack's Compute (Nova v2.1 API, fake virt driver) and
# Placement beside real Nova 34 + Placement 16 (../shared/peers, fake driver
# FakeDriverWithoutFakeNodes, SQLite, RabbitMQ), measured in the same run on the same
# machine by the same client code (bench/compute_load.py, stdlib only).
#
#   scripts/bench-compute.sh
#
# Measures:
#   * start-up: ms from launching the server(s) until identity answers, a token is
#     issued, the compute API answers, and nova-compute is up on every host with its
#     hypervisor listed (compute_load.py ready, polling every 100 ms). ferrostack:
#     one `ferrostack serve` on a data dir bootstrapped by a first start (that first
#     start is reported too); peer: ../shared/peers/up.sh after setup.sh (memcached,
#     Keystone, Glance, Placement, RabbitMQ, neutron stub, nova-api, -conductor,
#     -scheduler, -compute), plus up.sh's own wall time.
#   * idle RSS after IDLE_S s without requests: the ferrostack process vs the sum
#     over the peer's process groups (Keystone + Glance + Placement + Nova
#     api/conductor/scheduler/compute + RabbitMQ incl. epmd + memcached; the
#     neutron stub, which is no real service, is listed but not counted).
#   * server create -> ACTIVE: SEQ (100) boots one after another (POST, then GET the
#     server every POLL = 50 ms) and CONC (100) POSTs released together from CONC
#     threads (one poller lists /servers/detail every 50 ms); flavor bench-boot
#     (1 vCPU, 64 MB, 1 GB), 1 MiB raw image, networks "none", microversion 2.79;
#     p50/p99 over all boots (a boot that fails or is not ACTIVE after CONC_TIMEOUT
#     counts as infinitely slow). The servers are deleted after each phase.
#   * GET /allocation_candidates?resources=VCPU:1,MEMORY_MB:512,DISK_GB:1 with NRPS
#     (1000) resource providers created through the Placement API (VCPU/MEMORY_MB/
#     DISK_GB inventory each; the compute hosts' own providers come on top):
#     NREQ (200) sequential requests after 5 warm-up ones, microversion PLACEMENT_MV.
#   Targets: ferrostack <= 1/10 of the peer's latencies (peer/ferrostack >= 10x),
#   ferrostack idle RSS <= 1/20 of the peer's (>= 20x).
# ferrostack and the peer never run at the same time; before every measured step the
# script waits until the machine is idle (bench/cpu_watch.py --quiet-wait).
#
# The peer uses fixed loopback ports (5000 9292 8778 8774 9696 5672 25672 4369 11211).
# When one of them is taken on this machine (e.g. a system RabbitMQ on 5672), the peer
# runs in a private network namespace (`ip netns`, needs root) with its own loopback,
# and the load for it runs in there too (PEER_NETNS=auto; 1 = always; 0 = never, then
# the peer half is skipped when a port is busy).
#
# Environment:
#   FERRO=1           0 = skip ferrostack (peer only)
#   PEER=1            0 = skip the peer (ferrostack only); skipped as well when
#                     ../shared/peers is absent (FERRO_PEERS overrides the path)
#   SEQ=100 CONC=100  boots per phase (0 = skip the phase)
#   POLL=0.05         status poll interval (s)
#   CONC_TIMEOUT=300  s until the concurrent boots count as timed out (real Nova on
#                     SQLite wedges on concurrent boots: ../shared/peers/BASELINE.md)
#   NRPS=1000 NREQ=200 PLACEMENT_MV=1.39   placement load
#   FAKE_HOSTS=1      ferrostack's fake hosts (the peer has one nova-compute); each
#                     with the resources of Nova's fake driver (1000 vCPU, 800000 MB,
#                     600000 GB) so that CONC servers fit
#   IDLE_S=10         idle seconds before RSS is read
#   QUIET_MAX=300     max seconds to wait for an idle machine before each step
#   QUIET_THRESH=0.10 "idle" = whole machine busy below this many cores (3 s window)
#   BENCH_PASSWORD=secret  admin password for both systems
#   FERROSTACK_BIN    binary to measure (default target/release/ferrostack; this
#                     script does not build unless BUILD=1, which uses lib.sh
#                     ferro_bin). Copied at the start, so a rebuild during the run is
#                     harmless. A binary under target/debug is flagged.
#   FERRO_EXTRA_ARGS  extra `ferrostack serve` arguments
#   RESULTS_DIR=target/bench   where the results table + raw outputs go
#   KEEP=1            keep the temporary directory (server data, peer data + logs)
# Needs: python3 (stdlib only), curl. Peer half: ../shared/peers (setup.sh installs
# the peer venv the first time: minutes of pip; inside a network namespace there is no
# network, so run `PEER_NOVA=1 bash ../shared/peers/setup.sh` once beforehand).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
set +e   # keep going on failures; each step reports its own
BENCH="$REPO/scripts/bench"
PEERS="${FERRO_PEERS:-$REPO/../shared/peers}"
FERRO="${FERRO:-1}"
PEER="${PEER:-1}"
SEQ="${SEQ:-100}"
CONC="${CONC:-100}"
POLL="${POLL:-0.05}"
CONC_TIMEOUT="${CONC_TIMEOUT:-300}"
NRPS="${NRPS:-1000}"
NREQ="${NREQ:-200}"
PLACEMENT_MV="${PLACEMENT_MV:-1.39}"
FAKE_HOSTS="${FAKE_HOSTS:-1}"
IDLE_S="${IDLE_S:-10}"
QUIET_MAX="${QUIET_MAX:-300}"
QUIET_THRESH="${QUIET_THRESH:-0.10}"
PEER_NETNS="${PEER_NETNS:-auto}"
PW="${BENCH_PASSWORD:-secret}"
RESULTS_DIR="${RESULTS_DIR:-$REPO/target/bench}"
PY="$(command -v python3)"
LOAD=("$PY" "$BENCH/compute_load.py")
read -r -a serve_args <<< "${FERRO_EXTRA_ARGS:-}"
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"
export LC_ALL=C

# One benchmark at a time on this machine (same lock as bench-identity/-image: the
# same cores, and the peers use the same fixed ports).
LOCK="${TMPDIR:-/tmp}/ferrostack-bench-identity.lock"
exec 9>>"$LOCK"
if ! flock -n 9; then
  echo "bench-compute.sh: another benchmark holds $LOCK; waiting for it to finish" >&2
  flock 9
fi

stamp="$(date +%Y%m%d-%H%M%S)"
RES="$RESULTS_DIR/compute-$stamp"
TABLE="$RESULTS_DIR/compute-$stamp.txt"
mkdir -p "$RES"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-bench-compute.XXXXXX")"
# started as root, ferrostack serves as the user `ferrostack`: it must reach the data dir
chmod 711 "$work"
PEER_DATA_DIR="$work/peer"
peer_up=0
NS="" NS_USED=""

say() { echo "== $(date +%H:%M:%S) $*" | tee -a "$RES/log.txt" >&2; }
problem() { echo "$*" >> "$RES/problems.txt"; say "PROBLEM: $*"; }
cleanup() {
  local rc=$?
  ferro_stop
  if [ "$peer_up" = 1 ]; then PEER_NOVA=1 bash "$PEERS/down.sh" "$PEER_DATA_DIR" >> "$RES/peer-down.log" 2>&1; fi
  if [ -n "$NS" ]; then ip netns del "$NS" 2>/dev/null; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "bench-compute.sh: kept $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

quiet() { "$PY" "$BENCH/cpu_watch.py" --quiet-wait "$QUIET_MAX" "$QUIET_THRESH" 2>&1 | tee -a "$RES/log.txt" >&2; }
now_ns() { date +%s%N; }
# pexec CMD...: run CMD where the peer lives (its network namespace, if any)
pexec() { if [ -n "$NS" ]; then ip netns exec "$NS" "$@"; else "$@"; fi; }
# tree_mem PID -> "rss_MiB pss_MiB nprocs" of PID and its descendants
tree_mem() {
  local pids="$1" todo="$1" p kids rss=0 pss=0 n=0 r q
  while [ -n "$todo" ]; do
    kids=""
    for p in $todo; do kids="$kids $(ps -o pid= --ppid "$p" 2>/dev/null | tr '\n' ' ')"; done
    todo="$(echo $kids)"; pids="$pids $todo"
  done
  for p in $pids; do
    r=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null); q=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    [ -n "$r" ] || continue
    rss=$((rss + r)); pss=$((pss + ${q:-0})); n=$((n + 1))
  done
  awk -v r="$rss" -v q="$pss" -v n="$n" 'BEGIN{printf "%.1f %.1f %d\n", r/1024, q/1024, n}'
}
# group_mem PGID -> "rss_MiB pss_MiB nprocs" summed over the process group
group_mem() {
  local rss=0 pss=0 n=0 p r q
  for p in $(ps -o pid= -g "$1"); do
    r=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null); q=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    [ -n "$r" ] || continue
    rss=$((rss + r)); pss=$((pss + ${q:-0})); n=$((n + 1))
  done
  awk -v r="$rss" -v q="$pss" -v n="$n" 'BEGIN{printf "%.1f %.1f %d\n", r/1024, q/1024, n}'
}
# field FILE LINE-NAME KEY -> value of KEY=... on the line starting with LINE-NAME
field() {
  awk -v n="$2" -v k="$3" '$1==n { for (i=2;i<=NF;i++) { split($i,a,"="); if (a[1]==k) { print substr($i, length(k)+2); exit } } }' "$1" 2>/dev/null
}
# load SYSTEM NAME ARGS...: compute_load.py (in the peer's namespace for the peer);
# output in $RES/SYSTEM-NAME.txt (stdout) and .log (stderr)
load() {
  local sys=$1 name=$2; shift 2
  local run=("${LOAD[@]}"); [ "$sys" = peer ] && run=(pexec "${LOAD[@]}")
  "${run[@]}" "$@" > "$RES/$sys-$name.txt" 2> "$RES/$sys-$name.log"
  local rc=$?
  [ "$rc" = 0 ] || problem "$sys $name: compute_load.py exited $rc: $(grep -h -E 'FAILED|->' "$RES/$sys-$name.log" | tail -2)"
  sed 's/^/   /' "$RES/$sys-$name.txt" | tee -a "$RES/log.txt" >&2
}
# the benchmark steps shared by both systems: AUTH_URL SYSTEM
measure() {
  local auth=$1 sys=$2
  say "$sys: boots (seq $SEQ, conc $CONC)"
  quiet
  load "$sys" boots boots "$auth" "$PW" --seq "$SEQ" --conc "$CONC" --poll "$POLL" \
      --conc-timeout "$CONC_TIMEOUT"
  say "$sys: placement ($NRPS providers, $NREQ x allocation_candidates)"
  quiet
  load "$sys" placement placement "$auth" "$PW" --rps "$NRPS" --requests "$NREQ" --mv "$PLACEMENT_MV"
  if [ "$sys" = ferrostack ]; then
    local ph
    for ph in seq conc; do
      [ "$(field "$RES/$sys-boots.txt" "boot_$ph" error)" = 0 ] && [ "$(field "$RES/$sys-boots.txt" "boot_$ph" timeout)" = 0 ] ||
        problem "ferrostack $ph boots: $(grep "^boot_$ph " "$RES/$sys-boots.txt" | cut -d' ' -f2-5) (see $RES/$sys-boots.log)"
    done
  fi
}

# ====================================================================== header
peer_reason=""
PEER_PORTS="5000 9292 8778 8774 9696 5672 25672 4369 11211"
if [ "$PEER" != 1 ]; then peer_reason="PEER=$PEER"
elif [ ! -f "$PEERS/setup.sh" ]; then peer_reason="$PEERS absent"
else
  PEERS="$(cd "$PEERS" && pwd)"
  busy=""
  for p in $PEER_PORTS; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then busy="$busy $p"; fi
  done
  if [ "$PEER_NETNS" = 1 ] || { [ "$PEER_NETNS" = auto ] && [ -n "$busy" ]; }; then
    NS="ferro-bench-compute-$$"
    if ip netns add "$NS" 2>"$RES/netns.err" && ip netns exec "$NS" ip link set lo up 2>>"$RES/netns.err"; then
      NS_USED="$NS"
      say "peer runs in network namespace $NS${busy:+ (ports busy on this machine:$busy)}"
    else
      NS=""; peer_reason="cannot create a network namespace ($(head -c 200 "$RES/netns.err")); busy ports:$busy"
    fi
  elif [ -n "$busy" ]; then
    peer_reason="ports busy on this machine:$busy (PEER_NETNS=0)"
  fi
fi
say "results: $RES; work dir: $work"

profile="-" SRC_BIN="-" stale=""
if [ "$FERRO" = 1 ]; then
  if [ "${BUILD:-0}" = 1 ]; then
    SRC_BIN="$(ferro_bin)" || { echo "could not build/find ferrostack" >&2; exit 1; }
  else
    SRC_BIN="${FERROSTACK_BIN:-$REPO/target/release/ferrostack}"
  fi
  [ -x "$SRC_BIN" ] || { echo "ferrostack binary $SRC_BIN not found (build it, set FERROSTACK_BIN, or BUILD=1)" >&2; exit 1; }
  BIN="$work/ferrostack"
  cp "$SRC_BIN" "$BIN"
  case "$SRC_BIN" in
    */target/debug/*) profile="DEBUG BUILD (target/debug) -- NOT REPRESENTATIVE" ;;
    */target/release/*) profile="release" ;;
    *) profile="unknown profile" ;;
  esac
  stale=$(cd "$REPO" && find crates bin -name '*.rs' -newer "$SRC_BIN" 2>/dev/null | head -3 | paste -sd' ')
fi
NPROC=$(nproc)
{
  echo "ferrostack compute benchmark, $(date -u '+%Y-%m-%d %H:%M:%SZ')"
  if [ "$FERRO" = 1 ]; then
    echo "binary : $SRC_BIN ($profile), built $(date -u -r "$SRC_BIN" '+%Y-%m-%d %H:%M:%SZ'), sha256 $(sha256sum "$BIN" | cut -c1-12), $("$BIN" --version 2>/dev/null)"
    [ -n "$stale" ] && echo "         WARNING: source files newer than the binary (stale build?): $stale ..."
    echo "tree   : HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- crates bin 2>/dev/null || echo ' + uncommitted changes in crates/ or bin/') at run time"
    echo "ferro  : one process, SQLite in a temporary data dir, in-process bus, $FAKE_HOSTS fake host(s) (1000 vCPU / 800000 MB / 600000 GB each)${FERRO_EXTRA_ARGS:+, extra args: $FERRO_EXTRA_ARGS}"
  else
    echo "ferro  : NOT measured in this run (FERRO=$FERRO)"
  fi
  echo "machine: $NPROC cpus ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem/{print $2}') GiB RAM, kernel $(uname -r)"
  echo "load   : bench/compute_load.py (python $("$PY" -c 'import platform; print(platform.python_version())'), urllib: one connection per request), SEQ=$SEQ CONC=$CONC POLL=${POLL}s CONC_TIMEOUT=${CONC_TIMEOUT}s NRPS=$NRPS NREQ=$NREQ PLACEMENT_MV=$PLACEMENT_MV IDLE_S=$IDLE_S"
  if [ -z "$peer_reason" ]; then
    echo "peer   : ../shared/peers (PEER_NOVA=1): $("${PEER_VENV:-/opt/peer-venv}/bin/pip" freeze 2>/dev/null | grep -i -E '^(nova|openstack-placement|keystone|glance|uwsgi)==' | paste -sd' '), uwsgi ${PEER_WORKERS:-max(2,nproc/4)} procs x 1 thread per API, SQLite WAL, RabbitMQ, fake.FakeDriverWithoutFakeNodes${NS:+; in network namespace $NS}"
  else
    echo "peer   : NOT measured in this run ($peer_reason)"
  fi
} > "$RES/header.txt"
cat "$RES/header.txt" >&2

# ====================================================================== ferrostack
FDATA="$work/ferro"
# ferro_launch NAME: start ferrostack on $FDATA (fresh or existing) and measure the
# time until it is ready; sets FERRO_PID/FERRO_URL, writes $RES/ferrostack-NAME.txt
ferro_launch() {
  local name=$1 t0
  FERRO_PORT="$(free_port)"; FERRO_URL="http://127.0.0.1:$FERRO_PORT"
  mkdir -p "$FDATA"
  t0=$(now_ns)
  env FERROSTACK__COMPUTE__COMPUTE_DRIVER=fake FERROSTACK__COMPUTE__FAKE_HOSTS="$FAKE_HOSTS" FERROSTACK__COMPUTE__FAKE_VCPUS=1000 \
      FERROSTACK__COMPUTE__FAKE_MEMORY_MB=800000 FERROSTACK__COMPUTE__FAKE_DISK_GB=600000 \
      "$BIN" serve --data-dir "$FDATA" --listen "127.0.0.1:$FERRO_PORT" --admin-password "$PW" \
      "${serve_args[@]}" >> "$FDATA/ferrostack.log" 2>&1 < /dev/null &
  FERRO_PID=$!
  load ferrostack "$name" ready "$FERRO_URL/identity" "$PW" --t0-ns "$t0" --hosts "$FAKE_HOSTS" --timeout 120 --pid "$FERRO_PID"
  kill -0 "$FERRO_PID" 2>/dev/null || problem "ferrostack exited during $name; log tail: $(tail -5 "$FDATA/ferrostack.log")"
}
if [ "$FERRO" = 1 ]; then
  say "ferrostack: first start (fresh data dir)"
  quiet
  ferro_launch start-fresh
  ferro_stop
  say "ferrostack: start on the bootstrapped data dir"
  quiet
  ferro_launch start
  if [ "$(field "$RES/ferrostack-start.txt" ready compute_up_ms)" != "" ] &&
     [ "$(field "$RES/ferrostack-start.txt" ready compute_up_ms)" != timeout ]; then
    sleep "$IDLE_S"
    echo "idle_after_start $(tree_mem "$FERRO_PID")" > "$RES/mem-ferrostack.txt"
    measure "$FERRO_URL/identity" ferrostack
    sleep "$IDLE_S"
    echo "idle_after_load $(tree_mem "$FERRO_PID")" >> "$RES/mem-ferrostack.txt"
    kill -0 "$FERRO_PID" 2>/dev/null || problem "ferrostack (pid $FERRO_PID) DIED; log tail: $(tail -20 "$FDATA/ferrostack.log")"
  else
    problem "ferrostack compute did not get ready (binary without Compute? see $RES/ferrostack-start.log)"
  fi
  ferro_stop
  plain="$work/log.plain"
  sed 's/\x1b\[[0-9;]*m//g' "$FDATA/ferrostack.log" > "$plain" 2>/dev/null
  nwarn=$(grep -c -E '^[^ ]+Z +(WARN|ERROR) ' "$plain"); npanic=$(grep -c -i 'panicked' "$plain")
  { echo "WARN/ERROR lines: $nwarn (first 100):"; grep -E '^[^ ]+Z +(WARN|ERROR) ' "$plain" | head -100
    echo "panics: $npanic"; grep -i -A5 'panicked' "$plain" | head -50; } > "$RES/ferrostack-log-digest.txt"
  [ "${nwarn:-0}" -gt 0 ] && problem "ferrostack log: $nwarn WARN/ERROR lines (see $RES/ferrostack-log-digest.txt)"
  [ "${npanic:-0}" -gt 0 ] && problem "ferrostack log: $npanic panics (see $RES/ferrostack-log-digest.txt)"
  rm -f "$plain"
fi

# ====================================================================== peer
if [ -z "$peer_reason" ]; then
  say "peer setup (PEER_NOVA=1; first time: pip install into /opt/peer-venv, minutes)"
  if PEER_NOVA=1 PEER_PASSWORD="$PW" PYTHONWARNINGS=ignore pexec bash "$PEERS/setup.sh" "$PEER_DATA_DIR" > "$RES/peer-setup.log" 2>&1; then
    say "peer up (up.sh: memcached, keystone, glance, placement, rabbitmq, neutron stub, nova)"
    quiet
    peer_up=1
    t0=$(now_ns)
    load peer start ready http://127.0.0.1:5000 "$PW" --t0-ns "$t0" --hosts 1 --timeout 600 &
    ready_job=$!
    PEER_NOVA=1 PEER_PASSWORD="$PW" pexec bash "$PEERS/up.sh" "$PEER_DATA_DIR" > "$RES/peer-up.log" 2>&1
    up_rc=$?
    echo "up_sh_ms $(( ($(now_ns) - t0) / 1000000 )) rc=$up_rc" > "$RES/peer-up-time.txt"
    wait "$ready_job"
    if [ "$up_rc" = 0 ]; then
      sleep "$IDLE_S"
      : > "$RES/mem-peer.txt"
      while read -r name pid; do
        echo "$name $(group_mem "$pid")" >> "$RES/mem-peer.txt"
      done < "$PEER_DATA_DIR/run/pids"
      measure http://127.0.0.1:5000 peer
      grep -c -E 'database is locked' "$PEER_DATA_DIR"/log/*.log 2>/dev/null | grep -v ':0$' |
        sed "s|$PEER_DATA_DIR/log/||" > "$RES/peer-sqlite-locked.txt"
    else
      problem "peer up.sh failed (see $RES/peer-up.log)"
    fi
    PEER_NOVA=1 bash "$PEERS/down.sh" "$PEER_DATA_DIR" >> "$RES/peer-down.log" 2>&1
    peer_up=0
  else
    peer_reason="peer setup.sh failed (see $RES/peer-setup.log)"
    problem "$peer_reason"
  fi
fi
if [ -n "$NS" ]; then ip netns del "$NS" 2>/dev/null; NS=""; fi

# ====================================================================== table
F="$RES/ferrostack" P="$RES/peer"
# ratio PEER FERRO -> "12.3x" (peer/ferrostack); inf/n/a aware
ratio() {
  awk -v p="$1" -v f="$2" 'BEGIN{
    if (p=="" || f=="" || p=="n/a" || f=="n/a") { print "n/a"; exit }
    if (f=="inf") { print "0x"; exit }
    if (p=="inf") { print "infx"; exit }
    if (f+0 <= 0) { print "n/a"; exit }
    printf "%.1fx\n", p/f }'
}
verdict() {  # RATIO GOAL
  awk -v r="${1%x}" -v g="$2" 'BEGIN{ if (r=="n/a"||r=="") {print "n/a"; exit}
    if (r=="inf") {print "PASS"; exit}; print (r+0 >= g+0) ? "PASS" : "MISS" }'
}
mem_total_peer() {  # RSS (or PSS with 3) summed over the real services
  awk -v c="${1:-2}" '$1!="neutron-stub" {s+=$c} END{ if (NR) printf "%.1f", s; else print "n/a" }' "$RES/mem-peer.txt" 2>/dev/null
}
{
  cat "$RES/header.txt"
  echo
  echo "Server create -> ACTIVE (ms; p50/p99 over all boots, a failed or timed-out boot = inf; ok = ACTIVE ones only)"
  printf '  %-12s %-11s %4s %6s %5s %7s %9s %9s %9s %9s %9s %9s %8s %8s  %s\n' phase system n ACTIVE ERROR timeout p50 p99 "ok p50" "ok p99" mean max "POST p50" "wall s" "deleted (s)"
  for ph in seq conc; do
    for sys in ferrostack peer; do
      f="$RES/$sys-boots.txt"; [ -s "$f" ] || continue
      l="boot_$ph"; [ -n "$(field "$f" "$l" n)" ] || continue
      printf '  %-12s %-11s %4s %6s %5s %7s %9s %9s %9s %9s %9s %9s %8s %8s  %s\n' "$ph" "$sys" \
        "$(field "$f" "$l" n)" "$(field "$f" "$l" active)" "$(field "$f" "$l" error)" "$(field "$f" "$l" timeout)" \
        "$(field "$f" "$l" p50_ms)" "$(field "$f" "$l" p99_ms)" "$(field "$f" "$l" ok_p50_ms)" "$(field "$f" "$l" ok_p99_ms)" \
        "$(field "$f" "$l" mean_ms)" "$(field "$f" "$l" max_ms)" "$(field "$f" "$l" post_p50_ms)" "$(field "$f" "$l" wall_s)" \
        "$(field "$f" "delete_$ph" gone)/$(field "$f" "delete_$ph" n) ($(field "$f" "delete_$ph" wall_s))"
    done
  done
  for sys in ferrostack peer; do
    v=$(field "$RES/$sys-boots.txt" boot_conc poll_cycle_ms)
    [ -n "$v" ] && echo "  $sys concurrent phase: mean poll cycle (GET /servers/detail + ${POLL} s sleep) $v ms"
  done
  echo
  echo "Placement GET /allocation_candidates?resources=VCPU:1,MEMORY_MB:512,DISK_GB:1 ($NRPS bench providers + the compute hosts', mv $PLACEMENT_MV, $NREQ sequential requests; ms)"
  printf '  %-11s %10s %9s %9s %9s %9s %9s %7s   %s\n' system candidates bytes p50 p99 mean max errors "providers created (s, per s)"
  for sys in ferrostack peer; do
    f="$RES/$sys-placement.txt"; [ -s "$f" ] || continue
    printf '  %-11s %10s %9s %9s %9s %9s %9s %7s   %s\n' "$sys" "$(field "$f" alloc_candidates candidates)" \
      "$(field "$f" alloc_candidates bytes)" "$(field "$f" alloc_candidates p50_ms)" "$(field "$f" alloc_candidates p99_ms)" \
      "$(field "$f" alloc_candidates mean_ms)" "$(field "$f" alloc_candidates max_ms)" "$(field "$f" alloc_candidates errors)" \
      "$(field "$f" rp_create n) ($(field "$f" rp_create wall_s) s, $(field "$f" rp_create per_s)/s)"
  done
  echo
  echo "Start-up (ms from launch: identity answers / token issued / compute API answers / nova-compute up + hypervisor listed)"
  for sf in "ferrostack-start-fresh:ferrostack, first start (fresh data dir, bootstrap)" \
            "ferrostack-start:ferrostack, start on the bootstrapped data dir" \
            "peer-start:peer, up.sh after setup.sh (everything)"; do
    f="$RES/${sf%%:*}.txt"; [ -s "$f" ] || continue
    printf '  %-56s %7s / %7s / %7s / %7s\n' "${sf#*:}" "$(field "$f" ready identity_ms)" "$(field "$f" ready token_ms)" \
      "$(field "$f" ready compute_ms)" "$(field "$f" ready compute_up_ms)"
  done
  [ -s "$RES/peer-up-time.txt" ] && echo "  peer up.sh wall time: $(awk '{print $2}' "$RES/peer-up-time.txt") ms ($(awk '{print $3}' "$RES/peer-up-time.txt"))"
  echo
  echo "Idle memory (MiB, RSS / PSS, ${IDLE_S} s without requests)"
  if [ -s "$RES/mem-ferrostack.txt" ]; then
    while read -r k r q n; do printf '  %-50s %8s / %8s  (%s procs)\n' "ferrostack, ${k//_/ }" "$r" "$q" "$n"; done < "$RES/mem-ferrostack.txt"
  fi
  if [ -s "$RES/mem-peer.txt" ]; then
    while read -r k r q n; do
      note=""; [ "$k" = neutron-stub ] && note="  not counted (stub, not a real service)"
      printf '  %-50s %8s / %8s  (%s procs)%s\n' "peer $k (process group)" "$r" "$q" "$n" "$note"
    done < "$RES/mem-peer.txt"
    printf '  %-50s %8s / %8s\n' "peer total (without the neutron stub)" "$(mem_total_peer 2)" "$(mem_total_peer 3)"
  fi
  echo
  echo "Targets (peer / ferrostack)"
  printf '  %-56s %10s %10s  %s\n' target value goal result
  for ph in seq conc; do
    for pc in p50 p99; do
      v=$(ratio "$(field "$P-boots.txt" "boot_$ph" "${pc}_ms")" "$(field "$F-boots.txt" "boot_$ph" "${pc}_ms")")
      printf '  %-56s %10s %10s  %s\n' "create->ACTIVE $ph $pc: ferrostack <= 1/10 of the peer" "$v" ">= 10x" "$(verdict "$v" 10)"
    done
  done
  for pc in p50 p99; do
    v=$(ratio "$(field "$P-placement.txt" alloc_candidates "${pc}_ms")" "$(field "$F-placement.txt" alloc_candidates "${pc}_ms")")
    printf '  %-56s %10s %10s  %s\n' "allocation_candidates $pc: ferrostack <= 1/10" "$v" ">= 10x" "$(verdict "$v" 10)"
  done
  v=$(ratio "$(mem_total_peer 2)" "$(awk '$1=="idle_after_start"{print $2}' "$RES/mem-ferrostack.txt" 2>/dev/null)")
  printf '  %-56s %10s %10s  %s\n' "idle RSS: ferrostack <= 1/20 of the peer's total" "$v" ">= 20x" "$(verdict "$v" 20)"
  v=$(ratio "$(field "$P-start.txt" ready compute_up_ms)" "$(field "$F-start.txt" ready compute_up_ms)")
  printf '  %-56s %10s %10s  %s\n' "  (info) start-up to nova-compute up" "$v" "-" "-"
  echo
  echo "Notes"
  echo "  * The same client code (bench/compute_load.py) drives both systems, with the same flavor, image, request bodies and"
  echo "    microversions. It runs on the same $NPROC cores as the servers."
  echo "  * Concurrent boots: all POSTs are released together (a barrier over $CONC threads); the poller's cycle (above) bounds"
  echo "    the resolution of those latencies. Real Nova on SQLite is known to wedge on concurrent boots (database is locked,"
  echo "    ../shared/peers/BASELINE.md); its servers not ACTIVE after ${CONC_TIMEOUT} s count as timeouts (inf)."
  if [ -s "$RES/peer-sqlite-locked.txt" ]; then
    echo "    'database is locked' lines in the peer's logs in this run: $(paste -sd' ' "$RES/peer-sqlite-locked.txt")"
  fi
  echo "  * The peer's uwsgi APIs close every connection (Connection: close); the client opens a new connection per request"
  echo "    for both systems."
  echo "  * RSS: ferrostack is one process (all services, in-process bus, $FAKE_HOSTS fake host(s)); the peer total sums the"
  echo "    process groups of Keystone, Glance, Placement, nova-api/-conductor/-scheduler/-compute, RabbitMQ (+epmd) and memcached."
  [ -n "$NS_USED" ] && [ -z "$peer_reason" ] && echo "  * The peer ran in a private network namespace ($NS_USED${busy:+; ports taken on this machine:$busy}): its own loopback, same kernel path."
  [ -n "$peer_reason" ] && echo "  * The peer was NOT measured in this run ($peer_reason); ratios are n/a."
  [ "$FERRO" = 1 ] || echo "  * ferrostack was NOT measured in this run (FERRO=$FERRO); ratios are n/a."
  case "$profile" in DEBUG*) echo "  * THE FERROSTACK BINARY IS A DEBUG BUILD: its numbers are NOT representative." ;; esac
  [ -n "$stale" ] && echo "  * The ferrostack binary is older than some source files (stale build?): $stale"
  echo
  if [ -s "$RES/problems.txt" ]; then echo "Problems seen"; sed 's/^/  * /' "$RES/problems.txt"; else echo "Problems seen: none"; fi
  echo
  echo "Raw outputs: $RES"
} > "$TABLE"
cat "$TABLE"
echo
echo "results table saved to: $TABLE"

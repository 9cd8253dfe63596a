# Shared helpers for the project's scripts: build the binary, start a private
# ferrostack on a free loopback port with a temporary data dir, stop exactly
# the PID we started. Source it:  source "$(dirname "$0")/lib.sh"
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FERRO_PROFILE="${FERRO_PROFILE:-release}"

# ferro_bin: path of the ferrostack binary (builds it unless FERROSTACK_BIN is set)
ferro_bin() {
  if [ -n "${FERROSTACK_BIN:-}" ]; then echo "$FERROSTACK_BIN"; return; fi
  if [ "$FERRO_PROFILE" = release ]; then
    (cd "$REPO" && cargo build -q --release -p ferrostack >&2)
    echo "$REPO/target/release/ferrostack"
  else
    (cd "$REPO" && cargo build -q -p ferrostack >&2)
    echo "$REPO/target/debug/ferrostack"
  fi
}

# ferro_in CMD...: runs CMD in the network namespace FERRO_NETNS when it is
# set (a test's own host: ferrostack, its clients and its guests' bridges live
# there), else here.
# nsenter changes the network namespace only: namespaces ferrostack adds
# (qdhcp-<network>) are then seen by the test as well (`ip netns exec` would
# give it a mount namespace of its own).
ferro_in() {
  if [ -n "${FERRO_NETNS:-}" ]; then nsenter "--net=/run/netns/$FERRO_NETNS" "$@"; else "$@"; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ferro_start DATA_DIR [extra serve args...]: starts ferrostack in the background,
# waits for GET /identity/v3 to answer 200. Sets FERRO_PID, FERRO_PORT, FERRO_URL.
ferro_start() {
  local data="$1"; shift
  local bin; bin="$(ferro_bin)"
  FERRO_PORT="${FERRO_PORT:-$(free_port)}"
  FERRO_URL="http://127.0.0.1:$FERRO_PORT"
  mkdir -p "$data"
  # Started as root, ferrostack serves as the system user `ferrostack`,
  # which must reach the data directory: the run's own temporary parent
  # (mktemp's, 0700) lets other users pass, without listing it.
  if [ "$(id -u)" = 0 ]; then
    local up; up="$(dirname "$data")"
    case "$up" in "${TMPDIR:-/tmp}"/?*) if [ -O "$up" ]; then chmod o+x "$up"; fi ;; esac
  fi
  # The API checks (Tempest's API groups, the golden paths) run on simulated
  # hosts unless the caller asks for a driver (golden-path-qemu.sh does).
  export FERROSTACK__COMPUTE__COMPUTE_DRIVER="${FERROSTACK__COMPUTE__COMPUTE_DRIVER:-fake}"
  # Nor do they build networks on this machine: scripts of the data plane
  # ask for `linuxbridge` inside a namespace of their own (FERRO_NETNS).
  export FERROSTACK__NETWORK__HOST_NET_DRIVER="${FERROSTACK__NETWORK__HOST_NET_DRIVER:-fake}"
  # Guests and volumes stay with this run (as root they would default to
  # /var/lib/ferrostack). Real guests run under uids of their own, so their
  # directory must be reachable by every user: one under /var/tmp (0711),
  # kept across restarts of this run and removed by ferro_kill_guests.
  local where=()
  if [ -z "${FERROSTACK__COMPUTE__INSTANCES_PATH:-}" ]; then
    if [ "$FERROSTACK__COMPUTE__COMPUTE_DRIVER" = fake ]; then
      where=("FERROSTACK__COMPUTE__INSTANCES_PATH=$data/instances"
             "FERROSTACK__VOLUME__VOLUMES_DIR=${FERROSTACK__VOLUME__VOLUMES_DIR:-$data/volumes}")
    else
      FERRO_GUESTS="$(mktemp -d /var/tmp/ferro-guests.XXXXXX)"
      chmod 711 "$FERRO_GUESTS"
      export FERRO_GUESTS
      export FERROSTACK__COMPUTE__INSTANCES_PATH="$FERRO_GUESTS/instances"
      export FERROSTACK__VOLUME__VOLUMES_DIR="${FERROSTACK__VOLUME__VOLUMES_DIR:-$FERRO_GUESTS/volumes}"
    fi
  fi
  # Real guests' console proxy: a port of this run (kept across restarts).
  if [ "$FERROSTACK__COMPUTE__COMPUTE_DRIVER" != fake ] && [ -z "${FERROSTACK__VNC__NOVNCPROXY_LISTEN:-}" ]; then
    export FERROSTACK__VNC__NOVNCPROXY_LISTEN="127.0.0.1:$(free_port)"
  fi
  # A command, not a function, goes to the background, so that FERRO_PID is
  # ferrostack's own (nsenter and env exec it).
  local in_ns=()
  if [ -n "${FERRO_NETNS:-}" ]; then in_ns=(nsenter "--net=/run/netns/$FERRO_NETNS"); fi
  "${in_ns[@]}" env "${where[@]}" "$bin" serve --data-dir "$data" --listen "127.0.0.1:$FERRO_PORT" "$@" \
      > "$data/ferrostack.log" 2>&1 < /dev/null &
  FERRO_PID=$!
  local i
  for i in $(seq 1 300); do
    if ferro_in curl -fsS -m 2 -o /dev/null "$FERRO_URL/identity/v3" 2>/dev/null; then ferro_pids; return 0; fi
    kill -0 "$FERRO_PID" 2>/dev/null || { echo "ferrostack exited; log:" >&2; tail -50 "$data/ferrostack.log" >&2; return 1; }
    sleep 0.1
  done
  echo "ferrostack did not answer within 30 s" >&2; return 1
}

# ferro_pids: sets FERRO_SERVICE_PID, the process serving HTTP (started as
# root, ferrostack's privileged helper FERRO_PID runs it as the user
# `ferrostack`; otherwise the two are one), and FERRO_PIDS, both: what
# ferrostack costs is their sum.
ferro_pids() {
  FERRO_SERVICE_PID="$(ferro_in ss -ltnpH "sport = :$FERRO_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
  FERRO_SERVICE_PID="${FERRO_SERVICE_PID:-$FERRO_PID}"
  FERRO_PIDS="$FERRO_PID"
  if [ "$FERRO_SERVICE_PID" != "$FERRO_PID" ]; then FERRO_PIDS="$FERRO_PID $FERRO_SERVICE_PID"; fi
  export FERRO_SERVICE_PID FERRO_PIDS
}

# ferro_stop: SIGTERM the PID we started, wait for it.
ferro_stop() {
  if [ -n "${FERRO_PID:-}" ] && kill -0 "$FERRO_PID" 2>/dev/null; then
    kill -TERM "$FERRO_PID" 2>/dev/null || true
    wait "$FERRO_PID" 2>/dev/null || true
  fi
  FERRO_PID=
}

# ferro_kill_guests [DATA_DIR]: SIGKILL the QEMU guests a ferrostack started
# by ferro_start left behind (QEMU runs in its own session and outlives
# ferrostack): only pids of its instances' pid files whose command line names
# that instance; then their cgroups and taps, and the run's guest directory.
ferro_kill_guests() {
  local inst="${FERROSTACK__COMPUTE__INSTANCES_PATH:-${1:-}/instances}" f pid uuid tap
  for f in "$inst"/*/qemu.pid; do
    [ -f "$f" ] || continue
    uuid="$(basename "$(dirname "$f")")"; pid="$(cat "$f")"
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$uuid"; then
      kill -KILL "$pid" 2>/dev/null
      for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    fi
    for c in memory/ cpu/ ""; do rmdir "/sys/fs/cgroup/${c}ferrostack/instance-$uuid" 2>/dev/null || true; done
    for tap in $(grep -o '"tap_name": *"[^"]*"' "$inst/$uuid/spec.json" 2>/dev/null | sed 's/.*"\([^"]*\)"$/\1/'); do
      ip link del "$tap" 2>/dev/null || true
    done
  done
  if [ -n "${FERRO_GUESTS:-}" ] && [ -d "$FERRO_GUESTS" ]; then rm -rf "$FERRO_GUESTS"; fi
  return 0
}

# ferro_clean_network DATA_DIR: removes what the Linux bridge driver of the
# ferrostack with DATA_DIR recorded under DATA_DIR/network: each network's
# dnsmasq (only the pid whose command line names that network's pid file)
# and its qdhcp-<network> namespace, and each router's qrouter-<router>
# namespace. Bridges and taps go with FERRO_NETNS.
ferro_clean_network() {
  local d net pid
  for d in "$1"/network/*/; do
    if [ -f "$d/router" ]; then ip netns del "qrouter-$(basename "$d")" 2>/dev/null || true; fi
    [ -f "$d/network" ] || continue
    net="$(basename "$d")"
    pid="$(cat "$d/pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "--pid-file=${d%/}/pid"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    ip netns del "qdhcp-$net" 2>/dev/null || true
  done
  return 0
}

# venv with the real clients (openstack CLI, openstacksdk, tempest)
ferro_venv() { bash "$REPO/scripts/venv.sh"; }

# ferro_need CMD [DEBIAN_PACKAGE]: CMD is on PATH, installed from Debian's
# packages when it is not and we are root with apt-get; returns 1 otherwise.
ferro_need() {
  command -v "$1" > /dev/null && return 0
  ferro_apt "${2:-$1}"
  command -v "$1" > /dev/null || { echo "$1 not found (apt-get install ${2:-$1})" >&2; return 1; }
}

# ferro_need_file PATH DEBIAN_PACKAGE: as ferro_need, for a file (noVNC's client).
ferro_need_file() {
  [ -e "$1" ] && return 0
  ferro_apt "$2"
  [ -e "$1" ] || { echo "$1 not found (apt-get install $2)" >&2; return 1; }
}

# ferro_apt PACKAGE: installs it from Debian's packages when root.
ferro_apt() {
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing $1 (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" > /dev/null 2>&1 ||
      { apt-get update -q > /dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" > /dev/null 2>&1; }
  fi
  return 0
}

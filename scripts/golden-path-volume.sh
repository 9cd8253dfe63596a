#!/usr/bin/env bash
# The Block Storage golden path, driven with the real `openstack` CLI against a
# private ferrostack started for this run (one fake hypervisor host, the qcow2 file
# backend), as admin: volume create --size 1; volume create --image --size 1 (bootable);
# volume snapshot create; volume create --snapshot; server add volume -> in-use;
# server remove volume -> available; volume set --size 2; server create --volume
# (boot from volume); deletes. After every step the backend directory holds exactly
# one file per live volume and snapshot.
#
#   scripts/golden-path-volume.sh
#
# Environment: KEEP=1 (keep the temp dir), FERRO_EXTRA_ARGS, FERROSTACK_BIN (lib.sh).
# Each step prints `ok - <step>` or `not ok - <step>`; the last line is
# `golden-path-volume: N passed, N failed`. Exit status 1 if a step failed.
source "$(dirname "$0")/lib.sh"

read -r -a serve_args <<< "${FERRO_EXTRA_ARGS:-}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-golden-volume.XXXXXX")"
cleanup() {
  local rc=$?
  ferro_stop
  if [ "${KEEP:-0}" = 1 ]; then
    echo "golden-path-volume.sh: kept $work (server log: $work/data/ferrostack.log)" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

venv="$(ferro_venv)"
export FERROSTACK__COMPUTE__FAKE_HOSTS=1
if ! ferro_start "$work/data" "${serve_args[@]}"; then
  echo "not ok - start ferrostack"
  echo "golden-path-volume: 0 passed, 1 failed"
  exit 1
fi
mkdir -p "$work/home"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_CACHE_HOME="$work/home/.cache"
for v in $(compgen -e); do case "$v" in OS_*) unset "$v" ;; esac; done
export no_proxy="127.0.0.1,localhost" NO_PROXY="127.0.0.1,localhost"
export OS_CLIENT_CONFIG_FILE="$work/data/clouds.yaml" OS_CLOUD=ferrostack
"$venv/bin/python" "$(dirname "$0")/golden_path_volume.py" "$venv/bin/openstack" "$work"

#!/usr/bin/env bash
# Debian's cloud-init, unpacked (not installed: no services on this host),
# as an independent judge of what ferrostack gives guests. Installs the
# Python libraries it imports from Debian's packages and prints the
# directory to put on PYTHONPATH for /usr/bin/python3.
#   PYTHONPATH=$(scripts/cloud-init-readers.sh | tail -1) /usr/bin/python3 -c \
#     'from cloudinit.sources.helpers import openstack'
set -euo pipefail
DIR=${FERRO_CLOUD_INIT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrostack/cloud-init}
PKGS="python3-configobj python3-jsonpatch python3-netifaces python3-oauthlib python3-serial python3-yaml python3-jinja2 python3-jsonschema python3-requests"
if ! /usr/bin/python3 -c 'import configobj, jsonpatch, netifaces, oauthlib, serial, yaml, jinja2, jsonschema, requests' 2>/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "need root to install: $PKGS" >&2; exit 1; }
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS > /dev/null 2>&1 ||
    { apt-get update -q > /dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS > /dev/null 2>&1; }
fi
if [ ! -d "$DIR/root/usr/lib/python3/dist-packages/cloudinit" ]; then
  rm -rf "$DIR.tmp"; mkdir -p "$DIR.tmp"
  (cd "$DIR.tmp" && apt-get download -q cloud-init > /dev/null 2>&1) ||
    { apt-get update -q > /dev/null 2>&1 && (cd "$DIR.tmp" && apt-get download -q cloud-init > /dev/null); }
  dpkg-deb -x "$DIR.tmp"/cloud-init_*.deb "$DIR.tmp/root"
  rm -rf "$DIR"; mkdir -p "$DIR"; mv "$DIR.tmp/root" "$DIR/root"; rm -rf "$DIR.tmp"
fi
echo "$DIR/root/usr/lib/python3/dist-packages"

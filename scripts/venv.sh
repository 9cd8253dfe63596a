#!/usr/bin/env bash
# Installs the real OpenStack clients used as judges (openstack CLI with the
# osc-placement plugin, openstacksdk, Tempest; pins in requirements-clients.txt)
# from PyPI into a venv outside the repo. Idempotent; prints the venv path.
#   FERRO_VENV (default /opt/ferrostack-venv)
#   FERRO_VENV_REQ (default requirements-clients.txt; s3-venv.sh passes its own)
set -euo pipefail
VENV="${FERRO_VENV:-/opt/ferrostack-venv}"
HERE="$(cd "$(dirname "$0")" && pwd)"
REQ="${FERRO_VENV_REQ:-$HERE/requirements-clients.txt}"
PY="${PYTHON:-python3}"
stamp="$VENV/.ferrostack-installed"
want="$(md5sum < "$REQ" | cut -c1-32)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then echo "$VENV"; exit 0; fi
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q -U pip wheel setuptools >&2
fi
"$VENV/bin/pip" install -q -r "$REQ" >&2
echo "$want" > "$stamp"
echo "$VENV"

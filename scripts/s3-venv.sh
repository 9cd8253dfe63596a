#!/usr/bin/env bash
# Installs moto's S3-compatible server from PyPI into its own venv (outside
# the repo), for the tests of the Image service's s3 store. Idempotent;
# prints the path of moto_server.
#   FERRO_S3_VENV (default /opt/ferrostack-s3-venv)
set -euo pipefail
VENV="${FERRO_S3_VENV:-/opt/ferrostack-s3-venv}"
HERE="$(cd "$(dirname "$0")" && pwd)"
REQ="$HERE/requirements-s3.txt"
PY="${PYTHON:-python3}"
stamp="$VENV/.ferrostack-installed"
want="$(md5sum < "$REQ" | cut -c1-32)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q -U pip wheel setuptools >&2
  fi
  "$VENV/bin/pip" install -q -r "$REQ" >&2
  echo "$want" > "$stamp"
fi
echo "$VENV/bin/moto_server"

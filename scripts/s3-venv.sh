#!/usr/bin/env bash
# Installs moto's S3-compatible server from PyPI into its own venv (outside
# the repo), for the tests of the Image service's s3 store. Idempotent;
# prints the path of moto_server.
#   FERRO_S3_VENV (default /opt/ferrostack-s3-venv)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
venv=$(FERRO_VENV="${FERRO_S3_VENV:-/opt/ferrostack-s3-venv}" \
  FERRO_VENV_REQ="$HERE/requirements-s3.txt" bash "$HERE/venv.sh")
echo "$venv/bin/moto_server"

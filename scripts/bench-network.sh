#!/usr/bin/env bash
# Networking IPAM benchmark (ferrostack only: ../shared/peers has no real Neutron, only
# a stub). Starts a private release ferrostack (no hypervisor hosts, port quota lifted)
# and runs bench/network_ipam.py (stdlib only):
#   * port create throughput at concurrency CONC (16) on one /16 subnet until the
#     subnet is exhausted (the 409 IpAddressGenerationFailure ends each worker), and a
#     check that no address was handed out twice;
#   * GET /v2.0/ports latency (p50/p99 over NLIST requests, admin, no filter) once
#     LIST_AT (10000) ports exist, and again at exhaustion.
# Target (issue 5): zero duplicates; port list with 10,000 ports < 200 ms.
#
#   scripts/bench-network.sh            CIDR=10.0.0.0/16 CONC=16 NLIST=20 LIST_AT=10000
source "$(dirname "$0")/lib.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-bench-network.XXXXXX")"
cleanup() { local rc=$?; ferro_stop; rm -rf "$work"; exit "$rc"; }
trap cleanup EXIT
export FERROSTACK__COMPUTE__FAKE_HOSTS=0 FERROSTACK__NETWORK__QUOTA_PORT=-1
ferro_start "$work/data" || { echo "bench-network: ferrostack did not start"; exit 1; }
python3 "$(dirname "$0")/bench/network_ipam.py" "$FERRO_URL" "$(cat "$work/data/admin-password")" \
  "${CIDR:-10.0.0.0/16}" "${CONC:-16}" "${NLIST:-20}" "${LIST_AT:-10000}"

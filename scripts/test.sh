#!/usr/bin/env bash
# The project's one test command (README): unit + integration tests on every
# reachable database, then the real-client checks (openstack CLI golden path,
# Tempest identity interop subset) against a freshly started ferrostack.
#
#   scripts/test.sh            everything
#   QUICK=1 scripts/test.sh    cargo tests only
# Env: TEMPEST_GROUPS (default "identity interop-identity")
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace)"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/ferro-cargo-test.log | grep -E '^(test result|running|error|failures|---- )' || true
if grep -qE '^test result: FAILED|^error(\[|:)' /tmp/ferro-cargo-test.log; then
  echo "cargo tests failed" >&2
  exit 1
fi
passed=$(grep -E '^test result:' /tmp/ferro-cargo-test.log | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
echo "cargo: ${passed} passed, 0 failed"

[ "${QUICK:-0}" = 1 ] && exit 0

# Real-client checks use the debug binary the tests just built.
export FERRO_PROFILE="${FERRO_PROFILE:-debug}"
cargo build -q -p ferrostack
echo "== real clients: venv"
bash scripts/venv.sh >/dev/null
echo "== openstack CLI golden path"
bash scripts/golden-path.sh
# The full identity group (138 tests, about a minute), then the interop list,
# which also checks that every one of its 17 tests ran.
status=0
for group in ${TEMPEST_GROUPS:-identity interop-identity}; do
  echo "== tempest $group"
  bash scripts/tempest.sh "$group" || status=1
done
exit $status

#!/usr/bin/env bash
# Run Tempest against a private ferrostack started for this run.
#
#   scripts/tempest.sh [GROUP_OR_REGEX]        (default: identity)
#
# GROUP_OR_REGEX:
#   identity, image, compute, network, volume   ^tempest\.api\.<group>\.
#   <group>+interop                             the same run, then a second summary
#                                               line for the group's interop list,
#                                               counted from that run's results
#   scenario                                    ^tempest\.scenario\.
#   interop-<group>                             exactly the interop-required tests of that
#                                               group: ../shared/reference/interop-required.txt
#                                               if present, else scripts/interop-<group>.txt
#   anything else                               used as the tempest --regex
#
# Environment:
#   TEMPEST_CONCURRENCY  workers (default 2)
#   KEEP=1               keep the temp dir (server data, tempest workspace, logs)
#   FERRO_EXTRA_ARGS     extra arguments for `ferrostack serve` (word-split)
#   FERROSTACK_BIN       use this binary instead of building (see lib.sh)
#   TEMPEST_CONF_ARGS    extra arguments for tempest_conf.py (word-split);
#                        `--validation --image-file IMG` on the real data plane
#                        (run inside a network namespace of its own, QEMU and
#                        linuxbridge) for the scenario tests: SSH into guests
#                        through floating IPs
#   TEMPEST_WEB_DOWNLOAD 1 (default): serve a qcow2 over local HTTP and enable
#                        web-download for it; 0: web-download stays off
#   TEMPEST_IMAGE_STORES 2 (default): ferrostack runs with two image stores
#                        (cheap, fast); 1: the single default store
#
# Prints the names of failed tests and a final line
#   tempest <group>: N passed, N failed, N skipped
# Exit status: 0 if nothing failed, 1 if a test failed, 2 if no test ran or setup failed.
# Tempest's own exit status is not used: the counts decide.
source "$(dirname "$0")/lib.sh"

group="${1:-identity}"
concurrency="${TEMPEST_CONCURRENCY:-2}"
read -r -a serve_args <<< "${FERRO_EXTRA_ARGS:-}"
read -r -a conf_args <<< "${TEMPEST_CONF_ARGS:-}"

work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-tempest.XXXXXX")"
cleanup() {
  local rc=$?
  ferro_stop
  ferro_kill_guests "$work/data"
  if [ -n "${WEB_PID:-}" ]; then kill "$WEB_PID" 2>/dev/null || true; wait "$WEB_PID" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "tempest.sh: kept $work (server log: $work/data/ferrostack.log," \
         "tempest log: $work/workspace/logs/tempest.log)" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- test selection
select_args=()
# The interop list of a service: ../shared/reference/interop-required.txt if
# present, else scripts/interop-<svc>.txt. Writes $1; fails when there is none.
interop_list() {
  local svc="$1" out="$2" shared="$REPO/../shared/reference/interop-required.txt"
  if [ -f "$shared" ]; then
    grep -E "^tempest\\.api\\.${svc}\\." "$shared" > "$out" || true
  elif [ -f "$REPO/scripts/interop-${svc}.txt" ]; then
    grep -vE '^[[:space:]]*(#|$)' "$REPO/scripts/interop-${svc}.txt" > "$out" || true
  fi
  [ -s "$out" ] || { echo "tempest.sh: no interop test list for '$svc'" >&2; return 1; }
}
also_interop=""
case "$group" in
  *+interop)
    group="${group%+interop}"
    also_interop="$work/interop-also.txt"
    interop_list "$group" "$also_interop" || exit 2 ;;
esac
case "$group" in
  identity|image|compute|network|volume)
    select_args=(--regex "^tempest\\.api\\.${group}\\.") ;;
  scenario)
    select_args=(--regex '^tempest\.scenario\.') ;;
  interop-*)
    svc="${group#interop-}"
    expect="$work/interop-expected.txt"
    interop_list "$svc" "$expect" || exit 2
    # One anchored regex per test: a bare id would also match longer test names.
    sed -e 's/\./\\./g' -e 's/^/^/' -e 's/$/(\\[|$)/' "$expect" > "$work/include-list.txt"
    select_args=(--include-list "$work/include-list.txt") ;;
  *)
    select_args=(--regex "$group") ;;
esac

# ---------------------------------------------------------------- server and config
venv="$(ferro_venv)"
# With guests reachable (TEMPEST_CONF_ARGS=--validation), Tempest pings
# their floating IPs from here with the system's `ping`.
# Run from a test namespace, apt reaches its mirror from the machine's own.
case "${TEMPEST_CONF_ARGS:-}" in
  *--validation*)
    if ! command -v ping > /dev/null && [ "$(id -u)" = 0 ]; then
      nsenter -t 1 -n bash -c "source '$REPO/scripts/lib.sh'; ferro_need ping iputils-ping" || true
    fi
    ferro_need ping iputils-ping || exit 2 ;;
esac
data="$work/data"
# Two image stores, so Tempest's multistore tests (copy-image, import to
# several stores, delete from one store, stores ordered by weight) run
# instead of skipping. Tempest's import waiter expects the stores in name
# order, so the weights agree with it. TEMPEST_IMAGE_STORES=1 keeps the
# single default store.
if [ "${TEMPEST_IMAGE_STORES:-2}" != 1 ]; then
  export FERROSTACK__IMAGE__BACKENDS__CHEAP__STORE=file \
         FERROSTACK__IMAGE__BACKENDS__CHEAP__WEIGHT=200 \
         FERROSTACK__IMAGE__BACKENDS__FAST__STORE=file \
         FERROSTACK__IMAGE__BACKENDS__FAST__WEIGHT=100 \
         FERROSTACK__IMAGE__DEFAULT_BACKEND=fast
fi
# web-download needs something to download and this machine has no internet:
# a local HTTP server (python -m http.server, a PID we started) serves a small
# qcow2, and ferrostack's import filtering allows exactly that host and port.
WEB_PID=
if [ "${TEMPEST_WEB_DOWNLOAD:-1}" = 1 ] && command -v qemu-img > /dev/null; then
  mkdir -p "$work/web"
  qemu-img create -q -f qcow2 "$work/web/disk.qcow2" 16M
  web_port="$(free_port)"
  python3 -m http.server --bind 127.0.0.1 --directory "$work/web" "$web_port" \
      > "$work/web.log" 2>&1 &
  WEB_PID=$!
  export FERROSTACK__IMAGE__IMPORT_METHODS='["glance-direct", "copy-image", "web-download"]' \
         FERROSTACK__IMAGE__IMPORT_FILTERING__ALLOWED_HOSTS='["127.0.0.1"]' \
         FERROSTACK__IMAGE__IMPORT_FILTERING__ALLOWED_PORTS="[$web_port]"
  conf_args+=(--http-image "http://127.0.0.1:$web_port/disk.qcow2")
fi
if ! ferro_start "$data" "${serve_args[@]}"; then
  echo "tempest.sh: ferrostack did not start" >&2
  exit 2
fi
echo "tempest.sh: ferrostack pid $FERRO_PID at $FERRO_URL (data $data)" >&2

# The clients get a private HOME: nothing may read or write the user's ~/.config,
# ~/.tempest or ~/.cache, and no OS_* variables from the caller leak in.
mkdir -p "$work/home" "$work/tmp"
export HOME="$work/home" TMPDIR="$work/tmp" XDG_CONFIG_HOME="$work/home/.config" \
       XDG_CACHE_HOME="$work/home/.cache"
for v in $(compgen -e); do case "$v" in OS_*) unset "$v" ;; esac; done
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"

ws="$work/workspace"
mkdir -p "$work/empty-etc"
"$venv/bin/tempest" init --config-dir "$work/empty-etc" \
    --workspace-path "$work/workspace.yaml" "$ws" >/dev/null
"$venv/bin/python" "$REPO/scripts/tempest_conf.py" --cloud-file "$data/clouds.yaml" \
    --out "$ws/etc/tempest.conf" --log-dir "$ws/logs" --lock-path "$ws/tempest_lock" \
    "${conf_args[@]}"

# ---------------------------------------------------------------- run
# Tests that cannot pass on this cloud for a reason Tempest does not gate on
# (each line of scripts/tempest-exclude.txt says why); reported, never hidden.
exclude="$REPO/scripts/tempest-exclude.txt"
if [ -f "$exclude" ]; then
  grep -vE '^[[:space:]]*(#|$)' "$exclude" > "$work/exclude-list.txt" || true
  if [ -s "$work/exclude-list.txt" ]; then
    select_args+=(--exclude-list "$work/exclude-list.txt")
    echo "tempest.sh: excluding $(wc -l < "$work/exclude-list.txt") test(s) listed in scripts/tempest-exclude.txt" >&2
  fi
fi
echo "tempest.sh: tempest run ${select_args[*]} --concurrency $concurrency" >&2
tempest_rc=0
(cd "$ws" && "$venv/bin/tempest" run --config-file "$ws/etc/tempest.conf" \
    "${select_args[@]}" --concurrency "$concurrency") || tempest_rc=$?
echo "tempest.sh: tempest run exited $tempest_rc" >&2

# ---------------------------------------------------------------- summary
summary_args=(--group "$group")
[ -n "${expect:-}" ] && summary_args+=(--expect "$expect")
[ -s "$work/exclude-list.txt" ] && summary_args+=(--exclude "$work/exclude-list.txt")
if ! (cd "$ws" && "$venv/bin/stestr" last --subunit > "$work/results.subunit"); then
  echo "tempest.sh: no stestr results (tempest could not run; see $ws/logs/tempest.log)" >&2
  echo "tempest $group: 0 passed, 0 failed, 0 skipped"
  exit 2
fi
rc=0
"$venv/bin/python" "$REPO/scripts/tempest_summary.py" "$work/results.subunit" "${summary_args[@]}" || rc=$?
if [ -n "$also_interop" ]; then
  # Every test of the list must have run and passed in this same run.
  irc=0
  extra=()
  [ -s "$work/exclude-list.txt" ] && extra=(--exclude "$work/exclude-list.txt")
  "$venv/bin/python" "$REPO/scripts/tempest_summary.py" "$work/results.subunit" \
      --group "interop-$group" --expect "$also_interop" --only "${extra[@]}" \
      > "$work/interop-summary.txt" || irc=$?
  grep -v '^SKIPPED ' "$work/interop-summary.txt" || true
  [ "$rc" -ne 0 ] || rc=$irc
fi
exit "$rc"

#!/usr/bin/env bash
# Identity benchmark: ferrostack beside real Keystone, measured in the same run
# on the same machine with identical wrk commands.
#
#   scripts/bench-identity.sh
#
# Measures, for ferrostack and (unless PEER=0) Keystone 30 from ../shared/peers:
#   * token issue, password method, project-scoped   (bench/token_issue.lua)
#   * token issue, token method (rescope, no bcrypt)  (bench/token_rescope.lua)
#   * token validate, GET /auth/tokens               (bench/auth_get.lua)
#     each at c=1 (wrk -t1 -c1) and c=16 (wrk -t2 -c16): req/s, p50, p99, non-2xx
#   * idle RSS after start (+IDLE_S s) and after the load tests
#   * cold start, exec -> first HTTP 200 on the version document (RUNS runs, median):
#     ferrostack first start on an empty data dir (includes bootstrap) and restart
#     on an existing one; Keystone = uwsgi start -> first 200 on /v3 (same helper)
#   * the bcrypt bound (`ferrostack debug bcrypt-bench`) and the target ratios.
# ferrostack keeps HTTP connections alive, Keystone's uwsgi closes every one; so
# ferrostack is measured twice: keep-alive and with `wrk -H 'Connection: close'`.
# ferrostack and Keystone never run at the same time; before every step the
# script waits until the machine is idle (bench/cpu_watch.py --quiet-wait), and
# every wrk run records the CPU used by the server, by wrk and by anything else
# ("foreign"); runs with foreign > NOISY_CORES are retried (3 tries) and flagged.
#
# Environment:
#   DURATION=10s      wrk duration per run
#   PEER=1            0 = skip Keystone (ferrostack half only); skipped as well
#                     when ../shared/peers is absent (FERRO_PEERS overrides the path)
#   RUNS=3            cold-start repetitions
#   IDLE_S=5          idle seconds before RSS is read
#   QUIET_MAX=300     max seconds to wait for an idle machine before each step
#   QUIET_THRESH=0.10 "idle" = whole machine busy below this many cores (3 s window)
#   NOISY_CORES=0.15  foreign load above which a wrk run is retried/flagged
#   BENCH_PASSWORD=secret  admin password for both systems
#   FERROSTACK_BIN    binary to measure (default: lib.sh ferro_bin, i.e. a release
#                     build; a binary under target/debug is flagged in the header).
#                     It is copied at the start, so a rebuild during the run is harmless.
#   FERRO_EXTRA_ARGS  extra `ferrostack serve` arguments
#   RESULTS_DIR=target/bench   where the results table + raw outputs go
#   KEEP=1            keep the temporary directory (data dirs, peer data)
# Needs: wrk, curl, python3 (stdlib only). Keystone half: ../shared/peers
# (setup.sh installs Keystone into /opt/peer-venv the first time: minutes of pip;
# that venv is a cache and is not removed).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
set +e   # keep going on failures; each step reports its own
BENCH="$REPO/scripts/bench"
PEERS="${FERRO_PEERS:-$REPO/../shared/peers}"
DURATION="${DURATION:-10s}"
PEER="${PEER:-1}"
RUNS="${RUNS:-3}"
IDLE_S="${IDLE_S:-5}"
QUIET_MAX="${QUIET_MAX:-300}"
QUIET_THRESH="${QUIET_THRESH:-0.10}"
NOISY_CORES="${NOISY_CORES:-0.15}"
PW="${BENCH_PASSWORD:-secret}"
RESULTS_DIR="${RESULTS_DIR:-$REPO/target/bench}"
PY="$(command -v python3)"
read -r -a serve_args <<< "${FERRO_EXTRA_ARGS:-}"
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"

# One benchmark at a time on this machine: two runs would load each other's
# servers and fight over Keystone's fixed ports (5000, 9292, 8778, 11211).
# Other benchmark scripts should take the same lock.
LOCK="${TMPDIR:-/tmp}/ferrostack-bench.lock"
exec 9>>"$LOCK"
if ! flock -n 9; then
  echo "bench-identity.sh: another benchmark holds $LOCK; waiting for it (max 2 h)" >&2
  flock -w 7200 9 || { echo "bench-identity.sh: $LOCK still held after 2 h; giving up" >&2; exit 1; }
fi

stamp="$(date +%Y%m%d-%H%M%S)"
RES="$RESULTS_DIR/identity-$stamp"
TABLE="$RESULTS_DIR/identity-$stamp.txt"
mkdir -p "$RES"
ROWS="$RES/rows.tsv"; : > "$ROWS"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-bench.XXXXXX")"
# started as root, ferrostack serves as the user `ferrostack`: it must reach the data dir
chmod 711 "$work"
PEER_DATA_DIR="$work/peer"
peer_up=0

say() { echo "== $(date +%H:%M:%S) $*" | tee -a "$RES/log.txt" >&2; }
cleanup() {
  local rc=$?
  ferro_stop
  if [ "$peer_up" = 1 ]; then PEER_NOVA=0 bash "$PEERS/down.sh" "$PEER_DATA_DIR" >> "$RES/peer-down.log" 2>&1; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "bench-identity.sh: kept $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

quiet() { "$PY" "$BENCH/cpu_watch.py" --quiet-wait "$QUIET_MAX" "$QUIET_THRESH" 2>&1 | tee -a "$RES/log.txt" >&2; }
median() { sort -n | awk '{a[NR]=$1} END{if(NR==0){print "n/a"} else if(NR%2){print a[(NR+1)/2]} else {printf "%.0f\n",(a[NR/2]+a[NR/2+1])/2}}'; }
# wrk latency ("4.60ms", "267.00us", "2.10s", "1.00m") -> ms
to_ms() { awk -v v="$1" 'BEGIN{ if (v=="") {print "n/a"; exit}
  n=v+0; u=v; sub(/^[0-9.]+/,"",u);
  f=(u=="us")?0.001:(u=="ms")?1:(u=="s")?1000:(u=="m")?60000:-1;
  if (f<0) print "n/a"; else printf "%.2f\n", n*f }'; }
pid_mem() {  # pid_mem PID... -> "rss_MiB pss_MiB" summed over the PIDs
  local r q p rs=0 qs=0
  for p in "$@"; do
    r=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null); q=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    rs=$((rs + ${r:-0})); qs=$((qs + ${q:-0}))
  done
  awk -v r="$rs" -v q="$qs" 'BEGIN{printf "%.1f %.1f\n", r/1024, q/1024}'
}
# group_mem PGID -> "rss_MiB pss_MiB nprocs" summed over the process group (as bench.sh's mem_of)
group_mem() {
  local rss=0 pss=0 n=0 p r q
  for p in $(ps -o pid= -g "$1"); do
    r=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null); q=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    rss=$((rss + ${r:-0})); pss=$((pss + ${q:-0})); n=$((n + 1))
  done
  awk -v r="$rss" -v q="$pss" -v n="$n" 'BEGIN{printf "%.1f %.1f %d\n", r/1024, q/1024, n}'
}
# get_token URL -> project-scoped (admin/admin) token via password auth
get_token() {
  curl -sS -m 60 -D - -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$PW\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" \
    "$1" | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r'
}
# preflight NAME EXPECTED_STATUS curl-args... -> one request before the load run
preflight() {
  local name=$1 want=$2 code; shift 2
  code=$(curl -sS -m 60 -o "$RES/preflight-$name.body" -w '%{http_code}' "$@")
  if [ "$code" != "$want" ]; then
    say "PREFLIGHT $name: HTTP $code (want $want): $(head -c 400 "$RES/preflight-$name.body")"
    echo "PREFLIGHT $name: HTTP $code (want $want)" >> "$RES/problems.txt"
  fi
}

# run_wrk SYSTEM MODE TEST C URL SCRIPT TARGET [ENV=...]
#   MODE: keepalive | close (adds -H 'Connection: close') | server-close (Keystone)
#   TARGET: cpu_watch target spec ('P:pid' / 'G:pgid ...')
run_wrk() {
  local sys=$1 mode=$2 test=$3 c=$4 url=$5 script=$6 target=$7; shift 7
  local t=1; [ "$c" -gt 1 ] && t=2
  local hdr=(); [ "$mode" = close ] && hdr=(-H 'Connection: close')
  local f="$RES/wrk-$sys-$mode-$test-c$c.txt" try flag=""
  local _wall tc wc fc served nreq
  for try in 1 2 3; do
    quiet
    rm -f "$f.cpu"
    env "$@" "$PY" "$BENCH/cpu_watch.py" --target "$target" "$f.cpu" -- \
      wrk -t"$t" -c"$c" -d"$DURATION" --timeout 30s --latency "${hdr[@]}" -s "$BENCH/$script" "$url" > "$f" 2>&1
    read -r _wall tc wc fc served < "$f.cpu"
    nreq=$(awk '/requests in/{print $1}' "$f")
    flag=""
    awk -v f="$fc" -v m="$NOISY_CORES" 'BEGIN{exit !(f > m)}' && flag="NOISY"
    if [ "${served:--1}" -ge 0 ] && [ -n "$nreq" ] && [ "$served" -gt $((nreq + c + 10)) ]; then
      flag="${flag:+$flag,}EXTERNAL(served=$served,wrk=$nreq)"
    fi
    [ -z "$flag" ] && break
    cp "$f" "$f.try$try"
  done
  local rps p50 p99 non2 errs
  rps=$(awk '/Requests\/sec/{print $2}' "$f")
  p50=$(to_ms "$(awk '$1=="50%"{print $2}' "$f")"); p99=$(to_ms "$(awk '$1=="99%"{print $2}' "$f")")
  non2=$(awk -F: '/Non-2xx/{gsub(/ /,"",$2); print $2}' "$f")
  errs=$(sed -n 's/.*Socket errors: //p' "$f" | tr -d ' ')
  [ -z "$rps" ] && { flag="${flag:+$flag,}WRK-FAILED"; echo "wrk failed: $f: $(head -c 300 "$f")" >> "$RES/problems.txt"; }
  [ "${non2:-0}" != 0 ] && echo "$sys $mode $test c=$c: $non2 non-2xx responses" >> "$RES/problems.txt"
  [ -n "$errs" ] && echo "$sys $mode $test c=$c: socket errors $errs" >> "$RES/problems.txt"
  [ "$try" -gt 1 ] && flag="${flag:+$flag,}tries=$try"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$mode" "$test" "$c" "${rps:-n/a}" "$p50" "$p99" \
    "${non2:-0}" "${errs:--}" "${tc:-?}" "${wc:-?}" "${fc:-?}" "${flag:--}" >> "$ROWS"
  say "$sys $mode $test c=$c: ${rps:-n/a} req/s p50=${p50}ms p99=${p99}ms non2xx=${non2:-0} errs=${errs:--} server=${tc}c wrk=${wc}c foreign=${fc}c ${flag}"
}

# suite SYSTEM MODE BASE_URL TARGET  (tokens in $TOKEN / $SUBJECT)
suite() {
  local sys=$1 mode=$2 url="$3/auth/tokens" target=$4 c
  for c in 1 16; do run_wrk "$sys" "$mode" issue_password "$c" "$url" token_issue.lua "$target" OS_PASSWORD="$PW"; done
  for c in 1 16; do run_wrk "$sys" "$mode" issue_rescope "$c" "$url" token_rescope.lua "$target" TOKEN="$TOKEN"; done
  for c in 1 16; do run_wrk "$sys" "$mode" validate "$c" "$url" auth_get.lua "$target" TOKEN="$TOKEN" SUBJECT="$SUBJECT"; done
}
preflight_all() {  # NAME_PREFIX BASE_URL
  local u="$2/auth/tokens"
  preflight "$1-issue_password" 201 -X POST -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$PW\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" "$u"
  preflight "$1-issue_rescope" 201 -X POST -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"token\"],\"token\":{\"id\":\"$TOKEN\"}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" "$u"
  preflight "$1-validate" 200 -H "X-Auth-Token: $TOKEN" -H "X-Subject-Token: $SUBJECT" "$u"
}

# log_digest LOG OUT: the server log can be hundreds of MB (one access line per
# request), so keep only a digest: size, lines per level, every non-INFO line,
# access lines with a non-2xx status (first 50), the first 20 lines.
log_digest() {
  local log=$1 out=$2 plain="$work/log.plain" nbad nwarn npanic
  [ -f "$log" ] || return 0
  sed 's/\x1b\[[0-9;]*m//g' "$log" > "$plain"
  nbad=$(grep -c -E 'ferrostack::access.* status=[013-9][0-9][0-9]' "$plain")
  nwarn=$(grep -c -E '^[^ ]+Z +(WARN|ERROR) ' "$plain")
  npanic=$(grep -c -i 'panicked' "$plain")
  {
    echo "log: $(wc -c < "$log") bytes, $(wc -l < "$plain") lines; access lines: $(grep -c 'ferrostack::access' "$plain")"
    echo "lines per level:"; awk '$1 ~ /Z$/ {print $2}' "$plain" | sort | uniq -c
    echo "access lines with a non-2xx status: $nbad (first 50):"; grep -E 'ferrostack::access.* status=[013-9][0-9][0-9]' "$plain" | head -50
    echo "WARN/ERROR lines: $nwarn (first 200):"; grep -E '^[^ ]+Z +(WARN|ERROR) ' "$plain" | head -200
    echo "panics: $npanic"; grep -i -A5 'panicked' "$plain" | head -50
    echo "first 20 lines:"; head -20 "$plain"
  } > "$out"
  [ "$nbad" -gt 0 ] && echo "ferrostack log: $nbad access lines with a non-2xx status (see $out)" >> "$RES/problems.txt"
  [ "$nwarn" -gt 0 ] && echo "ferrostack log: $nwarn WARN/ERROR lines (see $out)" >> "$RES/problems.txt"
  [ "$npanic" -gt 0 ] && echo "ferrostack log: $npanic panics (see $out)" >> "$RES/problems.txt"
  rm -f "$plain"
}

# ====================================================================== header
[ "$PEER" = 1 ] || ferro_need wrk || exit 1
peer_reason=""
if [ "$PEER" != 1 ]; then peer_reason="PEER=$PEER"
elif [ ! -f "$PEERS/setup.sh" ]; then peer_reason="$PEERS absent"
else
  PEERS="$(cd "$PEERS" && pwd)"
  for p in 5000 9292 8778 11211; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then peer_reason="port 127.0.0.1:$p busy (not ours)"; break; fi
  done
fi
say "results: $RES"
if [ -z "$peer_reason" ]; then
  say "Keystone peer setup (PEER_NOVA=0; first time: pip install into /opt/peer-venv, minutes)"
  if PEER_NOVA=0 PEER_PASSWORD="$PW" PYTHONWARNINGS=ignore bash "$PEERS/setup.sh" "$PEER_DATA_DIR" > "$RES/peer-setup.log" 2>&1; then
    PV="${PEER_VENV:-/opt/peer-venv}"
  else
    peer_reason="peer setup.sh failed (see $RES/peer-setup.log)"
    echo "$peer_reason" >> "$RES/problems.txt"
  fi
fi
ferro_need wrk || exit 1

SRC_BIN="$(ferro_bin)" || { echo "could not build/find ferrostack" >&2; exit 1; }
[ -x "$SRC_BIN" ] || { echo "ferrostack binary $SRC_BIN not found" >&2; exit 1; }
# Measure a snapshot: a rebuild of target/ during the run must not mix two binaries.
BIN="$work/ferrostack"
cp "$SRC_BIN" "$BIN"
export FERROSTACK_BIN="$BIN"
case "$SRC_BIN" in
  */target/debug/*) profile="DEBUG BUILD (target/debug) -- NOT REPRESENTATIVE, numbers are far below a release build" ;;
  */target/release/*) profile="release" ;;
  *) profile="unknown profile" ;;
esac
NPROC=$(nproc)
{
  echo "ferrostack identity benchmark, $(date -u '+%Y-%m-%d %H:%M:%SZ')"
  echo "binary : $SRC_BIN ($profile), built $(date -u -r "$SRC_BIN" '+%Y-%m-%d %H:%M:%SZ'), sha256 $(sha256sum "$BIN" | cut -c1-12), $("$BIN" --version 2>/dev/null)"
  echo "tree   : HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- crates bin 2>/dev/null || echo ' + uncommitted changes in crates/ or bin/') at run time (compare with the binary build time)"
  echo "machine: $NPROC cpus ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem/{print $2}') GiB, kernel $(uname -r)"
  echo "load   : $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), DURATION=$DURATION, c=1: wrk -t1 -c1, c=16: wrk -t2 -c16, --timeout 30s --latency"
  if [ -z "$peer_reason" ]; then
    echo "peer   : $("$PV/bin/pip" freeze 2>/dev/null | grep -i -E '^(keystone|uwsgi)==' | paste -sd' '), python $("$PV/bin/python" -c 'import platform; print(platform.python_version())'), uwsgi ${PEER_WORKERS:-2} procs x 1 thread, fernet, memcached cache, SQLite WAL (../shared/peers)"
  else
    echo "peer   : Keystone NOT measured in this run ($peer_reason): ferrostack half only"
  fi
  echo "ferro  : SQLite in a temporary data dir, log filter ${RUST_LOG:+RUST_LOG=$RUST_LOG}${RUST_LOG:-default (INFO: one access-log line per request)}${FERRO_EXTRA_ARGS:+, extra args: $FERRO_EXTRA_ARGS}"
} > "$RES/header.txt"
cat "$RES/header.txt" >&2

# ====================================================================== bcrypt bound
say "bcrypt bound"
for try in 1 2 3; do  # retried while other load on the machine distorts the timing
  quiet
  rm -f "$RES/bcrypt.cpu"
  "$PY" "$BENCH/cpu_watch.py" --target "" "$RES/bcrypt.cpu" -- "$BIN" debug bcrypt-bench --rounds 5 > "$RES/bcrypt.txt" 2>&1
  read -r _wall _tc _wc bfc _served < "$RES/bcrypt.cpu"
  awk -v f="${bfc:-0}" -v m="$NOISY_CORES" 'BEGIN{exit !(f > m)}' || break
  say "bcrypt-bench try $try NOISY (foreign ${bfc} cores); retrying"
done
awk -v f="${bfc:-0}" -v m="$NOISY_CORES" 'BEGIN{exit !(f > m)}' && echo "bcrypt-bench NOISY after 3 tries (foreign $bfc cores): the bound may be low" >> "$RES/problems.txt"
BCRYPT_MS=$(sed -n 's/.*: *\([0-9.]*\) ms per verify.*/\1/p' "$RES/bcrypt.txt" | tail -1)
if [ -n "$BCRYPT_MS" ]; then
  BOUND=$(awk -v n="$NPROC" -v t="$BCRYPT_MS" 'BEGIN{printf "%.2f", n*1000/t}')
else
  BOUND=""; echo "bcrypt-bench gave no figure: $(head -c 300 "$RES/bcrypt.txt")" >> "$RES/problems.txt"
fi
say "bcrypt: $(cat "$RES/bcrypt.txt") -> bound ${BOUND:-n/a} req/s"

# ====================================================================== ferrostack cold start
ferro_cold() {  # DATA_DIR -> "ms rss pss n"
  local port; port=$(free_port)
  FERROSTACK__COMPUTE__COMPUTE_DRIVER=fake FERROSTACK_ADMIN_PASSWORD="$PW" "$PY" "$BENCH/coldstart.py" "http://127.0.0.1:$port/identity/v3" "$IDLE_S" "$1.log" -- \
    "$BIN" serve --data-dir "$1" --listen "127.0.0.1:$port" "${serve_args[@]}"
}
say "ferrostack cold start: first start on an empty data dir ($RUNS runs)"
for i in $(seq "$RUNS"); do
  quiet
  out=$(ferro_cold "$work/cold$i"); echo "first$i $out" >> "$RES/cold-ferrostack.txt"; say "ferrostack first start run $i: $out"
done
say "ferrostack cold start: restart on an existing data dir ($RUNS runs)"
for i in $(seq "$RUNS"); do
  quiet
  out=$(ferro_cold "$work/cold1"); echo "restart$i $out" >> "$RES/cold-ferrostack.txt"; say "ferrostack restart run $i: $out"
done
for f in "$work"/cold*.log; do log_digest "$f" "$RES/ferrostack-$(basename "$f" .log)-log-digest.txt"; done

# ====================================================================== ferrostack load
say "ferrostack load"
quiet
# shellcheck disable=SC2034  # read by lib.sh ferro_start: empty = pick a free port
FERRO_PORT=""
if ferro_start "$work/ferro" --admin-password "$PW" "${serve_args[@]}"; then
  FBASE="$FERRO_URL/identity/v3"
  sleep "$IDLE_S"
  echo "idle_after_start $(pid_mem $FERRO_PIDS)" > "$RES/mem-ferrostack.txt"
  TOKEN=$(get_token "$FBASE/auth/tokens"); SUBJECT=$(get_token "$FBASE/auth/tokens")
  if [ -z "$TOKEN" ] || [ -z "$SUBJECT" ]; then
    echo "ferrostack: could not get a token" >> "$RES/problems.txt"
  else
    preflight_all ferrostack "$FBASE"
    for mode in keepalive close; do suite ferrostack "$mode" "$FBASE" "$(printf "P:%s " $FERRO_PIDS)"; done
  fi
  if kill -0 "$FERRO_PID" 2>/dev/null; then
    sleep "$IDLE_S"
    echo "idle_after_load $(pid_mem $FERRO_PIDS)" >> "$RES/mem-ferrostack.txt"
  else
    echo "ferrostack (pid $FERRO_PID) DIED during the load tests; log tail:" >> "$RES/problems.txt"
    tail -20 "$work/ferro/ferrostack.log" | sed 's/\x1b\[[0-9;]*m//g; s/^/      /' >> "$RES/problems.txt"
  fi
  ferro_stop
  log_digest "$work/ferro/ferrostack.log" "$RES/ferrostack-log-digest.txt"
else
  echo "ferrostack did not start: $(tail -5 "$work/ferro/ferrostack.log" 2>/dev/null)" >> "$RES/problems.txt"
fi

# ====================================================================== Keystone
if [ -z "$peer_reason" ]; then
  E="$PEER_DATA_DIR/etc"
  say "Keystone cold start: uwsgi start -> first 200 on /v3 ($RUNS runs; memcached not running, as in bench.sh)"
  for i in $(seq "$RUNS"); do
    quiet
    out=$("$PY" "$BENCH/coldstart.py" http://127.0.0.1:5000/v3 "$IDLE_S" "$RES/keystone-cold.log" -- "$PV/bin/uwsgi" --ini "$E/uwsgi/keystone.ini")
    echo "cold$i $out" >> "$RES/cold-keystone.txt"; say "keystone cold run $i: $out"
  done
  say "Keystone up (peers/up.sh: memcached, keystone, glance, placement)"
  quiet
  peer_up=1
  if PEER_NOVA=0 PEER_PASSWORD="$PW" bash "$PEERS/up.sh" "$PEER_DATA_DIR" > "$RES/peer-up.log" 2>&1; then
    pidfile="$PEER_DATA_DIR/run/pids"
    kpg=$(awk '$1=="keystone"{print $2}' "$pidfile" | tail -1)
    mpg=$(awk '$1=="memcached"{print $2}' "$pidfile" | tail -1)
    KBASE=http://127.0.0.1:5000/v3
    sleep "$IDLE_S"
    { echo "idle_after_start $(group_mem "$kpg")"; [ -n "$mpg" ] && echo "memcached_idle_after_start $(group_mem "$mpg")"; } > "$RES/mem-keystone.txt"
    TOKEN=$(get_token "$KBASE/auth/tokens"); SUBJECT=$(get_token "$KBASE/auth/tokens")
    if [ -z "$TOKEN" ] || [ -z "$SUBJECT" ]; then
      echo "keystone: could not get a token" >> "$RES/problems.txt"
    else
      preflight_all keystone "$KBASE"
      UWSGI_STATS="$PEER_DATA_DIR/run/keystone.stats" suite keystone server-close "$KBASE" "G:$kpg${mpg:+ G:$mpg}"
    fi
    sleep "$IDLE_S"
    { echo "idle_after_load $(group_mem "$kpg")"; [ -n "$mpg" ] && echo "memcached_idle_after_load $(group_mem "$mpg")"; } >> "$RES/mem-keystone.txt"
  else
    echo "peer up.sh failed (see $RES/peer-up.log)" >> "$RES/problems.txt"
  fi
  PEER_NOVA=0 bash "$PEERS/down.sh" "$PEER_DATA_DIR" >> "$RES/peer-down.log" 2>&1
  peer_up=0
fi

# ====================================================================== table
row() {  # SYS MODE TEST C FIELD(5=rps 6=p50 7=p99 8=non2 12=foreign 13=flag)
  awk -F'\t' -v s="$1" -v m="$2" -v t="$3" -v c="$4" -v f="$5" '$1==s && $2==m && $3==t && $4==c {print $f; exit}' "$ROWS"
}
unit() { case "$1" in ""|n/a) echo "n/a" ;; *) echo "$1$2" ;; esac; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.1f", a/b; else print "n/a" }'; }
# noisy SYS MODE TEST C...: true if that wrk row stayed NOISY after its retries
noisy() {
  local s=$1 m=$2 t=$3; shift 3
  local c; for c in "$@"; do row "$s" "$m" "$t" "$c" 13 | grep -q NOISY && return 0; done; return 1
}
judge() {  # NOISY(1|empty) VALUE OP LIMIT
  if [ "$1" = 1 ]; then echo 'NOISY (not judged)'; else shift; verdict "$@"; fi
}
verdict() {  # VALUE OP LIMIT
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN{ if (v=="n/a"||v=="") {print "n/a"; exit}
    ok = (op==">=") ? (v+0 >= l+0) : (v+0 < l+0); print ok ? "PASS" : "MISS" }'
}
cold_med() { awk -v k="$2" '$1 ~ "^"k {print $2}' "$1" 2>/dev/null | grep -E '^[0-9]+$' | median; }
cold_all() { awk -v k="$2" '$1 ~ "^"k {printf "%s%s", sep, $2; sep=", "}' "$1" 2>/dev/null; }
mem_field() { awk -v k="$2" -v f="$3" '$1==k {print $f}' "$1" 2>/dev/null; }
ks_measured=0; [ -s "$RES/mem-keystone.txt" ] && grep -q '^keystone' "$ROWS" && ks_measured=1

{
  cat "$RES/header.txt"
  echo
  echo "Throughput / latency (wrk; p50/p99 in ms; cores = CPU used meanwhile by the server / by wrk / by anything else)"
  printf '%-22s %-3s %-24s %10s %9s %9s %7s %-18s %-16s %s\n' test c system "req/s" p50 p99 non2xx socket-errors "cores srv/wrk/fgn" flags
  for test in issue_password issue_rescope validate; do
    for c in 1 16; do
      for sm in "ferrostack keepalive ferrostack (keep-alive)" "ferrostack close ferrostack (conn close)" "keystone server-close keystone (conn close)"; do
        read -r s m label <<<"$sm"
        [ -z "$(row "$s" "$m" "$test" "$c" 3)" ] && continue
        printf '%-22s %-3s %-24s %10s %9s %9s %7s %-18s %-16s %s\n' "$test" "$c" "$label" \
          "$(row "$s" "$m" "$test" "$c" 5)" "$(row "$s" "$m" "$test" "$c" 6)" "$(row "$s" "$m" "$test" "$c" 7)" \
          "$(row "$s" "$m" "$test" "$c" 8)" "$(row "$s" "$m" "$test" "$c" 9)" \
          "$(row "$s" "$m" "$test" "$c" 10)/$(row "$s" "$m" "$test" "$c" 11)/$(row "$s" "$m" "$test" "$c" 12)" "$(row "$s" "$m" "$test" "$c" 13)"
      done
    done
  done
  echo
  echo "Memory (MiB, RSS / PSS; idle = ${IDLE_S} s without requests)"
  printf '  %-50s %s\n' "ferrostack process, idle after start" "$(mem_field "$RES/mem-ferrostack.txt" idle_after_start 2) / $(mem_field "$RES/mem-ferrostack.txt" idle_after_start 3)"
  printf '  %-50s %s\n' "ferrostack process, idle after the load tests" "$(mem_field "$RES/mem-ferrostack.txt" idle_after_load 2) / $(mem_field "$RES/mem-ferrostack.txt" idle_after_load 3)"
  if [ "$ks_measured" = 1 ]; then
    printf '  %-50s %s\n' "keystone uwsgi group ($(mem_field "$RES/mem-keystone.txt" idle_after_start 4) procs), idle after start" "$(mem_field "$RES/mem-keystone.txt" idle_after_start 2) / $(mem_field "$RES/mem-keystone.txt" idle_after_start 3)"
    printf '  %-50s %s\n' "keystone uwsgi group, idle after the load tests" "$(mem_field "$RES/mem-keystone.txt" idle_after_load 2) / $(mem_field "$RES/mem-keystone.txt" idle_after_load 3)"
    printf '  %-50s %s\n' "+ memcached (keystone's cache), after load" "$(mem_field "$RES/mem-keystone.txt" memcached_idle_after_load 2) / $(mem_field "$RES/mem-keystone.txt" memcached_idle_after_load 3)"
  fi
  echo
  echo "Cold start (exec -> first HTTP 200 on the version document; ms; $RUNS runs, median)"
  printf '  %-50s %6s ms  (runs: %s)\n' "ferrostack first start, empty data dir" "$(cold_med "$RES/cold-ferrostack.txt" first)" "$(cold_all "$RES/cold-ferrostack.txt" first)"
  printf '  %-50s %6s ms  (runs: %s)\n' "ferrostack restart, existing data dir" "$(cold_med "$RES/cold-ferrostack.txt" restart)" "$(cold_all "$RES/cold-ferrostack.txt" restart)"
  if [ -s "$RES/cold-keystone.txt" ]; then
    printf '  %-50s %6s ms  (runs: %s)\n' "keystone (uwsgi start -> GET /v3 200)" "$(cold_med "$RES/cold-keystone.txt" cold)" "$(cold_all "$RES/cold-keystone.txt" cold)"
  fi
  echo
  echo "bcrypt: $(tail -1 "$RES/bcrypt.txt" 2>/dev/null); bound = nproc ($NPROC) / verify time = ${BOUND:-n/a} req/s"
  echo
  echo "Targets"
  printf '  %-52s %10s %10s  %s\n' target value goal result
  for m in keepalive close; do
    v=$(awk -v r="$(row ferrostack "$m" issue_password 16 5)" -v b="$BOUND" 'BEGIN{ if (r+0>0 && b+0>0) printf "%.1f", 100*r/b; else print "n/a" }')
    printf '  %-52s %10s %10s  %s\n' "password issue c=16 / bcrypt bound ($m)" "$(unit "$v" %)" ">= 90%" "$(judge "$(noisy ferrostack "$m" issue_password 16 && echo 1)" "$v" '>=' 90)"
  done
  for test in issue_rescope validate; do
    goal=30; [ "$test" = validate ] && goal=50
    for c in 1 16; do
      for m in keepalive close; do
        if [ "$ks_measured" = 1 ]; then
          v=$(ratio "$(row ferrostack "$m" "$test" "$c" 5)" "$(row keystone server-close "$test" "$c" 5)")
        else v="n/a"; fi
        printf '  %-52s %10s %10s  %s\n' "$test c=$c ferrostack/keystone ($m)" "$(unit "$v" x)" ">= ${goal}x" "$(judge "$({ noisy ferrostack "$m" "$test" "$c" || noisy keystone server-close "$test" "$c"; } && echo 1)" "$v" '>=' "$goal")"
      done
    done
  done
  for k in first restart; do
    v=$(cold_med "$RES/cold-ferrostack.txt" "$k")
    printf '  %-52s %10s %10s  %s\n' "cold start, ferrostack $k (median)" "$(unit "$v" " ms")" "< 1000 ms" "$(verdict "$v" '<' 1000)"
  done
  bad=$(awk -F'\t' '$1=="ferrostack" && ($8!="0" || $9!="-") {n++} END{print n+0}' "$ROWS")
  printf '  %-52s %10s %10s  %s\n' "ferrostack wrk runs with non-2xx or socket errors" "$bad" "0" "$( [ "$bad" = 0 ] && echo PASS || echo MISS)"
  echo
  echo "Notes"
  echo "  * Keystone (uwsgi http-socket, add-header Connection: close) closes every connection, so every Keystone"
  echo "    request pays a new TCP connection. ferrostack keeps connections alive; the '(conn close)' rows force"
  echo "    'Connection: close' from wrk so ferrostack pays the same per-request connection cost."
  echo "  * wrk runs on the same $NPROC cores as the server: at high request rates wrk's own CPU (see cores column)"
  echo "    limits ferrostack's figure, so ferrostack's numbers are lower bounds."
  echo "  * ferrostack as shipped writes one INFO access-log line per request to its log file ($(head -1 "$RES/ferrostack-log-digest.txt" 2>/dev/null | cut -d';' -f1)"
  echo "    in this run); Keystone runs with debug=false and uwsgi disable-logging=true (no per-request log)."
  echo "  * wrk counts completed requests only. At c=16 the password runs have ~1.7-1.9 s latency; the hashes in"
  echo "    flight when a run ends are lost work. ferrostack verifies all 16 hashes at once (completions come in"
  echo "    bursts of up to 16), Keystone's 2 workers one after another (evenly spaced), so at DURATION=10s"
  echo "    ferrostack's figure can move by up to 16 requests (~1.6 req/s, ~16% of the bound) from run to run;"
  echo "    use DURATION=30s or more to judge the bound target."
  echo "  * wrk 4 corrects its latency histogram for coordinated omission: one stall of S ms adds synthetic samples"
  echo "    up to S ms, so a few long stalls per run show up as a high p99 even when 99.9% of requests were fast."
  echo "  * flags: NOISY = other load on the machine > $NOISY_CORES cores during the run (retried up to 3x);"
  echo "    EXTERNAL = Keystone served more requests than wrk sent; tries=N = run was repeated."
  [ "$ks_measured" = 1 ] || echo "  * Keystone was NOT measured in this run ($peer_reason); ratios are n/a. For reference only:"\
    "shared/peers/BASELINE.md (other run) has Keystone at 210.9/351.9 req/s (rescope c=1/16), 213.8/370.8 (validate), cold start 1660 ms."
  case "$profile" in DEBUG*) echo "  * THE FERROSTACK BINARY IS A DEBUG BUILD: its numbers are NOT representative." ;; esac
  echo
  awk -F'\t' '$13 ~ /NOISY/ {printf "%s %s %s c=%s stayed NOISY after 3 tries (foreign load %s cores): rerun on a quiet machine\n", $1, $2, $3, $4, $12}' "$ROWS" >> "$RES/problems.txt"
  if [ -s "$RES/problems.txt" ]; then echo "Problems seen"; sed 's/^/  * /' "$RES/problems.txt"; else echo "Problems seen: none"; fi
  echo
  echo "Raw outputs: $RES"
} > "$TABLE"
cat "$TABLE"
echo
echo "results table saved to: $TABLE"

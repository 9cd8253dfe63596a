#!/usr/bin/env bash
# Image benchmark: ferrostack's Image service (Glance v2 API) beside real
# Glance, measured in the same run on the same machine.
#
#   scripts/bench-image.sh
#
# Measures:
#   * data path, ferrostack only: one IMAGE_MIB (2048) MiB image of random data
#     (raw/bare) uploaded with `curl -T` and downloaded with `curl -o FILE`
#     (cold page cache: the stored file is dropped from the cache first with
#     posix_fadvise(DONTNEED)), then to /dev/null (cold cache again, and warm):
#     MiB/s = MiB / curl's time_total; the download is compared byte for byte
#     with the original (cmp) and the image's os_hash_value with sha512sum;
#     ferrostack's VmRSS is sampled every 100 ms (bench/rss_watch.py): peak
#     minus the idle RSS just before the transfer.
#   * raw disk speed on the same filesystem, right before the transfers:
#     dd bs=4M oflag=direct (write), dd bs=4M iflag=direct (read), and a
#     buffered cp of the image + fdatasync (the server writes through the page
#     cache and fdatasyncs at the end, so this is the like-for-like reference),
#     and `openssl dgst -md5` / `-sha512` of the image (each hash is serial, one
#     core: md5 alone bounds any upload that computes Glance's checksum).
#     Ratios upload/dd-write and cold-download(/dev/null)/dd-read (target >= 80 %).
#   * GET /v2/images with NIMAGES (100) images (half of them active with 1 KiB
#     of data, half queued; created by bench/load_images.py the same way on
#     both systems): default page (25) and ?limit=100, wrk at c=1 (-t1 -c1) and
#     c=16 (-t2 -c16), bench/auth_get.lua with a project-scoped admin token:
#     req/s, p50, p99, non-2xx; ferrostack keep-alive and with
#     'Connection: close', real Glance 33 from ../shared/peers (uwsgi closes
#     every connection). Ratio ferrostack/Glance (target >= 20x).
# ferrostack and Glance never run at the same time; before every step the
# script waits until the machine is idle (bench/cpu_watch.py --quiet-wait);
# every wrk run records the CPU used by the server, by wrk and by anything
# else ("foreign"); runs with foreign > NOISY_CORES are retried (3 tries) and
# flagged.
#
# Environment:
#   DURATION=10s      wrk duration per run
#   PEER=1            0 = skip Glance (ferrostack only); skipped as well when
#                     ../shared/peers is absent (FERRO_PEERS overrides the path)
#   IMAGE_MIB=2048    size of the big image (MiB, multiple of 4)
#   IO_RUNS=1         repetitions of the data-path block (disk refs + upload +
#                     downloads); the table shows the median and every run
#   NIMAGES=100       images present for the list benchmark
#   IDLE_S=5          idle seconds before RSS is read
#   QUIET_MAX=300     max seconds to wait for an idle machine before each step
#   QUIET_THRESH=0.10 "idle" = whole machine busy below this many cores (3 s window)
#   NOISY_CORES=0.15  foreign load above which a wrk run is retried/flagged
#   BENCH_PASSWORD=secret  admin password for both systems
#   FERROSTACK_BIN    binary to measure (default target/release/ferrostack; this
#                     script does not build unless BUILD=1, which uses lib.sh
#                     ferro_bin). A binary under target/debug is flagged in the
#                     header. It is copied at the start, so a rebuild during
#                     the run is harmless.
#   FERRO_EXTRA_ARGS  extra `ferrostack serve` arguments
#   RESULTS_DIR=target/bench   where the results table + raw outputs go
#   TMPDIR            where the temporary directory (image file, dd file,
#                     ferrostack data dir incl. its image store, Glance's peer
#                     data) is made; everything in it is on one filesystem.
#                     Needs about 3 x IMAGE_MIB free.
#   KEEP=1            keep the temporary directory
# Needs: wrk, curl, dd, python3 (stdlib only). Glance half: ../shared/peers
# (setup.sh installs the peer venv the first time: minutes of pip).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
set +e   # keep going on failures; each step reports its own
BENCH="$REPO/scripts/bench"
PEERS="${FERRO_PEERS:-$REPO/../shared/peers}"
DURATION="${DURATION:-10s}"
PEER="${PEER:-1}"
IMAGE_MIB="${IMAGE_MIB:-2048}"
IO_RUNS="${IO_RUNS:-1}"
NIMAGES="${NIMAGES:-100}"
IDLE_S="${IDLE_S:-5}"
QUIET_MAX="${QUIET_MAX:-300}"
QUIET_THRESH="${QUIET_THRESH:-0.10}"
NOISY_CORES="${NOISY_CORES:-0.15}"
PW="${BENCH_PASSWORD:-secret}"
RESULTS_DIR="${RESULTS_DIR:-$REPO/target/bench}"
PY="$(command -v python3)"
read -r -a serve_args <<< "${FERRO_EXTRA_ARGS:-}"
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"
export LC_ALL=C
if [ $((IMAGE_MIB % 4)) != 0 ] || [ "$IMAGE_MIB" -lt 4 ]; then echo "IMAGE_MIB must be a multiple of 4" >&2; exit 1; fi

# One benchmark at a time on this machine: the identity and image benches load
# the same cores and use the same fixed peer ports (5000, 9292, 8778, 11211),
# so both take the same lock.
LOCK="${TMPDIR:-/tmp}/ferrostack-bench-identity.lock"
exec 9>>"$LOCK"
if ! flock -n 9; then
  echo "bench-image.sh: another benchmark holds $LOCK; waiting for it to finish" >&2
  flock 9
fi

stamp="$(date +%Y%m%d-%H%M%S)"
RES="$RESULTS_DIR/image-$stamp"
TABLE="$RESULTS_DIR/image-$stamp.txt"
mkdir -p "$RES"
ROWS="$RES/rows.tsv"; : > "$ROWS"      # wrk rows
IOROWS="$RES/io.tsv"; : > "$IOROWS"    # data-path rows
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-bench-image.XXXXXX")"
PEER_DATA_DIR="$work/peer"
peer_up=0

say() { echo "== $(date +%H:%M:%S) $*" | tee -a "$RES/log.txt" >&2; }
problem() { echo "$*" >> "$RES/problems.txt"; say "PROBLEM: $*"; }
cleanup() {
  local rc=$?
  ferro_stop
  if [ "$peer_up" = 1 ]; then PEER_NOVA=0 bash "$PEERS/down.sh" "$PEER_DATA_DIR" >> "$RES/peer-down.log" 2>&1; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "bench-image.sh: kept $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

quiet() { "$PY" "$BENCH/cpu_watch.py" --quiet-wait "$QUIET_MAX" "$QUIET_THRESH" 2>&1 | tee -a "$RES/log.txt" >&2; }
# median of numbers on stdin (floats ok)
median() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "n/a"} else if(NR%2){print a[(NR+1)/2]} else {printf "%.1f\n",(a[NR/2]+a[NR/2+1])/2}}'; }
# wrk latency ("4.60ms", "267.00us", "2.10s", "1.00m") -> ms
to_ms() { awk -v v="$1" 'BEGIN{ if (v=="") {print "n/a"; exit}
  n=v+0; u=v; sub(/^[0-9.]+/,"",u);
  f=(u=="us")?0.001:(u=="ms")?1:(u=="s")?1000:(u=="m")?60000:-1;
  if (f<0) print "n/a"; else printf "%.2f\n", n*f }'; }
kib_mib() { awk -v k="$1" 'BEGIN{ if (k=="" || k<0) print "n/a"; else printf "%.1f", k/1024 }'; }
mibs() { awk -v b="$1" -v s="$2" 'BEGIN{ if (s+0>0) printf "%.1f", b/1048576/s; else print "n/a" }'; }
pid_mem() {  # pid_mem PID... -> "rss_MiB pss_MiB" summed over the PIDs
  local r q p rs=0 qs=0
  for p in "$@"; do
    r=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null); q=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    rs=$((rs + ${r:-0})); qs=$((qs + ${q:-0}))
  done
  awk -v r="$rs" -v q="$qs" 'BEGIN{printf "%.1f %.1f\n", r/1024, q/1024}'
}
# group_mem PGID -> "rss_MiB pss_MiB nprocs" summed over the process group
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
# json_field FILE EXPR -> python expression on the parsed document `d`
json_field() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

# run_wrk SYSTEM MODE TEST C URL TARGET [ENV=...]
#   MODE: keepalive | close (adds -H 'Connection: close') | server-close (Glance)
#   TARGET: cpu_watch target spec ('P:pid' / 'G:pgid ...')
run_wrk() {
  local sys=$1 mode=$2 test=$3 c=$4 url=$5 target=$6; shift 6
  local t=1; [ "$c" -gt 1 ] && t=2
  local hdr=(); [ "$mode" = close ] && hdr=(-H 'Connection: close')
  local f="$RES/wrk-$sys-$mode-$test-c$c.txt" try flag=""
  local _wall tc wc fc served nreq
  for try in 1 2 3; do
    quiet
    rm -f "$f.cpu"
    env "$@" "$PY" "$BENCH/cpu_watch.py" --target "$target" "$f.cpu" -- \
      wrk -t"$t" -c"$c" -d"$DURATION" --timeout 30s --latency "${hdr[@]}" -s "$BENCH/auth_get.lua" "$url" > "$f" 2>&1
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

# list_suite SYSTEM MODE IMAGE_BASE TARGET  (token in $TOKEN)
list_suite() {
  local sys=$1 mode=$2 base=$3 target=$4 c
  for c in 1 16; do run_wrk "$sys" "$mode" list_default "$c" "$base/v2/images" "$target" TOKEN="$TOKEN" SUBJECT=; done
  for c in 1 16; do run_wrk "$sys" "$mode" list_limit100 "$c" "$base/v2/images?limit=100" "$target" TOKEN="$TOKEN" SUBJECT=; done
}
# list_preflight SYSTEM IMAGE_BASE: one request per URL; checks status and the
# number of images returned, records the body size
list_preflight() {
  local sys=$1 base=$2 name url want code n
  for name in list_default list_limit100; do
    url="$base/v2/images"; want=25
    [ "$name" = list_limit100 ] && { url="$base/v2/images?limit=100"; want=$((NIMAGES < 100 ? NIMAGES : 100)); }
    [ "$name" = list_default ] && [ "$NIMAGES" -lt 25 ] && want=$NIMAGES
    code=$(curl -sS -m 60 -o "$RES/preflight-$sys-$name.body" -w '%{http_code}' -H @"$work/auth.hdr" "$url")
    n=$(json_field "$RES/preflight-$sys-$name.body" 'len(d["images"])')
    echo "$sys $name $code ${n:-?} $(wc -c < "$RES/preflight-$sys-$name.body")" >> "$RES/preflight.txt"
    if [ "$code" != 200 ] || [ "$n" != "$want" ]; then
      problem "PREFLIGHT $sys $name: HTTP $code, ${n:-?} images (want 200, $want): $(head -c 300 "$RES/preflight-$sys-$name.body")"
    fi
  done
}

# log_digest LOG OUT: keep only a digest of the (large) server log
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

# io_row RUN STEP BYTES SECONDS [RSSWATCH-LINE]  -> io.tsv
#   io.tsv: run step MiB/s seconds srv_cores cmd_cores foreign rss_before_KiB rss_peak_KiB rss_after_KiB hwm_KiB
io_row() {
  local run=$1 step=$2 bytes=$3 secs=$4 w=${5:-}
  local _wall b p a _n sc cc fc hwm
  if [ -n "$w" ]; then read -r _wall b p a _n sc cc fc hwm <<< "$w"; fi
  secs=$(awk -v s="$secs" 'BEGIN{ if (s+0>0) printf "%.3f", s; else print "n/a" }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$step" "$(mibs "$bytes" "$secs")" "${secs:-n/a}" \
    "${sc:--}" "${cc:--}" "${fc:--}" "${b:--}" "${p:--}" "${a:--}" "${hwm:--}" >> "$IOROWS"
  say "io run $run $step: $(mibs "$bytes" "$secs") MiB/s (${secs:-n/a} s)${w:+ server=${sc}c curl=${cc}c foreign=${fc}c rss $(kib_mib "$b") -> peak $(kib_mib "$p") -> $(kib_mib "$a") MiB, VmHWM $(kib_mib "$hwm") MiB}"
}
# dd_secs "dd stderr" -> "bytes seconds"
dd_parse() { sed -n 's/^\([0-9][0-9]*\) bytes.* copied, \([0-9.e+-]*\) s,.*/\1 \2/p' | tail -1; }
now_ns() { date +%s%N; }

# ====================================================================== header
ferro_need wrk || exit 1
peer_reason=""
if [ "$PEER" != 1 ]; then peer_reason="PEER=$PEER"
elif [ ! -f "$PEERS/setup.sh" ]; then peer_reason="$PEERS absent"
else
  PEERS="$(cd "$PEERS" && pwd)"
  for p in 5000 9292 8778 11211; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then peer_reason="port 127.0.0.1:$p busy (not ours)"; break; fi
  done
fi
say "results: $RES; work dir: $work"

if [ "${BUILD:-0}" = 1 ]; then
  SRC_BIN="$(ferro_bin)" || { echo "could not build/find ferrostack" >&2; exit 1; }
else
  SRC_BIN="${FERROSTACK_BIN:-$REPO/target/release/ferrostack}"
fi
[ -x "$SRC_BIN" ] || { echo "ferrostack binary $SRC_BIN not found (build it, set FERROSTACK_BIN, or BUILD=1)" >&2; exit 1; }
# Measure a snapshot: a rebuild of target/ during the run must not mix two binaries.
BIN="$work/ferrostack"
cp "$SRC_BIN" "$BIN"
export FERROSTACK_BIN="$BIN"
case "$SRC_BIN" in
  */target/debug/*) profile="DEBUG BUILD (target/debug) -- NOT REPRESENTATIVE, numbers are far below a release build" ;;
  */target/release/*) profile="release" ;;
  *) profile="unknown profile" ;;
esac
stale=$(cd "$REPO" && find crates bin -name '*.rs' -newer "$SRC_BIN" 2>/dev/null | head -3 | paste -sd' ')
NPROC=$(nproc)
need_mib=$((IMAGE_MIB * 3 + 1024))
avail_mib=$(df -P -m "$work" | awk 'NR==2{print $4}')
if [ "${avail_mib:-0}" -lt "$need_mib" ]; then
  echo "only ${avail_mib} MiB free under $work, need about $need_mib MiB (IMAGE_MIB=$IMAGE_MIB)" >&2; exit 1
fi
FS_DESC="$(df -P -T -h "$work" | awk 'NR==2{print $1" "$2", "$3" size, "$5" free, mounted on "$7}'); mount options: $(awk -v d="$(df -P "$work" | awk 'NR==2{print $6}')" '$2==d{print $4; exit}' /proc/mounts)"
{
  echo "ferrostack image benchmark, $(date -u '+%Y-%m-%d %H:%M:%SZ')"
  echo "binary : $SRC_BIN ($profile), built $(date -u -r "$SRC_BIN" '+%Y-%m-%d %H:%M:%SZ'), sha256 $(sha256sum "$BIN" | cut -c1-12), $("$BIN" --version 2>/dev/null)"
  [ -n "$stale" ] && echo "         WARNING: source files newer than the binary (stale build?): $stale ..."
  echo "tree   : HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- crates bin 2>/dev/null || echo ' + uncommitted changes in crates/ or bin/') at run time (compare with the binary build time)"
  echo "machine: $NPROC cpus ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem/{print $2}') GiB RAM (page cache holds the whole image), kernel $(uname -r)"
  echo "disk   : $FS_DESC; work dir $work (image file, dd file, ferrostack data dir + image store$( [ -z "$peer_reason" ] && echo ', Glance peer data'))"
  echo "data   : $IMAGE_MIB MiB from /dev/urandom, disk_format raw, container_format bare; curl $(curl --version | head -1 | awk '{print $2}'); IO_RUNS=$IO_RUNS"
  echo "load   : $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), DURATION=$DURATION, c=1: wrk -t1 -c1, c=16: wrk -t2 -c16, --timeout 30s --latency; $NIMAGES images (every 2nd active with 1 KiB, others queued)"
  if [ -z "$peer_reason" ]; then
    echo "peer   : Glance 33 from ../shared/peers (PEER_NOVA=0): $("${PEER_VENV:-/opt/peer-venv}/bin/pip" freeze 2>/dev/null | grep -i -E '^(glance|glance-store|keystonemiddleware|uwsgi)==' | paste -sd' '), uwsgi ${PEER_WORKERS:-max(2,nproc/4)} procs x 1 thread, fs store, SQLite WAL, keystonemiddleware token cache"
  else
    echo "peer   : Glance NOT measured in this run ($peer_reason): ferrostack half only"
  fi
  echo "ferro  : SQLite + file store in a temporary data dir, log filter ${RUST_LOG:+RUST_LOG=$RUST_LOG}${RUST_LOG:-default (INFO: one access-log line per request)}${FERRO_EXTRA_ARGS:+, extra args: $FERRO_EXTRA_ARGS}"
} > "$RES/header.txt"
cat "$RES/header.txt" >&2

# ====================================================================== test data
SRC="$work/image.raw"
IMG_BYTES=$((IMAGE_MIB * 1048576))
say "creating $IMAGE_MIB MiB of random data: $SRC"
head -c "${IMAGE_MIB}M" /dev/urandom > "$SRC"
sync "$SRC"   # on disk now; stays in the page cache as the (clean) source for curl -T and cp
SRC_SHA512=$(sha512sum "$SRC" | cut -d' ' -f1)
[ "$(stat -c %s "$SRC")" = "$IMG_BYTES" ] || problem "test image has $(stat -c %s "$SRC") bytes, want $IMG_BYTES"

# ====================================================================== ferrostack
say "ferrostack start"
quiet
# shellcheck disable=SC2034  # read by lib.sh ferro_start: empty = pick a free port
FERRO_PORT=""
FDATA="$work/ferro"
ferro_ok=0
if ferro_start "$FDATA" --admin-password "$PW" "${serve_args[@]}"; then
  FIMG="$FERRO_URL/image"
  TOKEN=$(get_token "$FERRO_URL/identity/v3/auth/tokens")
  printf 'X-Auth-Token: %s\n' "$TOKEN" > "$work/auth.hdr"
  if [ -z "$TOKEN" ]; then
    problem "ferrostack: could not get a token"
  else
    code=$(curl -sS -m 30 -o "$RES/preflight-ferrostack-image-api.body" -w '%{http_code}' -H @"$work/auth.hdr" "$FIMG/v2/images")
    if [ "$code" = 200 ]; then ferro_ok=1
    else problem "ferrostack: GET /image/v2/images -> HTTP $code (binary without the Image service? built $(date -u -r "$SRC_BIN" '+%H:%M:%SZ'))"; fi
  fi
  sleep "$IDLE_S"
  echo "idle_after_start $(pid_mem $FERRO_PIDS)" > "$RES/mem-ferrostack.txt"
else
  problem "ferrostack did not start: $(tail -5 "$FDATA/ferrostack.log" 2>/dev/null)"
fi
[ "$(stat -c %d "$SRC")" = "$(stat -c %d "$FDATA")" ] || problem "image store and test file are on different filesystems"

# drop_cache FILE: flush FILE and drop it from the page cache
drop_cache() {
  "$PY" -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fdatasync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"
}
# download RUN STEP OUT WHAT: GET the image's data to OUT with curl, watching
# ferrostack's RSS; records an io row for STEP and checks status and length
download() {
  local run=$1 step=$2 out=$3 what=$4 code secs got
  say "io run $run: download, $what"
  quiet
  "$PY" "$BENCH/rss_watch.py" "$FERRO_SERVICE_PID" "$RES/rss-$step-$run.txt" 0.1 -- \
    curl -sS -m 3600 -o "$out" -w '%{http_code} %{time_total} %{size_download}\n' \
      -H @"$work/auth.hdr" "$FIMG/v2/images/$ID/file" \
    > "$RES/$step-$run.curl" 2> "$RES/$step-$run.err"
  read -r code secs got < "$RES/$step-$run.curl"
  [ "$code" = 200 ] || problem "io run $run: download ($what) HTTP ${code:-none}: $(head -c 300 "$RES/$step-$run.err")"
  [ "${got%.*}" = "$IMG_BYTES" ] || problem "io run $run: download ($what) got ${got:-?} bytes, want $IMG_BYTES"
  io_row "$run" "$step" "$IMG_BYTES" "$secs" "$(tail -1 "$RES/rss-$step-$run.txt")"
}

if [ "$ferro_ok" = 1 ]; then
  for run in $(seq "$IO_RUNS"); do
    # ---------------------------------------------------------------- raw disk
    say "io run $run: raw disk (dd direct write/read, buffered cp + fdatasync) on $FS_DESC"
    quiet
    dd if=/dev/zero of="$work/dd.test" bs=4M count=$((IMAGE_MIB / 4)) oflag=direct 2> "$RES/dd-write-$run.txt"
    read -r b s <<< "$(dd_parse < "$RES/dd-write-$run.txt")"; io_row "$run" disk_write "$b" "$s"
    quiet
    dd if="$work/dd.test" of=/dev/null bs=4M iflag=direct 2> "$RES/dd-read-$run.txt"
    read -r b s <<< "$(dd_parse < "$RES/dd-read-$run.txt")"; io_row "$run" disk_read "$b" "$s"
    rm -f "$work/dd.test"
    cat "$SRC" > /dev/null   # source in the page cache, as for curl -T
    quiet
    t0=$(now_ns); cp "$SRC" "$work/cp.test"; t1=$(now_ns); sync -d "$work/cp.test"; t2=$(now_ns)
    io_row "$run" cp_fdatasync "$IMG_BYTES" "$(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.3f", (b-a)/1e9}')"
    io_row "$run" cp_buffered_only "$IMG_BYTES" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')"
    rm -f "$work/cp.test"
    # The hashing floor: the server computes md5 and sha512 of every upload
    # (as Glance does), each a serial computation on one core; openssl's
    # assembly is the fastest implementation at hand.
    for alg in md5 sha512; do
      quiet
      t0=$(now_ns); openssl dgst "-$alg" "$SRC" > /dev/null; t1=$(now_ns)
      io_row "$run" "hash_$alg" "$IMG_BYTES" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')"
    done

    # ---------------------------------------------------------------- upload
    curl -sS -m 60 -o "$RES/create-$run.json" -X POST -H @"$work/auth.hdr" -H 'Content-Type: application/json' \
      -d "{\"name\":\"bench-big-$run\",\"disk_format\":\"raw\",\"container_format\":\"bare\"}" "$FIMG/v2/images"
    ID=$(json_field "$RES/create-$run.json" 'd["id"]')
    if [ -z "$ID" ]; then problem "io run $run: image create failed: $(head -c 300 "$RES/create-$run.json")"; continue; fi
    cat "$SRC" > /dev/null
    say "io run $run: upload $IMAGE_MIB MiB (curl -T) -> image $ID"
    quiet
    "$PY" "$BENCH/rss_watch.py" "$FERRO_SERVICE_PID" "$RES/rss-upload-$run.txt" 0.1 -- \
      curl -sS -m 3600 -o "$RES/upload-$run.body" -w '%{http_code} %{time_total} %{size_upload}\n' \
        -T "$SRC" -H 'Content-Type: application/octet-stream' -H @"$work/auth.hdr" "$FIMG/v2/images/$ID/file" \
      > "$RES/upload-$run.curl" 2> "$RES/upload-$run.err"
    read -r code secs sent < "$RES/upload-$run.curl"
    [ "$code" = 204 ] || problem "io run $run: upload HTTP ${code:-none} (want 204): $(head -c 300 "$RES/upload-$run.body") $(head -c 300 "$RES/upload-$run.err")"
    [ "${sent%.*}" = "$IMG_BYTES" ] || problem "io run $run: curl sent ${sent:-?} bytes, want $IMG_BYTES"
    io_row "$run" upload "$IMG_BYTES" "$secs" "$(tail -1 "$RES/rss-upload-$run.txt")"
    kill -0 "$FERRO_PID" 2>/dev/null || { problem "ferrostack DIED during the upload"; break; }

    curl -sS -m 60 -o "$RES/image-$run.json" -H @"$work/auth.hdr" "$FIMG/v2/images/$ID"
    st=$(json_field "$RES/image-$run.json" 'd["status"]'); sz=$(json_field "$RES/image-$run.json" 'd["size"]')
    hv=$(json_field "$RES/image-$run.json" 'd["os_hash_value"]'); ha=$(json_field "$RES/image-$run.json" 'd["os_hash_algo"]')
    if [ "$st" = active ] && [ "$sz" = "$IMG_BYTES" ] && [ "$ha" = sha512 ] && [ "$hv" = "$SRC_SHA512" ]; then
      echo "$run hash ok" >> "$RES/integrity.txt"
    else
      echo "$run hash BAD" >> "$RES/integrity.txt"
      problem "io run $run: after upload status=$st size=$sz os_hash_algo=$ha os_hash_value ${hv:0:16}... (sha512sum of the file ${SRC_SHA512:0:16}...)"
    fi
    stored=$(find "$FDATA" -type f -name "$ID-*" ! -name '*.partial' | head -1)
    [ -n "$stored" ] || stored=$(find "$FDATA" -type f -name "*$ID*" | head -1)
    if [ -n "$stored" ]; then
      [ "$(stat -c %d "$stored")" = "$(stat -c %d "$SRC")" ] || problem "stored image $stored is not on the test filesystem"
      echo "$run stored $stored $(stat -c %s "$stored")" >> "$RES/integrity.txt"
    else
      problem "io run $run: stored file for $ID not found under $FDATA (cold download will be from the page cache)"
    fi

    # ---------------------------------------------------------------- downloads
    [ -n "$stored" ] && drop_cache "$stored"
    download "$run" download_cold "$work/download.raw" "cold cache, curl -o file"
    if cmp "$SRC" "$work/download.raw" > "$RES/cmp-$run.txt" 2>&1; then
      echo "$run cmp ok" >> "$RES/integrity.txt"
    else
      echo "$run cmp BAD" >> "$RES/integrity.txt"
      problem "io run $run: downloaded file differs from the original: $(head -c 300 "$RES/cmp-$run.txt")"
    fi
    rm -f "$work/download.raw"
    kill -0 "$FERRO_PID" 2>/dev/null || { problem "ferrostack DIED during the download"; break; }
    # The same cold read without the client's file writes: the server's side.
    [ -n "$stored" ] && drop_cache "$stored"
    download "$run" download_cold_null /dev/null "cold cache, curl -o /dev/null"
    download "$run" download_warm /dev/null "warm cache, curl -o /dev/null"

    code=$(curl -sS -m 60 -o "$RES/delete-$run.body" -w '%{http_code}' -X DELETE -H @"$work/auth.hdr" "$FIMG/v2/images/$ID")
    [ "$code" = 204 ] || problem "io run $run: DELETE image HTTP $code: $(head -c 300 "$RES/delete-$run.body")"
    [ -n "$stored" ] && [ -e "$stored" ] && problem "io run $run: stored file $stored still present after DELETE"
  done
  if kill -0 "$FERRO_PID" 2>/dev/null; then
    sleep "$IDLE_S"
    echo "idle_after_io $(pid_mem $FERRO_PIDS)" >> "$RES/mem-ferrostack.txt"
  fi

  # ---------------------------------------------------------------- list
  if kill -0 "$FERRO_PID" 2>/dev/null; then
    say "ferrostack: creating $NIMAGES images (bench/load_images.py)"
    quiet
    TOKEN="$TOKEN" "$PY" "$BENCH/load_images.py" "$FIMG" "$NIMAGES" 2 > "$RES/load-ferrostack.txt" 2>&1 \
      || problem "ferrostack load_images: $(tail -3 "$RES/load-ferrostack.txt")"
    say "ferrostack load: $(tail -1 "$RES/load-ferrostack.txt")"
    list_preflight ferrostack "$FIMG"
    for mode in keepalive close; do list_suite ferrostack "$mode" "$FIMG" "$(printf "P:%s " $FERRO_PIDS)"; done
  fi
  if kill -0 "$FERRO_PID" 2>/dev/null; then
    sleep "$IDLE_S"
    echo "idle_after_list $(pid_mem $FERRO_PIDS)" >> "$RES/mem-ferrostack.txt"
  else
    problem "ferrostack (pid $FERRO_PID) DIED; log tail: $(tail -20 "$FDATA/ferrostack.log" | sed 's/\x1b\[[0-9;]*m//g')"
  fi
fi
ferro_stop
log_digest "$FDATA/ferrostack.log" "$RES/ferrostack-log-digest.txt"
rm -rf "$FDATA/images"   # free the disk before the peer

# ====================================================================== Glance
if [ -z "$peer_reason" ]; then
  say "Glance peer setup (PEER_NOVA=0; first time: pip install into /opt/peer-venv, minutes)"
  quiet
  if PEER_NOVA=0 PEER_PASSWORD="$PW" PYTHONWARNINGS=ignore bash "$PEERS/setup.sh" "$PEER_DATA_DIR" > "$RES/peer-setup.log" 2>&1; then
    say "Glance up (peers/up.sh: memcached, keystone, glance, placement)"
    peer_up=1
    if PEER_NOVA=0 PEER_PASSWORD="$PW" bash "$PEERS/up.sh" "$PEER_DATA_DIR" > "$RES/peer-up.log" 2>&1; then
      pidfile="$PEER_DATA_DIR/run/pids"
      gpg=$(awk '$1=="glance"{print $2}' "$pidfile" | tail -1)
      kpg=$(awk '$1=="keystone"{print $2}' "$pidfile" | tail -1)
      mpg=$(awk '$1=="memcached"{print $2}' "$pidfile" | tail -1)
      GIMG=http://127.0.0.1:9292
      sleep "$IDLE_S"
      echo "idle_after_start $(group_mem "$gpg")" > "$RES/mem-glance.txt"
      TOKEN=$(get_token http://127.0.0.1:5000/v3/auth/tokens)
      printf 'X-Auth-Token: %s\n' "$TOKEN" > "$work/auth.hdr"
      if [ -z "$TOKEN" ]; then
        problem "keystone (peer): could not get a token"
      else
        say "Glance: creating $NIMAGES images (bench/load_images.py)"
        quiet
        TOKEN="$TOKEN" "$PY" "$BENCH/load_images.py" "$GIMG" "$NIMAGES" 2 > "$RES/load-glance.txt" 2>&1 \
          || problem "glance load_images: $(tail -3 "$RES/load-glance.txt")"
        say "glance load: $(tail -1 "$RES/load-glance.txt")"
        list_preflight glance "$GIMG"
        # server CPU = glance + keystone + memcached groups (token validation);
        # EXTERNAL check on glance's uwsgi request counter only
        UWSGI_STATS="$PEER_DATA_DIR/run/glance.stats" list_suite glance server-close "$GIMG" "G:$gpg${kpg:+ G:$kpg}${mpg:+ G:$mpg}"
      fi
      sleep "$IDLE_S"
      echo "idle_after_list $(group_mem "$gpg")" >> "$RES/mem-glance.txt"
    else
      problem "peer up.sh failed (see $RES/peer-up.log)"
    fi
    PEER_NOVA=0 bash "$PEERS/down.sh" "$PEER_DATA_DIR" >> "$RES/peer-down.log" 2>&1
    peer_up=0
  else
    peer_reason="peer setup.sh failed (see $RES/peer-setup.log)"
    problem "$peer_reason"
  fi
fi

# ====================================================================== table
row() {  # SYS MODE TEST C FIELD(5=rps 6=p50 7=p99 8=non2 9=errs 10/11/12=cores 13=flag)
  awk -F'\t' -v s="$1" -v m="$2" -v t="$3" -v c="$4" -v f="$5" '$1==s && $2==m && $3==t && $4==c {print $f; exit}' "$ROWS"
}
# io_col STEP FIELD -> value of every run, one per line (3=MiB/s 4=s 5=srv 6=cmd 7=fgn 8=rss_before 9=peak 10=after 11=hwm)
io_col() { awk -F'\t' -v s="$1" -v f="$2" '$2==s {print $f}' "$IOROWS"; }
io_med() { io_col "$1" "$2" | grep -E '^[0-9.]+$' | median; }
io_all() { io_col "$1" "$2" | paste -sd' ' | sed 's/ /, /g'; }
# growth of RSS above the idle value just before the transfer, MiB (max over runs)
rss_delta() { awk -F'\t' -v s="$1" '$2==s && $8 ~ /^[0-9]+$/ && $9 ~ /^[0-9]+$/ {d=($9-$8)/1024; if (!n || d>m) m=d; n++} END{ if (n) printf "%.1f", m; else print "n/a" }' "$IOROWS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.1fx", a/b; else print "n/a" }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.0f%%", 100*a/b; else print "n/a" }'; }
verdict() {  # VALUE OP LIMIT
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN{ if (v=="n/a"||v=="") {print "n/a"; exit}
    ok = (op==">=") ? (v+0 >= l+0) : (v+0 < l+0); print ok ? "PASS" : "MISS" }'
}
mem_field() { awk -v k="$2" -v f="$3" '$1==k {print $f}' "$1" 2>/dev/null; }
gl_measured=0; grep -q '^glance' "$ROWS" && gl_measured=1

{
  cat "$RES/header.txt"
  echo
  echo "Image data path ($IMAGE_MIB MiB random data; MiB/s = MiB / elapsed (curl time_total for HTTP); median of $IO_RUNS run(s), every run in brackets)"
  printf '  %-48s %9s %9s  %-18s %s\n' step "MiB/s" seconds "cores srv/curl/fgn" "ferrostack RSS MiB: idle -> peak (+delta), VmHWM"
  for sl in "disk_write:raw disk write, dd bs=4M oflag=direct" "disk_read:raw disk read, dd bs=4M iflag=direct" \
            "cp_fdatasync:buffered cp + fdatasync (reference)" "cp_buffered_only:  (the cp part alone, page cache only)" \
            "hash_md5:md5 of the image, openssl dgst (one core)" "hash_sha512:sha512 of the image, openssl dgst (one core)" \
            "upload:ferrostack upload, curl -T" "download_cold:ferrostack download, cold cache, curl -o file" \
            "download_cold_null:ferrostack download, cold cache, -o /dev/null" \
            "download_warm:ferrostack download, warm cache, -o /dev/null"; do
    s=${sl%%:*}; label=${sl#*:}
    [ -z "$(io_col "$s" 3)" ] && continue
    cores="-"; rss="-"
    if [ "$(io_col "$s" 5 | head -1)" != "-" ]; then
      cores="$(io_col "$s" 5 | tail -1)/$(io_col "$s" 6 | tail -1)/$(io_col "$s" 7 | tail -1)"
      rss="$(kib_mib "$(io_col "$s" 8 | tail -1)") -> $(kib_mib "$(io_col "$s" 9 | tail -1)") (+$(rss_delta "$s")), $(kib_mib "$(io_col "$s" 11 | tail -1)")"
    fi
    runs=""; [ "$IO_RUNS" -gt 1 ] && runs="  [$(io_all "$s" 3)]"
    printf '  %-48s %9s %9s  %-18s %s%s\n' "$label" "$(io_med "$s" 3)" "$(io_med "$s" 4)" "$cores" "$rss" "$runs"
  done
  ok_hash=$(grep -c 'hash ok' "$RES/integrity.txt" 2>/dev/null); ok_cmp=$(grep -c 'cmp ok' "$RES/integrity.txt" 2>/dev/null)
  echo "  integrity: os_hash_value == sha512sum in ${ok_hash:-0}/$IO_RUNS run(s); downloaded file == original (cmp) in ${ok_cmp:-0}/$IO_RUNS run(s)"
  echo
  echo "GET /v2/images, $NIMAGES images (wrk; p50/p99 in ms; cores = CPU used meanwhile by the server / by wrk / by anything else)"
  printf '  %-16s %-3s %-24s %10s %9s %9s %7s %-14s %-16s %s\n' test c system "req/s" p50 p99 non2xx socket-errors "cores srv/wrk/fgn" flags
  for test in list_default list_limit100; do
    for c in 1 16; do
      for sm in "ferrostack keepalive ferrostack (keep-alive)" "ferrostack close ferrostack (conn close)" "glance server-close glance (conn close)"; do
        read -r s m label <<<"$sm"
        [ -z "$(row "$s" "$m" "$test" "$c" 3)" ] && continue
        printf '  %-16s %-3s %-24s %10s %9s %9s %7s %-14s %-16s %s\n' "$test" "$c" "$label" \
          "$(row "$s" "$m" "$test" "$c" 5)" "$(row "$s" "$m" "$test" "$c" 6)" "$(row "$s" "$m" "$test" "$c" 7)" \
          "$(row "$s" "$m" "$test" "$c" 8)" "$(row "$s" "$m" "$test" "$c" 9)" \
          "$(row "$s" "$m" "$test" "$c" 10)/$(row "$s" "$m" "$test" "$c" 11)/$(row "$s" "$m" "$test" "$c" 12)" "$(row "$s" "$m" "$test" "$c" 13)"
      done
    done
  done
  [ -s "$RES/preflight.txt" ] && awk '{printf "  response: %-10s %-14s HTTP %s, %s images, %s bytes\n", $1, $2, $3, $4, $5}' "$RES/preflight.txt"
  echo
  echo "Memory (MiB, RSS / PSS; idle = ${IDLE_S} s without requests)"
  for k in idle_after_start idle_after_io idle_after_list; do
    v=$(mem_field "$RES/mem-ferrostack.txt" "$k" 2); [ -z "$v" ] && continue
    printf '  %-50s %s\n' "ferrostack process, ${k//_/ }" "$v / $(mem_field "$RES/mem-ferrostack.txt" "$k" 3)"
  done
  if [ -s "$RES/mem-glance.txt" ]; then
    for k in idle_after_start idle_after_list; do
      v=$(mem_field "$RES/mem-glance.txt" "$k" 2); [ -z "$v" ] && continue
      printf '  %-50s %s\n' "glance uwsgi group ($(mem_field "$RES/mem-glance.txt" "$k" 4) procs), ${k//_/ }" "$v / $(mem_field "$RES/mem-glance.txt" "$k" 3)"
    done
  fi
  echo
  echo "Targets"
  printf '  %-56s %10s %10s  %s\n' target value goal result
  up=$(io_med upload 3); dw=$(io_med disk_write 3); dc=$(io_med download_cold 3); dr=$(io_med disk_read 3); cf=$(io_med cp_fdatasync 3)
  dn=$(io_med download_cold_null 3); hm=$(io_med hash_md5 3)
  v=$(pct "$up" "$dw"); printf '  %-56s %10s %10s  %s\n' "upload / raw disk write (dd oflag=direct)" "$v" ">= 80%" "$(verdict "${v%\%}" '>=' 80)"
  v=$(pct "$dn" "$dr"); printf '  %-56s %10s %10s  %s\n' "download (cold, -o /dev/null) / raw disk read (dd iflag=direct)" "$v" ">= 80%" "$(verdict "${v%\%}" '>=' 80)"
  v=$(pct "$up" "$cf"); printf '  %-56s %10s %10s  %s\n' "  (info) upload / buffered cp + fdatasync" "$v" "-" "-"
  v=$(pct "$up" "$hm"); printf '  %-56s %10s %10s  %s\n' "  (info) upload / md5 alone on one core (hashing floor)" "$v" "-" "-"
  v=$(pct "$dc" "$dr"); printf '  %-56s %10s %10s  %s\n' "  (info) download (cold, -o file) / dd iflag=direct" "$v" "-" "-"
  v=$(rss_delta upload); printf '  %-56s %10s %10s  %s\n' "RSS peak - idle during upload" "$v MiB" "< 100 MiB" "$(verdict "$v" '<' 100)"
  v=$(awk -v a="$(rss_delta download_cold)" -v b="$(rss_delta download_warm)" 'BEGIN{ if (a=="n/a" && b=="n/a") print "n/a"; else if (b=="n/a" || (a!="n/a" && a+0>b+0)) print a; else print b }')
  printf '  %-56s %10s %10s  %s\n' "RSS peak - idle during download (cold and warm, max)" "${v} MiB" "< 100 MiB" "$(verdict "$v" '<' 100)"
  bad_int=$(grep -c 'BAD' "$RES/integrity.txt" 2>/dev/null); n_int=$(grep -c -E 'hash|cmp' "$RES/integrity.txt" 2>/dev/null)
  if [ "${n_int:-0}" = 0 ]; then v="n/a"; else v="$((n_int - bad_int))/$n_int"; fi
  printf '  %-56s %10s %10s  %s\n' "data integrity checks passed (sha512 + cmp)" "$v" "all" "$( [ "${n_int:-0}" = 0 ] && echo n/a || { [ "${bad_int:-0}" = 0 ] && echo PASS || echo MISS; })"
  for test in list_default list_limit100; do
    for c in 1 16; do
      for m in keepalive close; do
        if [ "$gl_measured" = 1 ]; then v=$(ratio "$(row ferrostack "$m" "$test" "$c" 5)" "$(row glance server-close "$test" "$c" 5)"); else v="n/a"; fi
        printf '  %-56s %10s %10s  %s\n' "GET /v2/images ${test#list_} c=$c ferrostack/glance ($m)" "$v" ">= 20x" "$(verdict "${v%x}" '>=' 20)"
      done
    done
  done
  bad=$(awk -F'\t' '$1=="ferrostack" && ($8!="0" || $9!="-") {n++} END{print n+0}' "$ROWS")
  nf=$(awk -F'\t' '$1=="ferrostack" {n++} END{print n+0}' "$ROWS")
  printf '  %-56s %10s %10s  %s\n' "ferrostack wrk runs with non-2xx or socket errors" "$bad/$nf" "0" "$( [ "$nf" = 0 ] && echo n/a || { [ "$bad" = 0 ] && echo PASS || echo MISS; })"
  echo
  echo "Notes"
  echo "  * Glance (uwsgi http-socket, add-header Connection: close) closes every connection, so every Glance request"
  echo "    pays a new TCP connection. ferrostack keeps connections alive; the '(conn close)' rows force"
  echo "    'Connection: close' from wrk so ferrostack pays the same per-request connection cost. Glance's server"
  echo "    cores include keystone + memcached (token validation; keystonemiddleware caches the token in-process)."
  echo "  * Both systems get the same images from bench/load_images.py (public, raw/bare, every 2nd active with 1 KiB);"
  echo "    the response sizes above show what each returns. wrk runs on the same $NPROC cores as the server, so at"
  echo "    high request rates wrk's own CPU (see the cores column) limits ferrostack: its numbers are lower bounds."
  echo "  * Upload time includes the server's fdatasync before it answers 204; curl reads the source from the page"
  echo "    cache. The file store writes with O_DIRECT (1 MiB aligned writes, as dd oflag=direct) where the filesystem"
  echo "    supports it, through the page cache otherwise; the cp + fdatasync row is the buffered reference."
  echo "  * 'cold cache' = the stored image file was fdatasync'ed and dropped from the page cache with"
  echo "    posix_fadvise(DONTNEED) right before the download; the downloaded copy goes to the page cache (not fsynced)."
  echo "    The warm row reads the file from the page cache and discards the data (server + loopback speed only)."
  echo "  * The server hashes every upload (md5 + sha512, as Glance does), each digest on its own thread: md5 is serial,"
  echo "    so no upload that computes it can beat the md5 row above; with $NPROC cores the two digests, the socket and"
  echo "    the page-cache copy share the CPU, and not the disk, set the upload limit (see the srv cores column)."
  echo "    foreign cores = kernel writeback, softirq, others."
  echo "  * RSS is sampled every 100 ms (bench/rss_watch.py; samples in rss-*.txt.samples); VmHWM is the process's"
  echo "    lifetime peak RSS, so a VmHWM above the sampled peak means a spike shorter than 100 ms."
  echo "  * ferrostack as shipped writes one INFO access-log line per request to its log file ($(head -1 "$RES/ferrostack-log-digest.txt" 2>/dev/null | cut -d';' -f1)"
  echo "    in this run); Glance runs with debug=false and uwsgi disable-logging=true (no per-request log)."
  echo "  * flags: NOISY = other load on the machine > $NOISY_CORES cores during the run (retried up to 3x);"
  echo "    EXTERNAL = Glance served more requests than wrk sent; tries=N = run was repeated."
  [ "$gl_measured" = 1 ] || echo "  * Glance was NOT measured in this run ($peer_reason); ratios are n/a."
  case "$profile" in DEBUG*) echo "  * THE FERROSTACK BINARY IS A DEBUG BUILD: its numbers are NOT representative." ;; esac
  [ -n "$stale" ] && echo "  * The ferrostack binary is older than some source files (stale build?): $stale"
  echo
  if [ -s "$RES/problems.txt" ]; then echo "Problems seen"; sed 's/^/  * /' "$RES/problems.txt"; else echo "Problems seen: none"; fi
  echo
  echo "Raw outputs: $RES"
} > "$TABLE"
cat "$TABLE"
echo
echo "results table saved to: $TABLE"

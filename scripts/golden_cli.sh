# Helpers shared by the CLI golden paths that drive Compute
# (golden-path-compute.sh, golden-path-qemu.sh). Source it after setting
# work (temp dir), PY and OSC (the venv's python and openstack), CLOUD,
# CLI_TIMEOUT and WAIT_S.
# JSON helper: reads the CLI's `-f json` output on stdin. Keys match case- and
# space-insensitively ("Zone Name" = zone_name).
#   get KEY                  value of KEY in an object
#   col KEY                  value of KEY in every object of a list, one per line
#   count                    number of elements of a list
#   where KEY VALUE COL      COL of the objects of a list whose KEY is VALUE, one per line
#   kv NAMEKEY VALUEKEY NAME the VALUEKEY of the row whose NAMEKEY is NAME, compared without
#                            case and punctuation (`limits show` prints maxTotalInstances
#                            as max_total_instances)
JSON_HELPER='
import json, sys
cmd, args = sys.argv[1], sys.argv[2:]
norm = lambda k: k.lower().replace(" ", "_").replace("-", "_")
def load():
    text = sys.stdin.read()
    try:
        return json.loads(text)
    except ValueError:
        sys.exit("not JSON: %r" % text[:500])
def get(obj, key):
    for k, v in obj.items():
        if norm(k) == norm(key):
            return v
    sys.exit("no key %r in %s" % (key, sorted(obj)))
def out(v):
    print(json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v)
if cmd == "get":
    out(get(load(), args[0]))
elif cmd == "col":
    for o in load():
        out(get(o, args[0]))
elif cmd == "count":
    print(len(load()))
elif cmd == "where":
    for o in load():
        if str(get(o, args[0])) == args[1]:
            out(get(o, args[2]))
elif cmd == "kv":
    squash = lambda s: "".join(c for c in str(s).lower() if c.isalnum())
    rows = [o for o in load() if squash(get(o, args[0])) == squash(args[2])]
    if not rows:
        sys.exit("no row %s=%s" % (args[0], args[2]))
    out(get(rows[0], args[1]))
'
js() { "$PY" -c "$JSON_HELPER" "$@"; }

# run CMD...: echo the command, run it, keep its stdout in OUT and stderr in ERR (and
# show both).
OUT='' ERR=''
run() {
  echo "\$ $*"
  local rc=0
  OUT="$("$@" < /dev/null 2> "$work/stderr")" || rc=$?
  ERR="$(cat "$work/stderr")"
  [ -z "$OUT" ] || printf '%s\n' "$OUT"
  [ -z "$ERR" ] || printf '%s\n' "$ERR"
  [ "$rc" = 0 ] || echo "(exit status $rc)"
  return "$rc"
}
# Every CLI call is bounded: `--wait` polls without a time limit.
admin() { OS_CLOUD="$CLOUD" timeout -k 5 "$CLI_TIMEOUT" "$OSC" "$@"; }

PASSED=0 FAILED=0
step() {  # step "description" FUNCTION  (prints the step's wall time)
  local desc="$1" t0=$SECONDS; shift
  if "$@" > "$work/step.log" 2>&1; then
    PASSED=$((PASSED + 1)); echo "ok - $desc ($((SECONDS - t0)) s)"
    if [ "${VERBOSE:-0}" = 1 ]; then sed 's/^/#   /' "$work/step.log"
    else grep '^# ' "$work/step.log" | sed 's/^/#   /' || true; fi
  else
    FAILED=$((FAILED + 1)); echo "not ok - $desc ($((SECONDS - t0)) s)"
    sed 's/^/#   /' "$work/step.log"
  fi
  return 0
}
need() {  # need VAR...: fail the step early when an earlier step did not set VAR
  local v; for v in "$@"; do
    [ -n "${!v:-}" ] || { echo "skipped: $v is not set (an earlier step failed)"; return 1; }
  done
}
expect_eq() {  # expect_eq WHAT GOT WANT
  echo "$1: $2 (want $3)"
  [ "$2" = "$3" ]
}
# wait_status SERVER WANT [TIMEOUT_S]: poll `server show` until its status is WANT;
# fails at once on ERROR (unless WANT is ERROR) and after TIMEOUT_S (default WAIT_S).
wait_status() {
  local srv="$1" want="$2" limit="${3:-$WAIT_S}" st='' last='' t0=$SECONDS
  echo "(waiting up to ${limit} s for $srv to be $want)"
  while :; do
    st="$(admin server show -f value -c status "$srv" 2> "$work/wait.err" < /dev/null)" || st="?"
    [ "$st" = "$last" ] || { echo "  $((SECONDS - t0)) s: status $st"; last="$st"; }
    [ "$st" = "$want" ] && return 0
    if [ "$st" = ERROR ]; then admin server show -f json -c fault "$srv" < /dev/null; return 1; fi
    if [ $((SECONDS - t0)) -ge "$limit" ]; then
      echo "(still $st after $limit s)"; cat "$work/wait.err"; return 1
    fi
    sleep 0.5
  done
}
# power_state SERVER: OS-EXT-STS:power_state as a name (the CLI prints the number with -f
# value/json: 1 Running, 3 Paused, 4 Shutdown)
power_state() {
  local v; v="$(admin server show -f value -c OS-EXT-STS:power_state "$1" < /dev/null)"
  case "$v" in 1) echo Running ;; 3) echo Paused ;; 4) echo Shutdown ;; *) echo "$v" ;; esac
}

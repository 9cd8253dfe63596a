#!/usr/bin/env bash
# The image golden path, driven with the real `openstack` CLI against a private
# ferrostack started for this run:
#   as admin: two projects, each with a member user (alice, bob), and clouds.yaml
#   entries for both; as alice: upload a real qcow2 (made with qemu-img), list/show it
#   (status, formats, md5 checksum, virtual size), set a property and a tag, download
#   it byte-identical, upload a private image bob cannot see, share the first image
#   with bob's project (bob accepts, then lists, shows and downloads it), copy it to a
#   second image store and drop the first copy (as admin), have a file
#   that is not a qcow2 refused when declared qcow2, delete the images; clean-up.
#
#   scripts/golden-path-image.sh
#
# Needs qemu-img. Environment: VERBOSE=1 (print every step's output), KEEP=1 (keep the
# temp dir), FERRO_EXTRA_ARGS (extra `ferrostack serve` arguments), FERROSTACK_BIN
# (see lib.sh).
#
# Each step prints `ok - <step>` or `not ok - <step>` followed by its commands and
# output; the last line is `golden-path-image: N passed, N failed`. Exit status 1 if a
# step failed.
source "$(dirname "$0")/lib.sh"

read -r -a serve_args <<< "${FERRO_EXTRA_ARGS:-}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-golden-image.XXXXXX")"
cleanup() {
  local rc=$?
  ferro_stop
  if [ "${KEEP:-0}" = 1 ]; then
    echo "golden-path-image.sh: kept $work (server log: $work/data/ferrostack.log)" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v qemu-img > /dev/null; then
  echo "not ok - qemu-img is installed"
  echo "golden-path-image: 0 passed, 1 failed"
  exit 1
fi
venv="$(ferro_venv)"
OSC="$venv/bin/openstack"
PY="$venv/bin/python"
data="$work/data"
# Two image stores (uploads go to the default, fast), so the CLI's multistore
# commands have somewhere to copy to.
export FERROSTACK__IMAGE__BACKENDS__CHEAP__STORE=file \
       FERROSTACK__IMAGE__BACKENDS__FAST__STORE=file \
       FERROSTACK__IMAGE__DEFAULT_BACKEND=fast
if ! ferro_start "$data" "${serve_args[@]}"; then
  echo "not ok - start ferrostack"
  echo "golden-path-image: 0 passed, 1 failed"
  exit 1
fi
echo "# ferrostack pid $FERRO_PID at $FERRO_URL (data $data)"
if [ ! -s "$data/clouds.yaml" ]; then
  echo "not ok - ferrostack wrote $data/clouds.yaml"
  echo "golden-path-image: 0 passed, 1 failed"
  exit 1
fi

# The CLI gets a private HOME and none of the caller's OS_* variables.
mkdir -p "$work/home"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_CACHE_HOME="$work/home/.cache"
for v in $(compgen -e); do case "$v" in OS_*) unset "$v" ;; esac; done
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"
export OS_CLIENT_CONFIG_FILE="$work/clouds.yaml"

# ---------------------------------------------------------------- helpers

# JSON helper: reads the CLI's `-f json` output on stdin.
#   get KEY                      value of KEY (case/space-insensitive: "Disk Format" = disk_format)
#   has-id ID                    a list of objects contains one with this id
#   ids-named NAME               ids of the objects in a list with this name, one per line
#   property KEY VALUE           `image show`: properties has KEY=VALUE
#   has-tag TAG                  `image show`: tags contains TAG
#   member MEMBER STATUS         `image member list`: MEMBER is a member with STATUS
#   clouds SRC                   print clouds.yaml: SRC's clouds + gp-alice/gp-bob from env
JSON_HELPER='
import json, os, sys
cmd, args = sys.argv[1], sys.argv[2:]
norm = lambda k: k.lower().replace(" ", "_")
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
if cmd == "get":
    v = get(load(), args[0])
    print(json.dumps(v) if isinstance(v, (list, dict)) else v)
elif cmd == "has-id":
    sys.exit(0 if any(get(o, "id") == args[0] for o in load()) else 1)
elif cmd == "ids-named":
    for o in load():
        if get(o, "name") == args[0]:
            print(get(o, "id"))
elif cmd == "property":
    props = get(load(), "properties")
    print("properties:", json.dumps(props, sort_keys=True))
    sys.exit(0 if isinstance(props, dict) and props.get(args[0]) == args[1] else 1)
elif cmd == "has-tag":
    tags = get(load(), "tags")
    if isinstance(tags, str):  # older clients print "a, b"
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    print("tags:", tags)
    sys.exit(0 if args[0] in tags else 1)
elif cmd == "member":
    rows = {(get(r, "member_id"), get(r, "status")) for r in load()}
    print("members:", sorted(rows))
    sys.exit(0 if (args[0], args[1]) in rows else 1)
elif cmd == "clouds":
    import yaml
    with open(args[0]) as fh:
        clouds = yaml.safe_load(fh)
    base = clouds["clouds"]["ferrostack"]
    common = {k: base[k] for k in ("region_name", "interface", "identity_api_version")
              if k in base}
    e = os.environ
    for who in ("alice", "bob"):
        p = "GP_" + who.upper() + "_"
        clouds["clouds"]["gp-" + who] = dict(common, auth_type="password", auth={
            "auth_url": base["auth"]["auth_url"], "username": e[p + "USER"],
            "password": e[p + "PASSWORD"], "user_domain_name": "Default",
            "project_name": e[p + "PROJECT"], "project_domain_name": "Default"})
    print(yaml.safe_dump(clouds, default_flow_style=False))
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
# fails_on CODE REQUEST AS ARGS...: `AS --debug ARGS...` fails and the server answered
# REQUEST (an extended regex of "METHOD PATH", e.g. "GET /image/v2/images/ID") with
# HTTP CODE. Shows the HTTP exchanges (from the client's debug log) and the error.
# The CLI itself often only says "No Image found for ..." whatever the status was.
fails_on() {
  local code="$1" req="$2" who="$3" rc=0; shift 3
  echo "\$ $who --debug $* (HTTP exchanges and error shown)"
  "$who" --debug "$@" < /dev/null > "$work/debug.log" 2>&1 || rc=$?
  grep -E '^https?://[^ ]+ "[A-Z]+ [^"]*" [0-9]{3}' "$work/debug.log" |
    sed -E 's/^[^ ]+ /  /' | grep -v ' /identity/' || true
  grep -E '^[A-Za-z.]*(Exception|Error): ' "$work/debug.log" | tail -1 || true
  [ "$rc" != 0 ] || { echo "(expected a failure)"; return 1; }
  echo "(exit status $rc)"
  grep -qE "\"$req HTTP/1\.1\" $code( |\$)" "$work/debug.log" ||
    { echo "(expected $req -> $code)"; return 1; }
}

admin() { OS_CLOUD=ferrostack "$OSC" "$@"; }
as_alice() { OS_CLOUD=gp-alice "$OSC" "$@"; }
as_bob() { OS_CLOUD=gp-bob "$OSC" "$@"; }

write_clouds() {
  GP_ALICE_USER="$ALICE" GP_ALICE_PASSWORD="$ALICE_PW" GP_ALICE_PROJECT="$ALICE_PROJ" \
    GP_BOB_USER="$BOB" GP_BOB_PASSWORD="$BOB_PW" GP_BOB_PROJECT="$BOB_PROJ" \
    js clouds "$data/clouds.yaml" > "$work/clouds.yaml.new" &&
    mv "$work/clouds.yaml.new" "$work/clouds.yaml"
}

PASSED=0 FAILED=0
step() {  # step "description" FUNCTION  (prints the step's wall time)
  local desc="$1" t0=$SECONDS; shift
  if "$@" > "$work/step.log" 2>&1; then
    PASSED=$((PASSED + 1)); echo "ok - $desc ($((SECONDS - t0)) s)"
    [ "${VERBOSE:-0}" = 1 ] && sed 's/^/#   /' "$work/step.log"
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
# expect_eq WHAT GOT WANT
expect_eq() {
  echo "$1: $2 (want $3)"
  [ "$2" = "$3" ]
}

# ---------------------------------------------------------------- names
S="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
ALICE="gp-alice-$S" ALICE_PROJ="gp-alice-proj-$S" ALICE_PW="Gp1-alice-$S"
BOB="gp-bob-$S" BOB_PROJ="gp-bob-proj-$S" BOB_PW="Gp1-bob-$S"
IMG=golden-img PRIV=golden-private BOGUS=bogus
DISK="$work/disk.qcow2" DISK_MD5='' DISK_SIZE=''
ALICE_PROJ_ID='' ALICE_ID='' BOB_PROJ_ID='' BOB_ID='' IMG_ID='' PRIV_ID=''
write_clouds

# ---------------------------------------------------------------- steps
s_admin_token() { run admin token issue -f json; }
s_catalog() {
  run admin catalog list -f json || return 1
  "$PY" -c 'import json, sys
rows = [r for r in json.load(sys.stdin) if r.get("Type") == "image" and r.get("Endpoints")]
sys.exit(0 if rows else 1)' <<< "$OUT"
}
# make_member WHO: project + user with the member role on it; sets WHO_PROJ_ID, WHO_ID
make_member() {
  local who="$1" proj user pw
  proj="${who}_PROJ"; user="$who"; pw="${who}_PW"
  run admin project create -f json --domain default "${!proj}" || return 1
  printf -v "${who}_PROJ_ID" '%s' "$(js get id <<< "$OUT")" || return 1
  run admin user create -f json --domain default --password "${!pw}" \
      --project "${!proj}" --project-domain default "${!user}" || return 1
  printf -v "${who}_ID" '%s' "$(js get id <<< "$OUT")" || return 1
  run admin role add --user "${!user}" --user-domain default \
      --project "${!proj}" --project-domain default member
}
s_alice() { make_member ALICE; }
s_bob() { make_member BOB; }
# user_token AS PROJECT_ID USER_ID
user_token() {
  need "$2" "$3" || return 1
  run "$1" token issue -f json || return 1
  expect_eq project_id "$(js get project_id <<< "$OUT")" "${!2}" || return 1
  expect_eq user_id "$(js get user_id <<< "$OUT")" "${!3}"
}
s_alice_token() { user_token as_alice ALICE_PROJ_ID ALICE_ID; }
s_bob_token() { user_token as_bob BOB_PROJ_ID BOB_ID; }
s_qemu_img() {
  run qemu-img create -f qcow2 "$DISK" 64M || return 1
  run qemu-img info --output=json "$DISK" || return 1
  expect_eq format "$(js get format <<< "$OUT")" qcow2 || return 1
  expect_eq virtual-size "$(js get virtual-size <<< "$OUT")" 67108864 || return 1
  DISK_MD5="$(md5sum < "$DISK" | cut -c1-32)" DISK_SIZE="$(stat -c %s "$DISK")"
  echo "md5 $DISK_MD5, $DISK_SIZE bytes"
}
s_create() {
  need ALICE_PROJ_ID DISK_MD5 || return 1
  local rc=0 here="$PWD"
  cd "$work" || return 1
  run as_alice image create -f json --file disk.qcow2 --disk-format qcow2 \
      --container-format bare "$IMG" || rc=$?
  cd "$here" || return 1
  [ "$rc" = 0 ] || return 1
  IMG_ID="$(js get id <<< "$OUT")" || return 1
  expect_eq name "$(js get name <<< "$OUT")" "$IMG"
}
s_list() {
  need IMG_ID || return 1
  run as_alice image list -f json || return 1
  js has-id "$IMG_ID" <<< "$OUT" || { echo "$IMG_ID not listed"; return 1; }
  expect_eq "ids named $IMG" "$(js ids-named "$IMG" <<< "$OUT")" "$IMG_ID"
}
s_show() {
  need IMG_ID || return 1
  run as_alice image show -f json "$IMG" || return 1
  expect_eq id "$(js get id <<< "$OUT")" "$IMG_ID" || return 1
  expect_eq status "$(js get status <<< "$OUT")" active || return 1
  expect_eq disk_format "$(js get disk_format <<< "$OUT")" qcow2 || return 1
  expect_eq container_format "$(js get container_format <<< "$OUT")" bare || return 1
  expect_eq checksum "$(js get checksum <<< "$OUT")" "$DISK_MD5" || return 1
  expect_eq size "$(js get size <<< "$OUT")" "$DISK_SIZE" || return 1
  expect_eq virtual_size "$(js get virtual_size <<< "$OUT")" 67108864 || return 1
  expect_eq owner "$(js get owner <<< "$OUT")" "$ALICE_PROJ_ID"
}
s_set() {
  need IMG_ID || return 1
  run as_alice image set --property k=v --tag t "$IMG" || return 1
  run as_alice image show -f json "$IMG" || return 1
  js property k v <<< "$OUT" && js has-tag t <<< "$OUT"
}
s_save() {
  need IMG_ID || return 1
  run as_alice image save --file "$work/out.qcow2" "$IMG" || return 1
  run cmp "$DISK" "$work/out.qcow2" || return 1
  expect_eq "md5 of the download" "$(md5sum < "$work/out.qcow2" | cut -c1-32)" "$DISK_MD5"
}
s_private() {
  need ALICE_PROJ_ID DISK_MD5 || return 1
  run as_alice image create -f json --private --file "$DISK" --disk-format qcow2 \
      --container-format bare "$PRIV" || return 1
  PRIV_ID="$(js get id <<< "$OUT")" || return 1
  run as_alice image show -f json "$PRIV_ID" || return 1
  expect_eq visibility "$(js get visibility <<< "$OUT")" private || return 1
  expect_eq status "$(js get status <<< "$OUT")" active
}
# not_visible_to_bob ID: bob can neither show nor list (nor download) the image
not_visible_to_bob() {
  fails_on 404 "GET /image/v2/images/$1" as_bob image show "$1" || return 1
  fails_on 404 "GET /image/v2/images/$1" as_bob image save --file "$work/bob.out" "$1" ||
    return 1
  [ ! -s "$work/bob.out" ] || { echo "bob downloaded data"; return 1; }
  run as_bob image list -f json || return 1
  if js has-id "$1" <<< "$OUT"; then echo "$1 is listed for bob"; return 1; fi
}
s_private_hidden() { need PRIV_ID BOB_PROJ_ID && not_visible_to_bob "$PRIV_ID"; }
s_not_shared_yet() {
  need IMG_ID BOB_PROJ_ID || return 1
  run as_alice image show -f value -c visibility "$IMG" || return 1
  # Images are created "shared" (the Glance default since v2.5); set it anyway.
  if [ "$OUT" != shared ]; then run as_alice image set --shared "$IMG" || return 1; fi
  not_visible_to_bob "$IMG_ID"
}
s_share() {
  need IMG_ID BOB_PROJ_ID || return 1
  run as_alice image add project -f json "$IMG" "$BOB_PROJ_ID" || return 1
  expect_eq status "$(js get status <<< "$OUT")" pending || return 1
  run as_alice image member list -f json "$IMG" || return 1
  js member "$BOB_PROJ_ID" pending <<< "$OUT"
}
# A pending member can reach the image by id but does not list it (Glance lists
# shared images with member_status=accepted by default).
s_pending() {
  need IMG_ID BOB_PROJ_ID || return 1
  run as_bob image show -f json "$IMG_ID" || return 1
  run as_bob image list -f json || return 1
  if js has-id "$IMG_ID" <<< "$OUT"; then echo "listed for bob while pending"; return 1; fi
}
# By id: while pending, bob's name lookup (GET /v2/images?name=...) does not find the
# image, as in Glance.
s_accept() {
  need IMG_ID BOB_PROJ_ID || return 1
  run as_bob image set --accept "$IMG_ID" || return 1
  run as_alice image member list -f json "$IMG" || return 1
  js member "$BOB_PROJ_ID" accepted <<< "$OUT"
}
s_bob_sees() {
  need IMG_ID BOB_PROJ_ID || return 1
  run as_bob image list -f json || return 1
  js has-id "$IMG_ID" <<< "$OUT" || { echo "$IMG_ID not listed for bob"; return 1; }
  run as_bob image show -f json "$IMG" || return 1
  expect_eq id "$(js get id <<< "$OUT")" "$IMG_ID" || return 1
  expect_eq checksum "$(js get checksum <<< "$OUT")" "$DISK_MD5" || return 1
  run as_bob image save --file "$work/bob.qcow2" "$IMG_ID" || return 1
  run cmp "$DISK" "$work/bob.qcow2"
}
# copy-image (admin) to the second store, then drop the first store's copy;
# the image still downloads byte-identical.
s_stores() {
  need IMG_ID || return 1
  # --wait waits for status active, which a copied image never leaves: poll
  # the stores (the CLI shows them among the properties).
  run admin image import --method copy-image --store cheap --wait -f json "$IMG_ID" || return 1
  local i
  for i in $(seq 1 100); do
    run as_alice image show -f json "$IMG_ID" || return 1
    js property stores cheap,fast <<< "$OUT" > /dev/null && break
    sleep 0.2
  done
  js property stores cheap,fast <<< "$OUT" || return 1
  [ "$(ls "$data/image-stores/cheap" | wc -l)" = 1 ] || { echo "no copy in cheap"; return 1; }
  local before; before="$(ls "$data/image-stores/fast" | wc -l)"
  run admin image delete --store fast "$IMG_ID" || return 1
  run as_alice image show -f json "$IMG_ID" || return 1
  js property stores cheap <<< "$OUT" || return 1
  [ "$(ls "$data/image-stores/fast" | wc -l)" = $((before - 1)) ] ||
    { echo "the fast copy is still there"; return 1; }
  run as_alice image save --file "$work/cheap.qcow2" "$IMG_ID" || return 1
  run cmp "$DISK" "$work/cheap.qcow2"
}
s_bogus() {
  need ALICE_PROJ_ID || return 1
  fails_on 400 "PUT /image/v2/images/[^/ ]+/file" as_alice image create \
      --file /etc/hostname --disk-format qcow2 --container-format bare "$BOGUS" || return 1
  # The client deletes the image it created when the upload fails; an image left in
  # "queued" is acceptable too: delete whatever is left.
  run as_alice image list -f json --name "$BOGUS" || return 1
  local id ids; ids="$(js ids-named "$BOGUS" <<< "$OUT")" || return 1
  for id in $ids; do
    run as_alice image show -f value -c status "$id" || return 1
    [ "$OUT" = queued ] || { echo "(expected queued)"; return 1; }
    run as_alice image delete "$id" || return 1
  done
  run as_alice image list -f json --name "$BOGUS" || return 1
  ids="$(js ids-named "$BOGUS" <<< "$OUT")" || return 1
  [ -z "$ids" ] || { echo "still listed: $ids"; return 1; }
}
s_delete() {
  need IMG_ID PRIV_ID || return 1
  run as_alice image delete "$IMG" "$PRIV_ID" || return 1
  run as_alice image list -f json || return 1
  local id list="$OUT"
  for id in "$IMG_ID" "$PRIV_ID"; do
    if js has-id "$id" <<< "$list"; then echo "$id still listed"; return 1; fi
  done
  for id in "$IMG_ID" "$PRIV_ID"; do
    fails_on 404 "GET /image/v2/images/$id" as_alice image show "$id" || return 1
  done
  run as_bob image list -f json || return 1
  if js has-id "$IMG_ID" <<< "$OUT"; then echo "$IMG_ID still listed for bob"; return 1; fi
}
# delete_and_check KIND ID LIST-ARGS...: delete, then the list must not show ID
delete_and_check() {
  local kind="$1" id="$2"; shift 2
  run admin "$kind" delete "$id" || return 1
  run admin "$kind" list -f json "$@" || return 1
  if js has-id "$id" <<< "$OUT"; then echo "$kind $id still listed"; return 1; fi
}
s_cleanup() {
  need ALICE_ID BOB_ID ALICE_PROJ_ID BOB_PROJ_ID || return 1
  delete_and_check user "$ALICE_ID" --domain default &&
    delete_and_check user "$BOB_ID" --domain default &&
    delete_and_check project "$ALICE_PROJ_ID" --domain default &&
    delete_and_check project "$BOB_PROJ_ID" --domain default
}

step "token issue (admin)"                                   s_admin_token
step "catalog list shows image"                              s_catalog
step "project + member user alice"                           s_alice
step "project + member user bob"                             s_bob
step "token issue as alice (project scope)"                  s_alice_token
step "token issue as bob (project scope)"                    s_bob_token
step "qemu-img create -f qcow2 (64M)"                        s_qemu_img
step "image create --file disk.qcow2 (alice)"                s_create
step "image list shows it"                                   s_list
step "image show: active, qcow2/bare, md5 checksum, size, virtual_size, owner" s_show
step "image set --property k=v --tag t"                      s_set
step "image save is byte-identical (cmp, md5)"               s_save
step "image create --private"                                s_private
step "private image invisible to bob (show/save fail, not listed)" s_private_hidden
step "shared image invisible to bob before it is shared"     s_not_shared_yet
step "image add project (bob's), member pending"             s_share
step "pending member: show by id works, not listed"          s_pending
step "image set --accept (bob), member accepted"             s_accept
step "bob lists, shows and downloads the shared image"       s_bob_sees
step "image import --method copy-image --store cheap; image delete --store fast" s_stores
step "non-qcow2 data declared qcow2 is refused (400)"        s_bogus
step "image delete (both), no longer listed or shown"        s_delete
step "user and project delete"                               s_cleanup

echo "golden-path-image: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

#!/usr/bin/env bash
# The identity golden path, driven with the real `openstack` CLI against a private
# ferrostack started for this run:
#   token issue; domain, project, user, group and role create; group membership; role
#   assignments to a user and a group and their (effective) listing; an application
#   credential created by the new user and used to log in; token revocation; password
#   changes (self-service and admin) revoking earlier tokens; clean-up.
#
#   scripts/golden-path.sh
#
# Environment: VERBOSE=1 (print every step's output), KEEP=1 (keep the temp dir),
# FERRO_EXTRA_ARGS (extra `ferrostack serve` arguments), FERROSTACK_BIN (see lib.sh).
#
# Each step prints `ok - <step>` or `not ok - <step>` followed by its commands and
# output; the last line is `golden-path: N passed, N failed`. Exit status 1 if a step
# failed.
source "$(dirname "$0")/lib.sh"

read -r -a serve_args <<< "${FERRO_EXTRA_ARGS:-}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferro-golden.XXXXXX")"
cleanup() {
  local rc=$?
  ferro_stop
  if [ "${KEEP:-0}" = 1 ]; then
    echo "golden-path.sh: kept $work (server log: $work/data/ferrostack.log)" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

venv="$(ferro_venv)"
OSC="$venv/bin/openstack"
PY="$venv/bin/python"
data="$work/data"
if ! ferro_start "$data" "${serve_args[@]}"; then
  echo "not ok - start ferrostack"
  echo "golden-path: 0 passed, 1 failed"
  exit 1
fi
echo "# ferrostack pid $FERRO_PID at $FERRO_URL (data $data)"
if [ ! -s "$data/clouds.yaml" ]; then
  echo "not ok - ferrostack wrote $data/clouds.yaml"
  echo "golden-path: 0 passed, 1 failed"
  exit 1
fi

# The CLI gets a private HOME and none of the caller's OS_* variables.
mkdir -p "$work/home"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_CACHE_HOME="$work/home/.cache"
for v in $(compgen -e); do case "$v" in OS_*) unset "$v" ;; esac; done
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost"
export OS_CLIENT_CONFIG_FILE="$work/clouds.yaml"
IDENTITY="$FERRO_URL/identity/v3"

# ---------------------------------------------------------------- helpers

# JSON helper: reads the CLI's `-f json` output (or an API body) on stdin.
#   get KEY                      value of KEY (case/space-insensitive: "Project ID" = project_id)
#   rows MODE ROW...             role-assignment rows; ROW is "role;user;group;project";
#                                MODE contains: all ROWs present; exact: the rows are exactly ROWs
#   has-id ID                    a list of objects contains one with this id
#   catalog-has TYPE             `catalog list` has a service of this type with endpoints
#   token-roles NAME...          a token body (GET /v3/auth/tokens) has at least these roles
#   clouds SRC                   print clouds.yaml: SRC's clouds + gp-user/gp-appcred from env
#   auth-url SRC                 auth_url of cloud ferrostack in clouds.yaml SRC
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
elif cmd == "rows":
    mode, want = args[0], {tuple(r.split(";")) for r in args[1:]}
    have = {tuple(str(get(r, c) or "") for c in ("Role", "User", "Group", "Project"))
            for r in load()}
    missing, extra = want - have, have - want
    for r in sorted(have):
        print("  row:", ";".join(r))
    if missing:
        print("missing rows:", sorted(missing))
    if mode == "exact" and extra:
        print("unexpected rows:", sorted(extra))
    sys.exit(1 if missing or (mode == "exact" and extra) else 0)
elif cmd == "has-id":
    sys.exit(0 if any(get(o, "id") == args[0] for o in load()) else 1)
elif cmd == "catalog-has":
    rows = [r for r in load() if get(r, "type") == args[0] and get(r, "endpoints")]
    sys.exit(0 if rows else 1)
elif cmd == "token-roles":
    have = {r["name"] for r in load()["token"].get("roles", [])}
    print("token roles:", sorted(have))
    sys.exit(0 if set(args) <= have else 1)
elif cmd == "auth-url":
    import yaml
    with open(args[0]) as fh:
        print(yaml.safe_load(fh)["clouds"]["ferrostack"]["auth"]["auth_url"])
elif cmd == "clouds":
    import yaml
    with open(args[0]) as fh:
        clouds = yaml.safe_load(fh)
    base = clouds["clouds"]["ferrostack"]
    common = {k: base[k] for k in ("region_name", "interface", "identity_api_version")
              if k in base}
    e = os.environ
    clouds["clouds"]["gp-user"] = dict(common, auth_type="password", auth={
        "auth_url": base["auth"]["auth_url"], "username": e["GP_USER"],
        "password": e["GP_PASSWORD"], "user_domain_name": e["GP_DOMAIN"],
        "project_name": e["GP_PROJECT"], "project_domain_name": e["GP_DOMAIN"]})
    if e.get("GP_AC_ID"):
        clouds["clouds"]["gp-appcred"] = dict(common, auth_type="v3applicationcredential",
            auth={"auth_url": base["auth"]["auth_url"],
                  "application_credential_id": e["GP_AC_ID"],
                  "application_credential_secret": e["GP_AC_SECRET"]})
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
# fails_http CODES CMD...: succeeds when CMD fails with one of the HTTP status CODES
# (e.g. "401" or "401|404") reported by the client.
fails_http() {
  local codes="$1" code; shift
  if run "$@"; then echo "(expected a failure)"; return 1; fi
  for code in ${codes//|/ }; do [[ "$OUT$ERR" == *"HTTP $code"* ]] && return 0; done
  echo "(expected HTTP $codes)"; return 1
}

admin() { OS_CLOUD=ferrostack "$OSC" "$@"; }
as_user() { OS_CLOUD=gp-user "$OSC" "$@"; }
as_appcred() { OS_CLOUD=gp-appcred "$OSC" "$@"; }

# (Re)write the clouds.yaml the CLI uses: the server's admin cloud plus the test user's.
write_clouds() {
  GP_USER="$USR" GP_PASSWORD="$USER_PW" GP_DOMAIN="$DOM" GP_PROJECT="$PROJ" \
    GP_AC_ID="${AC_ID:-}" GP_AC_SECRET="${AC_SECRET:-}" \
    js clouds "$data/clouds.yaml" > "$work/clouds.yaml.new" &&
    mv "$work/clouds.yaml.new" "$work/clouds.yaml"
}

# token_status TOKEN: HTTP status of validating TOKEN with the admin token; body in $work/body
token_status() {
  curl -sS -o "$work/body" -w '%{http_code}' -H "X-Auth-Token: $ADMIN_TOKEN" \
    -H "X-Subject-Token: $1" "$IDENTITY/auth/tokens"
}
expect_token() {  # expect_token STATUS TOKEN
  local got
  got="$(token_status "$2")" || return 1
  echo "GET /identity/v3/auth/tokens (X-Subject-Token ${2:0:16}...) -> $got (want $1)"
  [ "$got" = "$1" ] || { head -c 600 "$work/body"; echo; return 1; }
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

# ---------------------------------------------------------------- names
S="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
DOM="gp-dom-$S" PROJ="gp-proj-$S" USR="gp-user-$S" GRP="gp-group-$S" ROLE="gp-role-$S"
USER_PW="Gp1-pass-$S" PW2="Gp2-pass-$S" PW3="Gp3-pass-$S"
ADMIN_TOKEN='' DOM_ID='' PROJ_ID='' USER_ID='' GROUP_ID='' ROLE_ID='' AC_ID='' AC_SECRET=''
OLD_TOKEN='' OLD_PW=''
write_clouds

# ---------------------------------------------------------------- steps
s_admin_token() {
  run admin token issue -f json || return 1
  ADMIN_TOKEN="$(js get id <<< "$OUT")" || return 1
  js get project_id <<< "$OUT" && js get user_id <<< "$OUT" && js get expires <<< "$OUT"
}
s_catalog() {
  run admin catalog list -f json || return 1
  js catalog-has identity <<< "$OUT"
}
# The interfaces in `catalog list -f json`.
interfaces() {
  "$PY" -c 'import json,sys
print(" ".join(sorted({e["interface"] for s in json.load(sys.stdin) for e in s["Endpoints"]})))'
}
s_endpoint_group() {
  need PROJ_ID || return 1
  echo '{"interface": "internal"}' > "$work/eg.json"
  run admin endpoint group create -f json "gp-eg-$S" "$work/eg.json" || return 1
  local eg rc=0; eg="$(js get id <<< "$OUT")" || return 1
  run admin endpoint group add project "$eg" "$PROJ_ID" || return 1
  run admin endpoint group list --project "$PROJ_ID" -f value -c ID || rc=1
  [ "$OUT" = "$eg" ] || { echo "(the project's groups: $OUT)"; rc=1; }
  run as_user catalog list -f json || rc=1
  [ "$(interfaces <<< "$OUT")" = "internal" ] || { echo "(interfaces: $(interfaces <<< "$OUT"))"; rc=1; }
  # Removed whatever the checks found: later steps need the whole catalog.
  run admin endpoint group remove project "$eg" "$PROJ_ID" || return 1
  run admin endpoint group delete "$eg" || return 1
  run as_user catalog list -f json || return 1
  [ "$(interfaces <<< "$OUT")" = "admin internal public" ] || { echo "(interfaces: $(interfaces <<< "$OUT"))"; return 1; }
  return "$rc"
}
s_domain() {
  run admin domain create -f json --description "golden path" "$DOM" || return 1
  DOM_ID="$(js get id <<< "$OUT")"
}
s_project() {
  need DOM_ID || return 1
  run admin project create -f json --domain "$DOM_ID" "$PROJ" || return 1
  PROJ_ID="$(js get id <<< "$OUT")" || return 1
  [ "$(js get domain_id <<< "$OUT")" = "$DOM_ID" ]
}
s_user() {
  need DOM_ID || return 1
  run admin user create -f json --domain "$DOM_ID" --password "$USER_PW" "$USR" || return 1
  USER_ID="$(js get id <<< "$OUT")" || return 1
  [ "$(js get domain_id <<< "$OUT")" = "$DOM_ID" ]
}
s_group() {
  need DOM_ID || return 1
  run admin group create -f json --domain "$DOM_ID" "$GRP" || return 1
  GROUP_ID="$(js get id <<< "$OUT")"
}
s_role() {
  run admin role create -f json "$ROLE" || return 1
  ROLE_ID="$(js get id <<< "$OUT")"
}
s_group_add_user() {
  need GROUP_ID USER_ID || return 1
  run admin group add user "$GROUP_ID" "$USER_ID" || return 1
  run admin group contains user "$GROUP_ID" "$USER_ID" || return 1
  [[ "$OUT" == *" in group "* ]] || { echo "(expected: ... in group ...)"; return 1; }
  run admin user list -f json --group "$GROUP_ID" || return 1
  js has-id "$USER_ID" <<< "$OUT"
}
s_role_add_user() {
  need USER_ID PROJ_ID || return 1
  run admin role add --user "$USER_ID" --project "$PROJ_ID" member
}
s_role_add_group() {
  need GROUP_ID PROJ_ID ROLE_ID || return 1
  run admin role add --group "$GROUP_ID" --project "$PROJ_ID" "$ROLE_ID"
}
# Effective assignments: the direct one, the one implied by it (member -> reader), and
# the group's role expanded to the user; group column empty after expansion.
effective_rows() {
  printf '%s\n' "member;$USR@$DOM;;$PROJ@$DOM" "reader;$USR@$DOM;;$PROJ@$DOM" \
                "$ROLE;$USR@$DOM;;$PROJ@$DOM"
}
s_assignments_effective() {
  need USER_ID PROJ_ID || return 1
  local rows; mapfile -t rows < <(effective_rows)
  run admin role assignment list --names --effective -f json || return 1
  js rows contains "${rows[@]}" <<< "$OUT"
}
s_assignments_effective_filtered() {
  need USER_ID PROJ_ID || return 1
  local rows; mapfile -t rows < <(effective_rows)
  run admin role assignment list --names --effective --user "$USER_ID" \
      --project "$PROJ_ID" -f json || return 1
  js rows exact "${rows[@]}" <<< "$OUT"
}
s_assignments_user() {
  need USER_ID || return 1
  run admin role assignment list --names --user "$USER_ID" -f json || return 1
  js rows exact "member;$USR@$DOM;;$PROJ@$DOM" <<< "$OUT"
}
s_assignments_group() {
  need GROUP_ID PROJ_ID || return 1
  run admin role assignment list --names --group "$GROUP_ID" --project "$PROJ_ID" -f json ||
    return 1
  js rows exact "$ROLE;;$GRP@$DOM;$PROJ@$DOM" <<< "$OUT"
}
s_user_token() {
  need ADMIN_TOKEN USER_ID PROJ_ID || return 1
  run as_user token issue -f json || return 1
  local token; token="$(js get id <<< "$OUT")" || return 1
  [ "$(js get project_id <<< "$OUT")" = "$PROJ_ID" ] || { echo "wrong project"; return 1; }
  [ "$(js get user_id <<< "$OUT")" = "$USER_ID" ] || { echo "wrong user"; return 1; }
  expect_token 200 "$token" || return 1
  js token-roles member reader "$ROLE" < "$work/body"
}
s_appcred_create() {
  need USER_ID PROJ_ID || return 1
  run as_user application credential create -f json --description "golden path" \
      "gp-appcred-$S" || return 1
  AC_ID="$(js get id <<< "$OUT")" && AC_SECRET="$(js get secret <<< "$OUT")" || return 1
  [ "$(js get project_id <<< "$OUT")" = "$PROJ_ID" ] || { echo "wrong project"; return 1; }
  write_clouds
}
s_appcred_list() {
  need AC_ID || return 1
  run as_user application credential list -f json || return 1
  js has-id "$AC_ID" <<< "$OUT" || return 1
  run as_user application credential show -f json "$AC_ID"
}
appcred_token_ok() {
  [ "$(js get project_id <<< "$OUT")" = "$PROJ_ID" ] || { echo "wrong project"; return 1; }
  [ "$(js get user_id <<< "$OUT")" = "$USER_ID" ] || { echo "wrong user"; return 1; }
}
s_appcred_login_cloud() {
  need AC_ID || return 1
  run as_appcred token issue -f json && appcred_token_ok
}
s_appcred_login_env() {
  need AC_ID || return 1
  local auth_url; auth_url="$(js auth-url "$data/clouds.yaml" < /dev/null)" || return 1
  run env OS_AUTH_TYPE=v3applicationcredential OS_AUTH_URL="$auth_url" \
      OS_APPLICATION_CREDENTIAL_ID="$AC_ID" OS_APPLICATION_CREDENTIAL_SECRET="$AC_SECRET" \
      OS_IDENTITY_API_VERSION=3 OS_INTERFACE=public OS_REGION_NAME=RegionOne \
      "$OSC" token issue -f json && appcred_token_ok
}
s_token_revoke() {
  need ADMIN_TOKEN || return 1
  run admin token issue -f value -c id || return 1
  local token="$OUT"
  expect_token 200 "$token" || return 1
  run admin token revoke "$token" || return 1
  expect_token 404 "$token" || return 1
  local code
  code="$(curl -sS -o "$work/body" -w '%{http_code}' -H "X-Auth-Token: $token" \
          "$IDENTITY/users")"
  echo "GET /identity/v3/users with the revoked token -> $code (want 401)"
  [ "$code" = 401 ]
}
s_password_self() {
  need ADMIN_TOKEN USER_ID || return 1
  run as_user token issue -f value -c id || return 1
  OLD_TOKEN="$OUT"
  expect_token 200 "$OLD_TOKEN" || return 1
  run as_user user password set --original-password "$USER_PW" --password "$PW2" || return 1
  OLD_PW="$USER_PW" USER_PW="$PW2"
  write_clouds
  sleep 1  # tokens carry whole seconds: log in again in a later second than the change
  expect_token 404 "$OLD_TOKEN" || return 1
  fails_http 401 as_user --os-password "$OLD_PW" token issue || return 1
  run as_user token issue -f value -c id
}
s_password_admin() {
  need ADMIN_TOKEN USER_ID || return 1
  run as_user token issue -f value -c id || return 1
  OLD_TOKEN="$OUT"
  expect_token 200 "$OLD_TOKEN" || return 1
  run admin user set --password "$PW3" "$USER_ID" || return 1
  OLD_PW="$USER_PW" USER_PW="$PW3"
  write_clouds
  sleep 1
  expect_token 404 "$OLD_TOKEN" || return 1
  fails_http 401 as_user --os-password "$OLD_PW" token issue || return 1
  run as_user token issue -f value -c id
}
s_appcred_after_password() {
  need AC_ID || return 1
  run as_appcred token issue -f json && appcred_token_ok
}
s_appcred_delete() {
  need AC_ID || return 1
  run as_user application credential delete "$AC_ID" || return 1
  run as_user application credential list -f json || return 1
  if js has-id "$AC_ID" <<< "$OUT"; then echo "still listed"; return 1; fi
  # Keystone answers 404 (application credential not found), 401 would do as well.
  fails_http "401|404" as_appcred token issue
}
s_role_remove() {
  need USER_ID GROUP_ID PROJ_ID ROLE_ID || return 1
  run admin role remove --user "$USER_ID" --project "$PROJ_ID" member || return 1
  run admin role remove --group "$GROUP_ID" --project "$PROJ_ID" "$ROLE_ID" || return 1
  run admin role assignment list --names --effective --user "$USER_ID" -f json || return 1
  js rows exact <<< "$OUT"
}
s_group_remove_user() {
  need USER_ID GROUP_ID || return 1
  run admin group remove user "$GROUP_ID" "$USER_ID" || return 1
  run admin group contains user "$GROUP_ID" "$USER_ID" || return 1
  [[ "$OUT" != *" in group "* ]] || { echo "(expected: not in group)"; return 1; }
  run admin user list -f json --group "$GROUP_ID" || return 1
  if js has-id "$USER_ID" <<< "$OUT"; then echo "user still listed in the group"; return 1; fi
}
# delete_and_check KIND ID LIST-ARGS...: delete, then the list must not show ID
delete_and_check() {
  local kind="$1" id="$2"; shift 2
  run admin "$kind" delete "$id" || return 1
  run admin "$kind" list -f json "$@" || return 1
  if js has-id "$id" <<< "$OUT"; then echo "$kind $id still listed"; return 1; fi
}
s_delete_user() { need USER_ID DOM_ID && delete_and_check user "$USER_ID" --domain "$DOM_ID"; }
s_delete_group() { need GROUP_ID DOM_ID && delete_and_check group "$GROUP_ID" --domain "$DOM_ID"; }
s_delete_project() { need PROJ_ID DOM_ID && delete_and_check project "$PROJ_ID" --domain "$DOM_ID"; }
s_delete_role() { need ROLE_ID && delete_and_check role "$ROLE_ID"; }
s_delete_domain() {
  need DOM_ID || return 1
  run admin domain set --disable "$DOM_ID" || return 1
  delete_and_check domain "$DOM_ID"
}

step "token issue (admin)"                                   s_admin_token
step "catalog list shows identity"                           s_catalog
step "domain create"                                         s_domain
step "project create in the domain"                          s_project
step "user create in the domain, with password"              s_user
step "group create in the domain"                            s_group
step "role create"                                           s_role
step "group add user (and group contains user, user list --group)" s_group_add_user
step "role add member to the user on the project"            s_role_add_user
step "role add the new role to the group on the project"     s_role_add_group
step "role assignment list --names --effective"              s_assignments_effective
step "role assignment list --names --effective --user --project" s_assignments_effective_filtered
step "role assignment list --names --user"                   s_assignments_user
step "role assignment list --names --group --project"        s_assignments_group
step "token issue as the new user (project scope, roles)"    s_user_token
step "endpoint group add project: the project's catalog is what the group matches" s_endpoint_group
step "application credential create as the new user"         s_appcred_create
step "application credential list/show as the new user"      s_appcred_list
step "token issue with the application credential (clouds.yaml)" s_appcred_login_cloud
step "token issue with the application credential (OS_AUTH_TYPE env)" s_appcred_login_env
step "token revoke makes validation 404"                     s_token_revoke
step "user password set (self-service) revokes old tokens, new password works" s_password_self
step "user set --password (admin) revokes old tokens, new password works" s_password_admin
step "application credential still works after password changes" s_appcred_after_password
step "application credential delete"                         s_appcred_delete
step "role remove (user and group), no effective assignments left" s_role_remove
step "group remove user"                                     s_group_remove_user
step "user delete"                                           s_delete_user
step "group delete"                                          s_delete_group
step "project delete"                                        s_delete_project
step "role delete"                                           s_delete_role
step "domain disable and delete"                             s_delete_domain

echo "golden-path: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

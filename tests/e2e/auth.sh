#!/usr/bin/env bash
# End-to-end: authentication with real clients (skopeo, oras-py).
#
#   tests/e2e/auth.sh          (REGISTRY is not used: see below)
#
# Unlike the other scripts here it needs registries with an `auth` section, so
# it starts its OWN wharf processes (the binary find_wharf_bin picks: WHARF_BIN,
# else the release build, else the debug one) on free ports with scratch data,
# and stops them on exit. The REGISTRY it is given is ignored.
#
#   a) auth.htpasswd: a bcrypt users file made with `htpasswd -B`; skopeo copies
#      a hand-made OCI layout in with --dest-creds, inspects it with --creds,
#      copies it back out and compares every blob; no credentials and a wrong
#      password are refused (and leave no manifest behind).
#   b) auth.token + auth.tokenserver (the built-in token server, an ES256 key
#      made with openssl, a kid): policy alice push/pull team-a/*, bob pull
#      team-a/*, admin everything, anonymous pull public/*. skopeo follows the
#      Bearer challenge to /auth/token: alice pushes team-a/app but not
#      team-b/app nor public/*; bob pulls team-a/app but cannot push; admin
#      pushes public/base; anonymous inspects and pulls public/base but pushes
#      nothing and reads nothing else. The challenges and the token server's
#      answers are checked with curl too.
#   c) oras-py against the same token server: login as alice, push an
#      artifact to team-a/, pull it back; bob's push is refused, his pull works.
#   d) containerd's ctr against the same token server, through a containerd
#      daemon started here on a private socket: bob pulls team-a/app (the token
#      from containerd's first choice, the OAuth2 POST password grant, counted
#      by wharf_token_requests_total), anonymous pulls public/base and nothing
#      else, a wrong password is refused; alice pushes an imported image to
#      team-a/ctr (skopeo reads it back), bob's push and alice's push to
#      team-b/ are refused and leave nothing.
#
# Exit status: 0 all checks passed, 1 a check failed, 2 a setup error, 77
# skipped (E2E_REFERENCE is set: the run is checking the scripts against
# another registry, and this one tests wharf's own auth).
set -euo pipefail

if [[ -n "${E2E_REFERENCE:-}" ]]; then
  echo "auth.sh: skipped: tests wharf's own auth configuration, not $E2E_REFERENCE"
  exit 77
fi

TIMEOUT="${E2E_CMD_TIMEOUT:-120}"
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_CONFIG=application/vnd.oci.image.config.v1+json
OCI_LAYER_GZ=application/vnd.oci.image.layer.v1.tar+gzip

# A scratch directory of our own (never the caller's), removed by cleanup,
# which also stops every wharf started here.
WHARF_TMP=""
# shellcheck source=scripts/lib/services.sh
source "$(dirname "$0")/../../scripts/lib/services.sh"
WHARF_LOG_NAME=auth.sh

for tool in skopeo htpasswd openssl jq curl sha256sum tar gzip cmp python3 awk; do
  have "$tool" || { echo "auth.sh: missing $tool (run scripts/install-tools)" >&2; exit 2; }
done
BIN="$(find_wharf_bin)" || { echo "auth.sh: no wharf binary (set WHARF_BIN or cargo build --release)" >&2; exit 2; }

services_init
work="$WHARF_TMP"
# Keep skopeo away from any credentials of the machine's user.
export REGISTRY_AUTH_FILE="$work/containers-auth.json" DOCKER_CONFIG="$work/docker"
echo '{"auths":{}}' >"$REGISTRY_AUTH_FILE"
mkdir -p "$DOCKER_CONFIG"

passed=0
failed=0
ok()     { passed=$((passed + 1)); echo "ok   - $*"; }
not_ok() { failed=$((failed + 1)); echo "FAIL - $*"; }

check_eq() {
  if [[ "$2" == "$3" ]]; then ok "$1"; else not_ok "$1: expected '$2', got '$3'"; fi
}

# run WHAT CMD...: CMD must succeed; output in $work/last.log.
run() {
  local what="$1"
  shift
  if timeout "$TIMEOUT" "$@" >"$work/last.log" 2>&1; then
    ok "$what"
    return 0
  fi
  not_ok "$what: command failed: $*"
  sed 's/^/    | /' "$work/last.log" | tail -n 20
  return 1
}

# refused WHAT CMD...: CMD must fail, and for an authentication or
# authorization reason (not, say, a connection error).
refused() {
  local what="$1" rc=0
  shift
  timeout "$TIMEOUT" "$@" >"$work/last.log" 2>&1 || rc=$?
  if ((rc == 0)); then
    not_ok "$what: succeeded, expected a refusal"
  elif grep -qiE 'unauthorized|authentication required|denied|insufficient|invalid username|401|403' "$work/last.log"; then
    ok "$what (refused)"
  else
    not_ok "$what: failed, but not with an auth error"
    sed 's/^/    | /' "$work/last.log" | tail -n 20
  fi
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# ---- a small OCI image layout (as skopeo.sh builds them) -------------------

layout="$work/layout"
mkdir -p "$layout/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

# add_blob FILE: move FILE into the layout; sets DIGEST and SIZE.
add_blob() {
  local hex
  hex="$(sha256_of "$1")"
  SIZE="$(stat -c %s "$1")"
  DIGEST="sha256:$hex"
  mv -f "$1" "$layout/blobs/sha256/$hex"
}

mkdir -p "$work/rootfs/data"
head -c 6000 /dev/urandom >"$work/rootfs/data/file"
tar --sort=name --mtime='2024-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
  -C "$work/rootfs" -cf "$work/layer.tar" data
diff_id="sha256:$(sha256_of "$work/layer.tar")"
gzip -n "$work/layer.tar"
add_blob "$work/layer.tar.gz"
layer="$(jq -nc --arg d "$DIGEST" --argjson s "$SIZE" --arg m "$OCI_LAYER_GZ" '{mediaType:$m,digest:$d,size:$s}')"
jq -ncj --arg d "$diff_id" '{architecture: "amd64", os: "linux",
  config: {Cmd: ["/bin/sh"]}, rootfs: {type: "layers", diff_ids: [$d]}}' >"$work/config.json"
add_blob "$work/config.json"
cfg="$(jq -nc --arg d "$DIGEST" --argjson s "$SIZE" --arg m "$OCI_CONFIG" '{mediaType:$m,digest:$d,size:$s}')"
jq -ncj --arg m "$OCI_MANIFEST" --argjson c "$cfg" --argjson l "$layer" \
  '{schemaVersion: 2, mediaType: $m, config: $c, layers: [$l]}' >"$work/manifest.json"
add_blob "$work/manifest.json"
IMG="$DIGEST"
jq -nc --arg m "$OCI_MANIFEST" --arg d "$DIGEST" --argjson s "$SIZE" \
  '{schemaVersion: 2, manifests: [{mediaType: $m, digest: $d, size: $s,
     annotations: {"org.opencontainers.image.ref.name": "v1"}}]}' >"$layout/index.json"
SRC="oci:$layout:v1"

# pulled_ok WHAT OUT_LAYOUT: the copy's manifest is the original and every
# blob is identical.
pulled_ok() {
  local what="$1" out="$2" f bad=0
  check_eq "$what: manifest digest" "$IMG" "$(jq -r '.manifests[0].digest' "$out/index.json")"
  for f in "$layout"/blobs/sha256/*; do
    cmp -s "$f" "$out/blobs/sha256/$(basename "$f")" || bad=1
  done
  if ((bad)); then not_ok "$what: blobs differ from the original"; else ok "$what: blobs identical"; fi
}

# header FILE NAME: value of header NAME in a curl -D dump.
header() { tr -d '\r' <"$1" | sed -n "s/^$2:[[:space:]]*//Ip" | tail -n 1; }

# ---- starting wharf with an auth section ----------------------------------

# start_auth_wharf NAME CONFIG_FN: wharf on a free port with scratch data
# under $work/NAME; CONFIG_FN PORT prints the `auth:` section (the token realm
# needs the port). Sets ADDR.
start_auth_wharf() {
  local name="$1" fn="$2" dir="$work/$1" attempt port
  mkdir -p "$dir/blobs"
  for attempt in 1 2 3; do
    port="$(free_port)"
    ADDR="127.0.0.1:$port"
    {
      cat <<YAML
version: 0.1
http:
  addr: $ADDR
storage:
  filesystem:
    rootdirectory: $dir/blobs
database:
  url: sqlite://$dir/wharf.db
YAML
      "$fn" "$port"
    } >"$dir/config.yml"
    # -u REGISTRY_AUTH_FILE: wharf reads every REGISTRY_* variable as a config
    # override (REGISTRY_AUTH_FILE would be the unknown key auth.file).
    start_service "$name" "$dir/wharf.log" env -u REGISTRY_AUTH_FILE RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 "$BIN" serve --config "$dir/config.yml"
    if wait_for_http "http://$ADDR/v2/" 60 "$REPLY"; then
      if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/v2/")" != 401 ]]; then
        echo "auth.sh: wharf ($name) answers /v2/ without credentials: $BIN ignores auth (an old build?)" >&2
        exit 2
      fi
      return 0
    fi
    show_service_log "$name" 30
    stop_service "$REPLY"
    grep -qiE 'address (already )?in use' "$dir/wharf.log" || break
  done
  echo "auth.sh: wharf ($name) did not start" >&2
  exit 2
}

echo "# auth e2e: $BIN, $(skopeo --version), oras-py $(python3 -c 'from importlib import metadata; print(metadata.version("oras"))' 2>/dev/null || echo missing)"

# Users, bcrypt (cost 5: quick to check, still a real `$2y$` entry).
users="$work/users.htpasswd"
htpasswd -B -C 5 -b -c "$users" tester t-secret 2>/dev/null
for u in alice bob admin; do
  htpasswd -B -C 5 -b "$users" "$u" "$u-pass" 2>/dev/null
done
grep -q '^alice:[$]2y[$]05[$]' "$users" || { echo "auth.sh: htpasswd -B did not write bcrypt entries" >&2; exit 2; }

# ---- a) htpasswd -------------------------------------------------------------

echo "## htpasswd"
htpasswd_auth() {
  cat <<YAML
auth:
  htpasswd:
    realm: wharf-e2e
    path: $users
YAML
}
start_auth_wharf htpasswd htpasswd_auth
H="$ADDR"

curl -s -o /dev/null -D "$work/h.hdr" "http://$H/v2/" || true
check_eq "GET /v2/ without credentials: Basic challenge" 'Basic realm="wharf-e2e"' "$(header "$work/h.hdr" www-authenticate)"
check_eq "GET /v2/ as tester" 200 "$(curl -s -o /dev/null -w '%{http_code}' -u tester:t-secret "http://$H/v2/")"

if run "skopeo copy --dest-creds: push" skopeo copy --quiet --dest-tls-verify=false --dest-creds tester:t-secret "$SRC" "docker://$H/e2e/auth:v1"; then
  if run "skopeo inspect --creds" skopeo inspect --tls-verify=false --creds tester:t-secret "docker://$H/e2e/auth:v1"; then
    check_eq "inspect: digest" "$IMG" "$(jq -r .Digest "$work/last.log")"
  fi
  if run "skopeo copy --src-creds: pull back" skopeo copy --quiet --src-tls-verify=false --src-creds tester:t-secret "docker://$H/e2e/auth:v1" "oci:$work/h-out:v1"; then
    pulled_ok "htpasswd pull" "$work/h-out"
  fi
  refused "skopeo inspect without credentials" skopeo inspect --tls-verify=false --no-creds "docker://$H/e2e/auth:v1"
fi
refused "skopeo push without credentials" skopeo copy --quiet --dest-tls-verify=false "$SRC" "docker://$H/e2e/auth-anon:v1"
refused "skopeo push with a wrong password" skopeo copy --quiet --dest-tls-verify=false --dest-creds tester:wrong "$SRC" "docker://$H/e2e/auth-wrong:v1"
refused "skopeo push as an unknown user" skopeo copy --quiet --dest-tls-verify=false --dest-creds mallory:t-secret "$SRC" "docker://$H/e2e/auth-wrong:v1"
check_eq "refused pushes left no manifest" 404 \
  "$(curl -s -o /dev/null -w '%{http_code}' -u tester:t-secret "http://$H/v2/e2e/auth-anon/manifests/v1")"

# ---- b) token server ---------------------------------------------------------

echo "## token server"
key="$work/signing.pem"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
SERVICE=wharf-e2e
token_auth() {
  cat <<YAML
auth:
  htpasswd:
    realm: wharf-e2e-users
    path: $users
  token:
    realm: http://127.0.0.1:$1/auth/token
    service: $SERVICE
    issuer: wharf-e2e-issuer
  tokenserver:
    key: $key
    kid: e2e-key-1
    access:
      - users: [alice]
        repositories: ["team-a/*"]
        actions: [pull, push]
      - users: [bob]
        repositories: ["team-a/*"]
        actions: [pull]
      - users: [admin]
        repositories: ["*"]
        actions: ["*"]
        catalog: true
      - anonymous: true
        users: ["*"]
        repositories: ["public/*"]
        actions: [pull]
YAML
}
start_auth_wharf tokenserver token_auth
T="$ADDR"
REALM="http://$T/auth/token"

# The challenge and the token server, by hand.
curl -s -o /dev/null -D "$work/t.hdr" "http://$T/v2/team-a/app/manifests/v1" || true
check_eq "pull without a token: Bearer challenge with scope" \
  "Bearer realm=\"$REALM\",service=\"$SERVICE\",scope=\"repository:team-a/app:pull\"" \
  "$(header "$work/t.hdr" www-authenticate)"
# token_actions USER:PASS|- SCOPE: the actions the issued token grants.
token_actions() {
  local -a cred=()
  [[ "$1" == - ]] || cred=(-u "$1")
  curl -s "${cred[@]}" -G "$REALM" --data-urlencode "service=$SERVICE" --data-urlencode "scope=$2" \
    | jq -r '.token | split(".")[1] | gsub("-"; "+") | gsub("_"; "/") | . + "==" | @base64d | fromjson
             | [.access[]? | .actions[]] | sort | join(",")' 2>/dev/null || echo error
}
check_eq "token for alice, asked pull, grants every allowed action" "pull,push" "$(token_actions alice:alice-pass repository:team-a/app:pull)"
check_eq "token for bob, asked pull,push, grants pull" "pull" "$(token_actions bob:bob-pass repository:team-a/app:pull,push)"
check_eq "anonymous token on public/x" "pull" "$(token_actions - repository:public/x:pull,push)"
check_eq "anonymous token on team-a/app grants nothing" "" "$(token_actions - repository:team-a/app:pull)"
check_eq "token server: wrong password" 401 \
  "$(curl -s -o /dev/null -w '%{http_code}' -u alice:nope "$REALM?service=$SERVICE&scope=repository:team-a/app:pull")"

run "alice pushes team-a/app" skopeo copy --quiet --dest-tls-verify=false --dest-creds alice:alice-pass "$SRC" "docker://$T/team-a/app:v1" || true
if run "alice inspects team-a/app" skopeo inspect --tls-verify=false --creds alice:alice-pass "docker://$T/team-a/app:v1"; then
  check_eq "team-a/app digest" "$IMG" "$(jq -r .Digest "$work/last.log")"
fi
refused "alice pushes team-b/app" skopeo copy --quiet --dest-tls-verify=false --dest-creds alice:alice-pass "$SRC" "docker://$T/team-b/app:v1"
refused "alice pushes public/app" skopeo copy --quiet --dest-tls-verify=false --dest-creds alice:alice-pass "$SRC" "docker://$T/public/app:v1"
refused "bob pushes team-a/bob" skopeo copy --quiet --dest-tls-verify=false --dest-creds bob:bob-pass "$SRC" "docker://$T/team-a/bob:v1"
if run "bob pulls team-a/app" skopeo copy --quiet --src-tls-verify=false --src-creds bob:bob-pass "docker://$T/team-a/app:v1" "oci:$work/bob-out:v1"; then
  pulled_ok "bob's pull" "$work/bob-out"
fi
refused "bob with a wrong password" skopeo inspect --tls-verify=false --creds bob:alice-pass "docker://$T/team-a/app:v1"
run "admin pushes public/base" skopeo copy --quiet --dest-tls-verify=false --dest-creds admin:admin-pass "$SRC" "docker://$T/public/base:v1" || true
if run "anonymous inspects public/base" skopeo inspect --tls-verify=false --no-creds "docker://$T/public/base:v1"; then
  check_eq "public/base digest" "$IMG" "$(jq -r .Digest "$work/last.log")"
fi
if run "anonymous pulls public/base" skopeo copy --quiet --src-tls-verify=false --src-no-creds "docker://$T/public/base:v1" "oci:$work/anon-out:v1"; then
  pulled_ok "anonymous pull" "$work/anon-out"
fi
refused "anonymous pushes public/anon" skopeo copy --quiet --dest-tls-verify=false --dest-no-creds "$SRC" "docker://$T/public/anon:v1"
refused "anonymous inspects team-a/app" skopeo inspect --tls-verify=false --no-creds "docker://$T/team-a/app:v1"
# Nothing the refused pushes tried is there (admin may read everything).
for repo in team-b/app public/app team-a/bob public/anon; do
  if timeout "$TIMEOUT" skopeo inspect --tls-verify=false --raw --creds admin:admin-pass "docker://$T/$repo:v1" >/dev/null 2>&1; then
    not_ok "refused push left $repo:v1 behind"
  else
    ok "no $repo:v1 after the refused push"
  fi
done
if run "admin lists team-a/app tags" skopeo list-tags --tls-verify=false --creds admin:admin-pass "docker://$T/team-a/app"; then
  check_eq "team-a/app tags" v1 "$(jq -r '.Tags | join(",")' "$work/last.log")"
fi

# ---- c) oras-py --------------------------------------------------------------

echo "## oras-py"
if ! python3 -c 'import oras.provider' 2>/dev/null; then
  not_ok "oras-py is not installed (scripts/install-tools)"
else
  python3 - "$T" "$work/oras" >"$work/oras.log" 2>&1 <<'PY' || true
import os, sys, logging
import oras.provider
host, work = sys.argv[1:3]
os.makedirs(work, exist_ok=True)
os.chdir(work)
logging.disable(logging.CRITICAL)
payload = os.urandom(2048).hex().encode()
with open("artifact.txt", "wb") as f:
    f.write(payload)

def ok(what): print(f"ok   - oras-py: {what}", flush=True)
def not_ok(what): print(f"FAIL - oras-py: {what}", flush=True)

def client(user):
    reg = oras.provider.Registry(hostname=host, insecure=True)
    reg.login(user, f"{user}-pass", hostname=host, config_path=os.path.join(work, f"{user}.json"))
    return reg

def push(reg, repo):
    try:
        r = reg.push(target=f"{host}/{repo}:v1", files=["artifact.txt"], quiet=True)
        return r.status_code, ""
    except Exception as e:  # oras-py raises on a refused upload
        return None, f"{type(e).__name__}: {e}"

# A fresh client per repository: oras-py 0.2.x keeps ONE bearer token per
# Registry object and, on a 401 (insufficient_scope) for another repository,
# sends that same token again instead of asking for a new one (it asks again
# only after a 403), so one client cannot go from repository to repository.
code, err = push(client("alice"), "team-a/oras")
if code == 201:
    ok("alice pushes team-a/oras")
else:
    not_ok(f"alice push to team-a/oras: {code} {err}")

for user in ("alice", "bob"):
    try:
        files = client(user).pull(target=f"{host}/team-a/oras:v1", outdir=os.path.join(work, f"{user}-out"))
        got = open(files[0], "rb").read() if files else b""
        (ok if got == payload else not_ok)(f"{user} pulls team-a/oras, same bytes")
    except Exception as e:
        not_ok(f"{user} pull: {type(e).__name__}: {e}")

for user, repo in (("bob", "team-a/oras-bob"), ("alice", "team-b/oras")):
    code, err = push(client(user), repo)
    if code is None or code >= 400:
        ok(f"{user}'s push to {repo} refused ({err or code})")
    else:
        not_ok(f"{user}'s push to {repo} succeeded: {code}")
PY
  grep -E '^(ok   |FAIL )- ' "$work/oras.log" || true
  n_ok="$(grep -c '^ok   - ' "$work/oras.log" || true)"
  n_fail="$(grep -c '^FAIL - ' "$work/oras.log" || true)"
  passed=$((passed + n_ok))
  failed=$((failed + n_fail))
  if ((n_ok + n_fail < 5)); then
    not_ok "oras-py checks did not all run"
    sed 's/^/    | /' "$work/oras.log" | tail -n 20
  fi
fi

# ---- d) containerd's ctr ------------------------------------------------------

echo "## containerd (ctr)"
# ctr is a client of containerd's API: a daemon of our own, on a private
# socket with private root and state, stopped by cleanup.
# password_posts_issued: wharf_token_requests_total for POSTs with the
# password grant that were answered with a token.
password_posts_issued() {
  curl -s "http://$T/metrics" | awk '
    /^wharf_token_requests_total\{/ && /method="POST"/ && /grant="password"/ && /outcome="issued"/ { n += $2 }
    END { print n + 0 }'
}
cdir="$work/containerd"
if ! start_containerd "$cdir"; then
  not_ok "containerd did not start (see above)"
else
  CTR=(ctr -a "$CONTAINERD_SOCK" -n wharf-e2e)
  echo "# $(containerd --version)"
  layer_hex="$(jq -r '.layers[0].digest | ltrimstr("sha256:")' "$layout/blobs/sha256/${IMG#sha256:}")"
  posts_before="$(password_posts_issued)"
  # Pulls first, while containerd's content store is empty, so every blob
  # comes from wharf.
  if run "ctr: bob pulls team-a/app" "${CTR[@]}" images pull --plain-http --snapshotter native --user bob:bob-pass "$T/team-a/app:v1"; then
    check_eq "ctr: team-a/app digest" "$IMG" \
      "$("${CTR[@]}" images ls | awk -v r="$T/team-a/app:v1" '$1 == r { print $3 }')"
    if "${CTR[@]}" content get "sha256:$layer_hex" | cmp -s - "$layout/blobs/sha256/$layer_hex"; then
      ok "ctr: the pulled layer is the pushed one"
    else
      not_ok "ctr: the pulled layer differs"
    fi
  fi
  posts_after="$(password_posts_issued)"
  if ((posts_after > posts_before)); then
    ok "ctr: token from POST /auth/token (OAuth2 password grant), as containerd asks first"
  else
    not_ok "ctr: no POST password grant was issued ($posts_before -> $posts_after)"
  fi
  run "ctr: anonymous pull of public/base" "${CTR[@]}" images pull --plain-http --snapshotter native "$T/public/base:v1" || true
  refused "ctr: anonymous pull of team-a/app" "${CTR[@]}" images pull --plain-http --snapshotter native "$T/team-a/app:v1"
  refused "ctr: bob pulls with a wrong password" "${CTR[@]}" images pull --plain-http --snapshotter native --user bob:nope "$T/team-a/app:v1"
  # Pushes: the layout imported as an image named for team-a/ctr.
  tar -C "$layout" -cf "$work/image.tar" .
  if run "ctr: import the image" "${CTR[@]}" images import --no-unpack --all-platforms --base-name "$T/team-a/ctr" "$work/image.tar"; then
    if run "ctr: alice pushes team-a/ctr" "${CTR[@]}" images push --plain-http --user alice:alice-pass "$T/team-a/ctr:v1"; then
      if run "ctr push: admin inspects team-a/ctr" skopeo inspect --tls-verify=false --creds admin:admin-pass "docker://$T/team-a/ctr:v1"; then
        check_eq "ctr push: team-a/ctr digest" "$IMG" "$(jq -r .Digest "$work/last.log")"
      fi
    fi
    "${CTR[@]}" images tag "$T/team-a/ctr:v1" "$T/team-a/ctr-bob:v1" "$T/team-b/ctr:v1" >/dev/null
    refused "ctr: bob pushes team-a/ctr-bob" "${CTR[@]}" images push --plain-http --user bob:bob-pass "$T/team-a/ctr-bob:v1"
    refused "ctr: alice pushes team-b/ctr" "${CTR[@]}" images push --plain-http --user alice:alice-pass "$T/team-b/ctr:v1"
    for repo in team-a/ctr-bob team-b/ctr; do
      check_eq "no $repo:v1 after the refused ctr push" 404 \
        "$(curl -s -o /dev/null -w '%{http_code}' "http://$T/v2/$repo/manifests/v1" \
            -H "Authorization: Bearer $(curl -s -u admin:admin-pass "$REALM?service=$SERVICE&scope=repository:$repo:pull" | jq -r .token)")"
    done
  fi
fi

for name in htpasswd tokenserver; do
  # (Not ERROR lines: skopeo tries TLS first, and each ClientHello on the
  # plain HTTP port is logged as "request parse error: invalid Header provided".)
  if grep -q 'panicked' "$work/$name/wharf.log"; then
    not_ok "wharf ($name) panicked"
    grep -A3 'panicked' "$work/$name/wharf.log" | head -n 5 | sed 's/^/    | /'
  fi
done
((failed == 0)) || { show_service_log htpasswd 15; show_service_log tokenserver 25; }

echo "SUMMARY auth.sh: ${passed} checks ok, ${failed} failed"
((failed == 0))

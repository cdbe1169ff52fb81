#!/usr/bin/env bash
# End-to-end: Wharf as a pull-through mirror for containerd, two upstreams.
#
#   tests/e2e/proxy.sh          (REGISTRY is not used: see below)
#
# Starts its OWN processes on free ports (stopped on exit): two upstream
# registries — Debian's docker-registry (2.8.2) and a wharf — each holding an
# image pushed with skopeo; a wharf mirror whose proxy.upstreams name each
# upstream's host as its `ns`; and a containerd daemon on a private socket whose
# hosts.toml (one per upstream host, in a hosts dir of our own) sends pulls to
# the mirror. Then:
#   - ctr pulls each image by its upstream's name; the digests are the pushed ones;
#   - the upstreams' request logs show the mirror (its user agent) fetched each
#     image from the right upstream, and containerd itself never reached them;
#   - a second pull of a fresh namespace goes nowhere upstream (warm);
#   - a request to the mirror with an unconfigured ns is refused with 404
#     NAME_UNKNOWN, and a push to a mirrored repository with 403 DENIED.
#
# Exit status: 0 all checks passed, 1 a check failed, 2 a setup error, 77
# skipped (E2E_REFERENCE is set: this tests wharf's own mirror).
set -euo pipefail

if [[ -n "${E2E_REFERENCE:-}" ]]; then
  echo "proxy.sh: skipped: tests wharf's pull-through cache, not $E2E_REFERENCE"
  exit 77
fi

TIMEOUT="${E2E_CMD_TIMEOUT:-120}"
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_CONFIG=application/vnd.oci.image.config.v1+json
OCI_LAYER_GZ=application/vnd.oci.image.layer.v1.tar+gzip

WHARF_TMP=""
# shellcheck source=scripts/lib/services.sh
source "$(dirname "$0")/../../scripts/lib/services.sh"

for tool in skopeo jq curl sha256sum tar gzip python3 ctr containerd docker-registry; do
  have "$tool" || { echo "proxy.sh: missing $tool (run scripts/install-tools)" >&2; exit 2; }
done
BIN="$(find_wharf_bin)" || { echo "proxy.sh: no wharf binary (set WHARF_BIN or cargo build --release)" >&2; exit 2; }

services_init
work="$WHARF_TMP"
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
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# make_layout DIR SEED: a one-layer OCI image layout; sets IMG (its digest).
make_layout() {
  local layout="$1" seed="$2" hex size digest layer cfg
  mkdir -p "$layout/blobs/sha256" "$work/rootfs-$seed"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  head -c 200000 /dev/urandom >"$work/rootfs-$seed/file-$seed"
  tar --sort=name --mtime='2024-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
    -C "$work/rootfs-$seed" -cf "$work/layer-$seed.tar" .
  local diff_id="sha256:$(sha256_of "$work/layer-$seed.tar")"
  gzip -n "$work/layer-$seed.tar"
  add() {
    hex="$(sha256_of "$1")"
    size="$(stat -c %s "$1")"
    digest="sha256:$hex"
    mv -f "$1" "$layout/blobs/sha256/$hex"
  }
  add "$work/layer-$seed.tar.gz"
  layer="$(jq -nc --arg d "$digest" --argjson s "$size" --arg m "$OCI_LAYER_GZ" '{mediaType:$m,digest:$d,size:$s}')"
  jq -ncj --arg d "$diff_id" --arg seed "$seed" '{architecture: "amd64", os: "linux",
    config: {Cmd: ["/bin/sh"], Labels: {seed: $seed}}, rootfs: {type: "layers", diff_ids: [$d]}}' >"$work/config-$seed.json"
  add "$work/config-$seed.json"
  cfg="$(jq -nc --arg d "$digest" --argjson s "$size" --arg m "$OCI_CONFIG" '{mediaType:$m,digest:$d,size:$s}')"
  jq -ncj --arg m "$OCI_MANIFEST" --argjson c "$cfg" --argjson l "$layer" \
    '{schemaVersion: 2, mediaType: $m, config: $c, layers: [$l]}' >"$work/manifest-$seed.json"
  add "$work/manifest-$seed.json"
  IMG="$digest"
  jq -nc --arg m "$OCI_MANIFEST" --arg d "$digest" --argjson s "$size" \
    '{schemaVersion: 2, manifests: [{mediaType: $m, digest: $d, size: $s,
       annotations: {"org.opencontainers.image.ref.name": "v1"}}]}' >"$layout/index.json"
}

# start_wharf_named NAME CONFIG_BODY: wharf on a free port; sets ADDR.
start_wharf_named() {
  local name="$1" body="$2" dir="$work/$1" port
  mkdir -p "$dir/blobs"
  port="$(free_port)"
  ADDR="127.0.0.1:$port"
  {
    printf 'version: 0.1\nhttp:\n  addr: %s\nstorage:\n  filesystem:\n    rootdirectory: %s/blobs\ndatabase:\n  url: sqlite://%s/wharf.db\n' "$ADDR" "$dir" "$dir"
    printf '%s\n' "$body"
  } >"$dir/config.yml"
  start_service "$name" "$dir/wharf.log" env -u REGISTRY_AUTH_FILE RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 "$BIN" serve --config "$dir/config.yml"
  if ! wait_for_http "http://$ADDR/v2/" 60 "$REPLY"; then
    show_service_log "$name" 30
    echo "proxy.sh: wharf ($name) did not start" >&2
    exit 2
  fi
}

echo "# proxy e2e: $BIN, $(docker-registry --version 2>/dev/null | head -1), $(containerd --version)"

# ---- the upstreams ------------------------------------------------------------

udir="$work/upstream-one"
mkdir -p "$udir/data"
U1="127.0.0.1:$(free_port)"
cat >"$udir/config.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $udir/data
http:
  addr: $U1
YAML
start_service upstream-one "$udir/registry.log" env -u REGISTRY_AUTH_FILE docker-registry serve "$udir/config.yml"
wait_for_http "http://$U1/v2/" 30 "$REPLY" || { show_service_log upstream-one 20; exit 2; }
start_wharf_named upstream-two ""
U2="$ADDR"

make_layout "$work/layout-one" 1
IMG1="$IMG"
make_layout "$work/layout-two" 2
IMG2="$IMG"
run "skopeo pushes e2e/one to docker-registry ($U1)" skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout-one:v1" "docker://$U1/e2e/one:v1" || exit 2
run "skopeo pushes e2e/two to wharf ($U2)" skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout-two:v1" "docker://$U2/e2e/two:v1" || exit 2

# ---- the mirror ---------------------------------------------------------------

start_wharf_named mirror "proxy:
  upstreams:
    - name: one
      ns: \"$U1\"
      prefix: one
      remoteurl: http://$U1
    - name: two
      ns: \"$U2\"
      prefix: two
      remoteurl: http://$U2"
M="$ADDR"

# Request counts of the wharf upstream, from its metrics.
wharf_gets() {
  curl -s "http://$U2/metrics" | awk -v route="$1" '
    /^wharf_http_requests_total\{/ && index($0, "route=\"" route "\"") && /method="GET"/ { n += $2 }
    END { print n + 0 }'
}
two_blob_gets_before="$(wharf_gets '/v2/{name}/blobs/{digest}')"

# ---- containerd ---------------------------------------------------------------

cdir="$work/containerd"
mkdir -p "$cdir/hosts/$U1" "$cdir/hosts/$U2"
for u in "$U1" "$U2"; do
  cat >"$cdir/hosts/$u/hosts.toml" <<TOML
server = "http://$u"

[host."http://$M"]
  capabilities = ["pull", "resolve"]
TOML
done
if ! start_containerd "$cdir"; then
  echo "proxy.sh: containerd did not start" >&2
  exit 2
fi
CTR=(ctr -a "$CONTAINERD_SOCK" -n proxy-e2e)

for pair in "one:$U1:$IMG1" "two:$U2:$IMG2"; do
  IFS=: read -r repo host port img <<<"$pair"
  if run "ctr pulls $host:$port/e2e/$repo:v1 through the mirror" "${CTR[@]}" images pull --hosts-dir "$cdir/hosts" --snapshotter native "$host:$port/e2e/$repo:v1"; then
    check_eq "ctr: e2e/$repo digest" "$img" "$("${CTR[@]}" images ls | awk -v r="$host:$port/e2e/$repo:v1" '$1 == r { print $3 }')"
  fi
done

# docker-registry's access log: the mirror (its user agent) fetched e2e/one, and
# containerd never reached it.
u1_log="$udir/registry.log"
if grep -q '"GET /v2/e2e/one/blobs/sha256:' "$u1_log" && grep '/v2/e2e/one/' "$u1_log" | grep -q 'wharf/'; then
  ok "docker-registry's log: the mirror fetched e2e/one"
else
  not_ok "docker-registry's log shows no fetch of e2e/one by the mirror"
  tail -n 20 "$u1_log" | sed 's/^/    | /'
fi
if grep '/v2/e2e/' "$u1_log" | grep -q 'containerd/'; then
  not_ok "containerd reached docker-registry directly (the mirror was bypassed)"
else
  ok "containerd never reached docker-registry directly"
fi
if grep -q '/v2/e2e/two/' "$u1_log"; then
  not_ok "e2e/two was asked of docker-registry: ns routing is wrong"
else
  ok "docker-registry was never asked for the other upstream's image"
fi
two_blob_gets_after="$(wharf_gets '/v2/{name}/blobs/{digest}')"
check_eq "the wharf upstream served e2e/two's two blobs" 2 "$((two_blob_gets_after - two_blob_gets_before))"

# Warm: a fresh namespace pulls both again; no upstream request.
u1_lines="$(wc -l <"$u1_log")"
two_before="$(wharf_gets '/v2/{name}/blobs/{digest}')"
CTR2=(ctr -a "$CONTAINERD_SOCK" -n proxy-e2e-warm)
run "ctr pulls e2e/one again (warm)" "${CTR2[@]}" images pull --hosts-dir "$cdir/hosts" --snapshotter native "$U1/e2e/one:v1" || true
run "ctr pulls e2e/two again (warm)" "${CTR2[@]}" images pull --hosts-dir "$cdir/hosts" --snapshotter native "$U2/e2e/two:v1" || true
if tail -n +"$((u1_lines + 1))" "$u1_log" | grep -q '/v2/e2e/one/blobs/'; then
  not_ok "the warm pull fetched a blob from docker-registry"
else
  ok "the warm pull fetched no blob from docker-registry"
fi
check_eq "the warm pull fetched no blob from the wharf upstream" 0 "$(($(wharf_gets '/v2/{name}/blobs/{digest}') - two_before))"

# An ns that is not configured: refused, nothing dialled.
code="$(curl -s -o "$work/ns.json" -w '%{http_code}' "http://$M/v2/e2e/one/manifests/v1?ns=quay.io")"
check_eq "unconfigured ns: 404" 404 "$code"
check_eq "unconfigured ns: NAME_UNKNOWN" NAME_UNKNOWN "$(jq -r '.errors[0].code' "$work/ns.json")"
code="$(curl -s -o "$work/push.json" -w '%{http_code}' -X POST "http://$M/v2/one/e2e/one/blobs/uploads/")"
check_eq "push to a mirrored repository: 403" 403 "$code"
check_eq "push to a mirrored repository: DENIED" DENIED "$(jq -r '.errors[0].code' "$work/push.json")"
misses="$(curl -s "http://$M/metrics" | awk '/^wharf_proxy_misses_total\{/ { n += $2 } END { print n + 0 }')"
if ((misses >= 6)); then ok "mirror metrics: $misses misses (2 manifests + 4 blobs at least)"; else not_ok "mirror metrics: $misses misses"; fi

echo "proxy.sh: ${passed} passed, ${failed} failed"
((failed == 0)) || { show_service_log mirror 30; show_service_log containerd 15; exit 1; }

#!/usr/bin/env bash
# End-to-end: `wharf import` adopts a CNCF distribution registry's storage in place.
#
#   tests/e2e/import.sh            (REGISTRY is not used: see below)
#   IMPORT_VARIANTS=fs tests/e2e/import.sh     (one variant only; default "fs s3")
#
# Starts its OWN processes on free ports (stopped on exit). Twice — on a filesystem
# directory with SQLite metadata, and on an S3 bucket (moto, under a rootdirectory)
# with PostgreSQL metadata ($WHARF_TEST_POSTGRES_URL, else a cluster of its own):
#   1. Debian's docker-registry 2.8.2 (delete enabled) is filled with skopeo from OCI
#      layouts built here: a single image under three tags, a two-platform image index,
#      a nested repository name, a repository where one tag's manifest is then DELETEd
#      by digest (2.8 deletes the tag with it) and where a tag moved from one image to
#      another before the first was DELETEd (its revision link is gone, the tag's
#      index/ still names it: reported as a deleted manifest, skipped), a repository
#      whose only manifest's revision link is removed by hand while its tag stays (as
#      distribution before 2.7 deleted: the tag is reported deleted, skipped), and an
#      unfinished upload (POST + PATCH, never PUT). It is stopped.
#   2. `wharf import --dry-run` reports the counts and writes nothing (a wharf on the
#      result serves an empty catalog).
#   3. `wharf import --stop-after 2` stops as if interrupted (exit 3); the next run
#      resumes (2 repositories already imported) and the two together import exactly
#      what the dry run announced; a third run imports nothing (all checkpointed);
#      `--restart` imports everything again and changes nothing (no new blob record).
#   4. The store's objects are the same before and after (names and count): nothing
#      was copied.
#   5. `wharf serve` on the same store: every image pulls (skopeo copy, --all for the
#      index) with the same manifest digests as from docker-registry, blobs by digest
#      byte for byte, the deleted manifest and its tag are unknown, the catalog is
#      exactly the imported repositories; a new push lands under Wharf's own keys
#      beside distribution's; `wharf gc` (orphan sweep on) deletes no
#      imported object still referenced, and every image still pulls.
#
# Exit status: 0 all checks passed, 1 a check failed, 2 a setup error, 77 skipped
# (E2E_REFERENCE is set: this tests wharf's own import).
set -euo pipefail
export LC_ALL=C # sort and comm agree on the order

if [[ -n "${E2E_REFERENCE:-}" ]]; then
  echo "import.sh: skipped: tests wharf import, not $E2E_REFERENCE"
  exit 77
fi

TIMEOUT="${E2E_CMD_TIMEOUT:-120}"
VARIANTS="${IMPORT_VARIANTS:-fs s3}"
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
OCI_CONFIG=application/vnd.oci.image.config.v1+json
OCI_LAYER_GZ=application/vnd.oci.image.layer.v1.tar+gzip

WHARF_TMP=""
# shellcheck source=scripts/lib/services.sh
source "$(dirname "$0")/../../scripts/lib/services.sh"

for tool in skopeo jq curl sha256sum tar gzip python3 docker-registry; do
  have "$tool" || { echo "import.sh: missing $tool (run scripts/install-tools)" >&2; exit 2; }
done
BIN="$(find_wharf_bin)" || { echo "import.sh: no wharf binary (set WHARF_BIN or cargo build)" >&2; exit 2; }

services_init
work="$WHARF_TMP/import-e2e"
mkdir -p "$work"
export REGISTRY_AUTH_FILE="$work/containers-auth.json"
echo '{"auths":{}}' >"$REGISTRY_AUTH_FILE"

passed=0
failed=0
ok()     { passed=$((passed + 1)); echo "ok   - $*"; }
not_ok() { failed=$((failed + 1)); echo "FAIL - $*"; }
check_eq() {
  if [[ "$2" == "$3" ]]; then ok "$1"; else not_ok "$1: expected '$2', got '$3'"; fi
}
# run WHAT CMD...: CMD with a time limit, its output in $work/last.log.
run() {
  local what="$1"
  shift
  if timeout "$TIMEOUT" "$@" >"$work/last.log" 2>&1; then
    return 0
  fi
  not_ok "$what: command failed: $*"
  sed 's/^/    | /' "$work/last.log" | tail -n 30
  return 1
}
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# ---- OCI layouts ---------------------------------------------------------------

# add_blob LAYOUT FILE: sets DIGEST and SIZE.
add_blob() {
  local hex
  hex="$(sha256_of "$2")"
  SIZE="$(stat -c %s "$2")"
  DIGEST="sha256:$hex"
  mv -f "$2" "$1/blobs/sha256/$hex"
}

# make_image LAYOUT SEED ARCH: one random layer + config + manifest; sets
# MANIFEST_DIGEST, MANIFEST_SIZE.
make_image() {
  local layout="$1" seed="$2" arch="$3" root="$work/rootfs-$2-$3" layer cfg diff_id
  mkdir -p "$layout/blobs/sha256" "$root"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  head -c $((20000 + RANDOM)) /dev/urandom >"$root/file-$seed"
  tar --sort=name --mtime='2024-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
    -C "$root" -cf "$work/layer.tar" .
  diff_id="sha256:$(sha256_of "$work/layer.tar")"
  gzip -n -f "$work/layer.tar"
  add_blob "$layout" "$work/layer.tar.gz"
  layer="$(jq -nc --arg d "$DIGEST" --argjson s "$SIZE" --arg m "$OCI_LAYER_GZ" '{mediaType:$m,digest:$d,size:$s}')"
  jq -ncj --arg d "$diff_id" --arg seed "$seed" --arg arch "$arch" '{architecture: $arch, os: "linux",
    config: {Cmd: ["/bin/sh"], Labels: {seed: $seed}}, rootfs: {type: "layers", diff_ids: [$d]}}' >"$work/config.json"
  add_blob "$layout" "$work/config.json"
  cfg="$(jq -nc --arg d "$DIGEST" --argjson s "$SIZE" --arg m "$OCI_CONFIG" '{mediaType:$m,digest:$d,size:$s}')"
  jq -ncj --arg m "$OCI_MANIFEST" --argjson c "$cfg" --argjson l "$layer" \
    '{schemaVersion: 2, mediaType: $m, config: $c, layers: [$l]}' >"$work/manifest.json"
  add_blob "$layout" "$work/manifest.json"
  MANIFEST_DIGEST="$DIGEST"
  MANIFEST_SIZE="$SIZE"
}

# single_layout DIR SEED: a one-image layout tagged `t`.
single_layout() {
  make_image "$1" "$2" amd64
  jq -nc --arg m "$OCI_MANIFEST" --arg d "$MANIFEST_DIGEST" --argjson s "$MANIFEST_SIZE" \
    '{schemaVersion: 2, manifests: [{mediaType: $m, digest: $d, size: $s,
       annotations: {"org.opencontainers.image.ref.name": "t"}}]}' >"$1/index.json"
}

# multi_layout DIR SEED: a two-platform image index tagged `t`.
multi_layout() {
  local layout="$1" amd arm
  make_image "$layout" "$2" amd64
  amd="$(jq -nc --arg m "$OCI_MANIFEST" --arg d "$MANIFEST_DIGEST" --argjson s "$MANIFEST_SIZE" \
    '{mediaType:$m,digest:$d,size:$s,platform:{architecture:"amd64",os:"linux"}}')"
  make_image "$layout" "$2" arm64
  arm="$(jq -nc --arg m "$OCI_MANIFEST" --arg d "$MANIFEST_DIGEST" --argjson s "$MANIFEST_SIZE" \
    '{mediaType:$m,digest:$d,size:$s,platform:{architecture:"arm64",os:"linux"}}')"
  jq -ncj --arg m "$OCI_INDEX" --argjson a "$amd" --argjson b "$arm" \
    '{schemaVersion: 2, mediaType: $m, manifests: [$a, $b]}' >"$work/index-manifest.json"
  add_blob "$layout" "$work/index-manifest.json"
  jq -nc --arg m "$OCI_INDEX" --arg d "$DIGEST" --argjson s "$SIZE" \
    '{schemaVersion: 2, manifests: [{mediaType: $m, digest: $d, size: $s,
       annotations: {"org.opencontainers.image.ref.name": "t"}}]}' >"$layout/index.json"
}

single_layout "$work/oci-app" app
single_layout "$work/oci-api" api
single_layout "$work/oci-keep" keep
single_layout "$work/oci-gone" gone
multi_layout "$work/oci-multi" multi
single_layout "$work/oci-new" new
# The keys of the blobs only the deleted image has (garbage collection may take them).
for hex in $(ls "$work/oci-gone/blobs/sha256"); do
  [[ -e "$work/oci-keep/blobs/sha256/$hex" ]] || echo "docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
done >"$work/gone-keys"

# What goes where: repository:tag → layout (+ --all for the index).
PUSHES=(
  "e2e/app:v1 oci-app"
  "e2e/app:v2 oci-app"
  "e2e/app:latest oci-app"
  "e2e/multi:1.0 oci-multi"
  "team/tools/api:stable oci-api"
  "e2e/churn:keep oci-keep"
  "e2e/churn:gone oci-gone"
  "e2e/churn:moving oci-app"
  "e2e/churn:moving oci-api"
  "e2e/stale:old oci-keep"
)
# The tags that must pull from Wharf after the import.
KEPT_REFS=(e2e/app:v1 e2e/app:v2 e2e/app:latest e2e/multi:1.0 team/tools/api:stable e2e/churn:keep e2e/churn:moving)
REPOS_EXPECTED="e2e/app e2e/churn e2e/multi e2e/stale team/tools/api"

# ---- the variants --------------------------------------------------------------

# storage_yaml VARIANT: the storage driver block, the same keys for both registries.
storage_yaml() {
  case "$1" in
    fs) printf '  filesystem:\n    rootdirectory: %s\n' "$STORE_DIR" ;;
    s3) printf '  s3:\n    bucket: %s\n    region: us-east-1\n    regionendpoint: %s\n    accesskey: test\n    secretkey: test\n    rootdirectory: /%s\n' \
          "$WHARF_TEST_S3_BUCKET" "$WHARF_TEST_S3_ENDPOINT" "$S3_ROOT" ;;
  esac
}

# list_objects VARIANT: every object of the store, "key size", sorted.
list_objects() {
  case "$1" in
    fs) (cd "$STORE_DIR" && find . -type f -printf '%P %s\n' | LC_ALL=C sort) ;;
    s3) env -u AWS_CA_BUNDLE python3 - "$WHARF_TEST_S3_ENDPOINT" "$WHARF_TEST_S3_BUCKET" "$S3_ROOT/" <<'PY'
import sys, boto3
endpoint, bucket, prefix = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
out = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    out += [f"{o['Key'][len(prefix):]} {o['Size']}" for o in page.get("Contents", [])]
print("\n".join(sorted(out)))
PY
    ;;
  esac
}

# remove_object VARIANT KEY: deletes one object of the store, from outside.
remove_object() {
  case "$1" in
    fs) rm "$STORE_DIR/$2" ;;
    s3) env -u AWS_CA_BUNDLE python3 - "$WHARF_TEST_S3_ENDPOINT" "$WHARF_TEST_S3_BUCKET" "$S3_ROOT/$2" <<'PY'
import sys, boto3
endpoint, bucket, key = sys.argv[1:4]
boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
             aws_secret_access_key="test").delete_object(Bucket=bucket, Key=key)
PY
    ;;
  esac
}

# start_docker_registry VARIANT: sets DR_ADDR, DR_PID.
start_docker_registry() {
  local dir="$VDIR/distribution"
  mkdir -p "$dir"
  DR_ADDR="127.0.0.1:$(free_port)"
  {
    printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n'
    storage_yaml "$1"
    printf '  delete:\n    enabled: true\nhttp:\n  addr: %s\n' "$DR_ADDR"
  } >"$dir/config.yml"
  start_service "distribution-$1" "$dir/registry.log" env -u REGISTRY_AUTH_FILE -u AWS_CA_BUNDLE docker-registry serve "$dir/config.yml"
  DR_PID=$REPLY
  wait_for_http "http://$DR_ADDR/v2/" 30 "$DR_PID" || { show_service_log "distribution-$1" 30; exit 2; }
}

# write_wharf_yaml VARIANT: $VDIR/wharf.yml on the same store; sets WHARF_YML.
write_wharf_yaml() {
  WHARF_YML="$VDIR/wharf.yml"
  {
    printf 'version: 0.1\nhttp:\n  addr: 127.0.0.1:0\nlog:\n  level: info\nstorage:\n'
    storage_yaml "$1"
    printf '  delete:\n    enabled: true\n  redirect:\n    disable: false\n'
    printf '  gc:\n    reviewdelay: 0s\n    orphansweep:\n      enabled: true\n      safetyage: 1m\n'
    printf 'database:\n  url: %s\n' "$DB_URL"
  } >"$WHARF_YML"
}

# wharf_import ARGS...: `wharf import` on the variant's config; output in
# $work/import.json, status in IMPORT_RC.
wharf_import() {
  IMPORT_RC=0
  timeout "$TIMEOUT" env -u AWS_CA_BUNDLE NO_COLOR=1 RUST_LOG=warn "$BIN" import --config "$WHARF_YML" --json "$@" \
    >"$work/import.json" 2>"$work/import.err" || IMPORT_RC=$?
}
field() { jq -r ".$1" "$work/import.json"; }

# start_wharf_serve NAME: `wharf serve` on the store; sets W_ADDR, W_PID.
start_wharf_serve() {
  W_ADDR="127.0.0.1:$(free_port)"
  start_service "$1" "$VDIR/$1.log" env -u AWS_CA_BUNDLE REGISTRY_HTTP_ADDR="$W_ADDR" RUST_LOG=info NO_COLOR=1 \
    "$BIN" serve --config "$WHARF_YML"
  W_PID=$REPLY
  wait_for_http "http://$W_ADDR/v2/" 60 "$W_PID" || { show_service_log "$1" 40; exit 2; }
}

variant() {
  local v="$1" ref layout digest repo tag
  echo "# ---- variant $v"
  VDIR="$work/$v"
  mkdir -p "$VDIR"
  case "$v" in
    fs)
      STORE_DIR="$VDIR/store"
      mkdir -p "$STORE_DIR"
      DB_URL="sqlite://$VDIR/wharf.db"
      ;;
    s3)
      # A moto of its own, always: under scripts/test the shared one has served every
      # S3 step before this one, and docker-registry's first blob HEAD against it was
      # answered 500 once (02:38 on 2026-11-30; with its own moto, 76/76 every time).
      start_s3 || { echo "import.sh: moto did not start" >&2; exit 2; }
      S3_ROOT="import-e2e-$RANDOM$RANDOM"
      if [[ -z "${WHARF_TEST_POSTGRES_URL:-}" ]]; then
        start_postgres || { echo "import.sh: PostgreSQL did not start" >&2; exit 2; }
      fi
      local db="wharf_import_e2e_$RANDOM$RANDOM"
      _psql "$WHARF_TEST_POSTGRES_URL" -q -c "CREATE DATABASE $db" >/dev/null || exit 2
      DB_URL="${WHARF_TEST_POSTGRES_URL%/*}/$db"
      ;;
  esac

  # 1. docker-registry fills the store.
  start_docker_registry "$v"
  declare -gA DIGESTS=()
  for p in "${PUSHES[@]}"; do
    read -r ref layout <<<"$p"
    run "push $ref to docker-registry" skopeo copy --all --preserve-digests --quiet --dest-tls-verify=false \
      "oci:$work/$layout:t" "docker://$DR_ADDR/$ref" || exit 2
    timeout "$TIMEOUT" skopeo inspect --tls-verify=false --raw "docker://$DR_ADDR/$ref" >"$work/raw.json"
    DIGESTS[$ref]="sha256:$(sha256_of "$work/raw.json")"
  done
  # Delete the manifest behind e2e/churn:gone (its tag goes with it in 2.8).
  digest="${DIGESTS[e2e/churn:gone]}"
  check_eq "[$v] docker-registry deletes e2e/churn@$digest" 202 \
    "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$DR_ADDR/v2/e2e/churn/manifests/$digest")"
  # The image e2e/churn:moving pointed at first.
  digest="${DIGESTS[e2e/app:v1]}"
  check_eq "[$v] docker-registry deletes e2e/churn@$digest (moving's first image)" 202 \
    "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$DR_ADDR/v2/e2e/churn/manifests/$digest")"
  # A tag left behind by a delete (distribution before 2.7 kept tags): its manifest's
  # revision link removed by hand.
  remove_object "$v" "docker/registry/v2/repositories/e2e/stale/_manifests/revisions/sha256/${DIGESTS[e2e/stale:old]#sha256:}/link"
  # An unfinished upload: POST, one PATCH, never a PUT.
  local loc
  loc="$(curl -s -D - -o /dev/null -X POST "http://$DR_ADDR/v2/e2e/app/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')"
  [[ "$loc" == http* ]] || loc="http://$DR_ADDR$loc"
  check_eq "[$v] docker-registry takes a PATCH of an upload that never finishes" 202 \
    "$(head -c 5000 /dev/urandom | curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' --data-binary @- "$loc")"
  stop_service "$DR_PID"
  list_objects "$v" >"$VDIR/objects.before"
  if grep -q '/_uploads/' "$VDIR/objects.before"; then ok "[$v] the store holds an unfinished upload"; else not_ok "[$v] no _uploads in the store"; fi
  echo "# [$v] the store: $(wc -l <"$VDIR/objects.before") objects"

  write_wharf_yaml "$v"

  # 2. Dry run: the counts, nothing written.
  wharf_import --dry-run
  check_eq "[$v] dry run exits 0" 0 "$IMPORT_RC"
  [[ "$IMPORT_RC" == 0 ]] || sed 's/^/    | /' "$work/import.err" | tail -n 20
  check_eq "[$v] dry run: repositories" 5 "$(field repositories)"
  check_eq "[$v] dry run: the tag whose manifest is gone skipped" 1 "$(field tags_deleted)"
  check_eq "[$v] dry run: tags (the deleted one skipped)" 7 "$(field tags)"
  # app, api, keep, multi's index and its two platform manifests, churn's api.
  check_eq "[$v] dry run: manifests" 7 "$(field manifests)"
  # churn's first image of the moved tag, and stale's (both named by a tag's index/).
  check_eq "[$v] dry run: deleted manifests skipped" 2 "$(field manifests_deleted)"
  check_eq "[$v] dry run: unfinished uploads ignored" 1 "$(field uploads_ignored)"
  check_eq "[$v] dry run: no invalid manifests, dangling links or unknown keys" "0 0 0 0" \
    "$(jq -r '"\(.manifests_invalid) \(.tags_invalid) \(.dangling_links) \(.unknown_keys)"' "$work/import.json")"
  local links
  links="$(field blob_links)"
  start_wharf_serve "wharf-$v-dry"
  check_eq "[$v] after the dry run the catalog is empty" '[]' \
    "$(curl -s "http://$W_ADDR/v2/_catalog" | jq -c .repositories)"
  stop_service "$W_PID"

  # 3. Interrupted, resumed, repeated, restarted.
  wharf_import --stop-after 2 --jobs 1
  check_eq "[$v] --stop-after 2 stops like an interruption (exit 3)" 3 "$IMPORT_RC"
  check_eq "[$v] the interrupted run finished 2 repositories" 2 "$(field repositories)"
  local first_tags first_manifests first_links first_new
  first_tags="$(field tags)" first_manifests="$(field manifests)" first_links="$(field blob_links)" first_new="$(field blobs_new)"
  wharf_import
  check_eq "[$v] the resumed run exits 0" 0 "$IMPORT_RC"
  check_eq "[$v] resumed: 2 repositories already imported" 2 "$(field repositories_resumed)"
  check_eq "[$v] resumed: the other 3 imported" 3 "$(field repositories)"
  check_eq "[$v] both runs: tags as the dry run said" 7 "$((first_tags + $(field tags)))"
  check_eq "[$v] both runs: manifests as the dry run said" 7 "$((first_manifests + $(field manifests)))"
  check_eq "[$v] both runs: blob links as the dry run said" "$links" "$((first_links + $(field blob_links)))"
  local all_new=$((first_new + $(field blobs_new)))
  wharf_import
  check_eq "[$v] a third run: nothing left to import" "0 5" "$(jq -r '"\(.repositories) \(.repositories_resumed)"' "$work/import.json")"
  wharf_import --restart
  check_eq "[$v] --restart: everything read again" "5 7 7 $links" \
    "$(jq -r '"\(.repositories) \(.tags) \(.manifests) \(.blob_links)"' "$work/import.json")"
  check_eq "[$v] --restart: no new blob record (idempotent)" 0 "$(field blobs_new)"

  # 4. Nothing copied.
  list_objects "$v" >"$VDIR/objects.after"
  if cmp -s "$VDIR/objects.before" "$VDIR/objects.after"; then
    ok "[$v] the store's objects are unchanged by the import ($(wc -l <"$VDIR/objects.after") objects, $all_new blob records)"
  else
    not_ok "[$v] the import changed the store's objects"
    diff "$VDIR/objects.before" "$VDIR/objects.after" | head -n 20 | sed 's/^/    | /'
  fi

  # 5. Wharf serves the same store.
  start_wharf_serve "wharf-$v"
  check_eq "[$v] catalog: the imported repositories" "$REPOS_EXPECTED" \
    "$(curl -s "http://$W_ADDR/v2/_catalog" | jq -r '.repositories | join(" ")')"
  check_eq "[$v] tags of e2e/app" "latest v1 v2" \
    "$(curl -s "http://$W_ADDR/v2/e2e/app/tags/list" | jq -r '.tags | sort | join(" ")')"
  check_eq "[$v] tags of e2e/churn (the deleted one gone)" "keep moving" \
    "$(curl -s "http://$W_ADDR/v2/e2e/churn/tags/list" | jq -r '.tags | sort | join(" ")')"
  check_eq "[$v] e2e/stale: no tag (its manifest was gone)" "" \
    "$(curl -s "http://$W_ADDR/v2/e2e/stale/tags/list" | jq -r '.tags // [] | join(" ")')"
  pull_all "$v" "before gc"
  check_eq "[$v] the deleted manifest is unknown" 404 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://$W_ADDR/v2/e2e/churn/manifests/${DIGESTS[e2e/churn:gone]}")"
  # A blob by digest, through Wharf, byte for byte (redirected to the store on S3).
  repo=e2e/app
  digest="$(curl -s -H "Accept: $OCI_MANIFEST" "http://$W_ADDR/v2/$repo/manifests/v1" | jq -r '.layers[0].digest')"
  curl -sL -o "$work/blob" "http://$W_ADDR/v2/$repo/blobs/$digest"
  check_eq "[$v] an imported layer served by digest hashes to its digest" "$digest" "sha256:$(sha256_of "$work/blob")"
  # A new push goes to Wharf's keys, beside distribution's.
  run "[$v] push a new image to wharf" skopeo copy --quiet --dest-tls-verify=false \
    "oci:$work/oci-new:t" "docker://$W_ADDR/e2e/app:new" && ok "[$v] push a new image to wharf after the import"
  list_objects "$v" >"$VDIR/objects.pushed"
  local added removed
  added="$(comm -13 "$VDIR/objects.after" "$VDIR/objects.pushed" | cut -d' ' -f1)"
  # Meanwhile the serving wharf's GC (review delay 0s) may delete what nothing
  # references any more: the blobs only the deleted image had, nothing else.
  removed="$(comm -23 "$VDIR/objects.after" "$VDIR/objects.pushed" | cut -d' ' -f1 | grep -vxFf "$work/gone-keys" || true)"
  if [[ -n "$added" ]] && ! grep -qv '^blobs/' <<<"$added" && [[ -z "$removed" ]]; then
    ok "[$v] the new push wrote only under Wharf's blobs/ ($(wc -l <<<"$added") objects), distribution's untouched"
  else
    not_ok "[$v] the new push's objects: added $(echo "$added" | head -n 5 | paste -sd' '); removed $(comm -23 "$VDIR/objects.after" "$VDIR/objects.pushed" | head -n 5 | paste -sd' ')"
  fi
  stop_service "$W_PID"
  # Garbage collection, the orphan sweep on.
  run "[$v] wharf gc" env -u AWS_CA_BUNDLE RUST_LOG=warn "$BIN" gc --config "$WHARF_YML" && ok "[$v] wharf gc ran"
  list_objects "$v" >"$VDIR/objects.gc"
  # Every blob of a kept image (layers, configs, manifests) is still there; what gc
  # may take are the deleted manifest's blobs, now referenced by nothing.
  local hex missing=0 gone
  for hex in $(ls "$work/oci-app/blobs/sha256" "$work/oci-api/blobs/sha256" "$work/oci-keep/blobs/sha256" "$work/oci-multi/blobs/sha256"); do
    [[ "$hex" == *: || -z "$hex" ]] && continue
    grep -q "^docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data " "$VDIR/objects.gc" || missing=$((missing + 1))
  done
  check_eq "[$v] gc deleted no imported blob object still referenced" 0 "$missing"
  gone="$(comm -23 "$VDIR/objects.after" "$VDIR/objects.gc" | grep -c '^docker/registry/v2/blobs/' || true)"
  echo "# [$v] gc deleted $gone unreferenced imported blob objects (the deleted manifest's)"
  start_wharf_serve "wharf-$v-after-gc"
  pull_all "$v" "after gc"
  run "[$v] pull the new image" skopeo copy --quiet --src-tls-verify=false "docker://$W_ADDR/e2e/app:new" "oci:$VDIR/pulled-new:t" \
    && ok "[$v] the image pushed to wharf pulls"
  stop_service "$W_PID"
}

# pull_all VARIANT WHEN: every kept tag from the wharf at W_ADDR: same digest as
# docker-registry served, and the whole image (--all) copies out.
pull_all() {
  local v="$1" when="$2" ref served n=0
  for ref in "${KEPT_REFS[@]}"; do
    if timeout "$TIMEOUT" skopeo inspect --tls-verify=false --raw "docker://$W_ADDR/$ref" >"$work/raw.json" 2>"$work/last.log"; then
      served="sha256:$(sha256_of "$work/raw.json")"
      [[ "$served" == "${DIGESTS[$ref]}" ]] || not_ok "[$v] $when: $ref served $served, docker-registry ${DIGESTS[$ref]}"
    else
      not_ok "[$v] $when: inspect $ref failed: $(tail -n 1 "$work/last.log")"
      continue
    fi
    rm -rf "$VDIR/pulled"
    if run "[$v] $when: pull $ref" skopeo copy --all --quiet --src-tls-verify=false \
      "docker://$W_ADDR/$ref" "oci:$VDIR/pulled:t"; then
      n=$((n + 1))
    fi
  done
  check_eq "[$v] $when: every image pulls from wharf with docker-registry's digest" "${#KEPT_REFS[@]}" "$n"
}

echo "# import e2e: $BIN, $(docker-registry --version 2>/dev/null | head -1), $(skopeo --version)"
for v in $VARIANTS; do
  variant "$v"
done

echo "import.sh: $passed passed, $failed failed"
((failed == 0))

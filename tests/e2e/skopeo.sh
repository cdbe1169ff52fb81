#!/usr/bin/env bash
# End-to-end: skopeo (containers/image, the library behind podman, buildah and
# CRI-O) against a running registry.
#
#   REGISTRY=127.0.0.1:5000 tests/e2e/skopeo.sh
#
# Starts nothing. Builds OCI image layouts by hand (random gzip layers, image
# config, manifest, index.json, oci-layout; digests from sha256sum), then:
#   - copies a single image in, inspects it, copies it back out and compares
#     every manifest, config and layer byte for byte;
#   - copies a two-platform image index with --all --preserve-digests and
#     checks the index digest and each platform's manifest survive;
#   - copies with --format v2s2 (Docker schema 2) and checks what is served;
#   - copies registry-to-registry (cross-repository blob reuse);
#   - deletes a manifest and checks it is gone.
# Exits non-zero on any mismatch; the last line is a summary.
set -euo pipefail

: "${REGISTRY:?set REGISTRY=host:port of the registry under test}"
NS="${E2E_NAMESPACE:-e2e}"
TIMEOUT="${E2E_CMD_TIMEOUT:-180}"

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
OCI_CONFIG=application/vnd.oci.image.config.v1+json
OCI_LAYER_GZ=application/vnd.oci.image.layer.v1.tar+gzip
V2S2_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
V2S2_LAYER_GZ=application/vnd.docker.image.rootfs.diff.tar.gzip

for tool in skopeo jq curl sha256sum tar gzip cmp; do
  command -v "$tool" >/dev/null || { echo "skopeo.sh: missing $tool (run scripts/install-tools)" >&2; exit 2; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/wharf-e2e-skopeo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

passed=0
failed=0
ok()     { passed=$((passed + 1)); echo "ok   - $*"; }
not_ok() { failed=$((failed + 1)); echo "FAIL - $*"; }

# check_eq WHAT EXPECTED ACTUAL
check_eq() {
  if [[ "$2" == "$3" ]]; then
    ok "$1"
  else
    not_ok "$1: expected '$2', got '$3'"
  fi
}

# run WHAT CMD...: run CMD with a time limit; count a failure and show its
# output if it fails. Returns CMD's status.
run() {
  local what="$1" out="$work/last-command.log"
  shift
  if timeout "$TIMEOUT" "$@" >"$out" 2>&1; then
    return 0
  fi
  not_ok "$what: command failed: $*"
  sed 's/^/    | /' "$out" | tail -n 30
  return 1
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of()   { stat -c %s "$1"; }

# ---- building OCI image layouts -------------------------------------------

# new_layout DIR: an empty OCI image layout.
new_layout() {
  mkdir -p "$1/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
}

# add_blob LAYOUT FILE: move FILE into LAYOUT's blobs; sets DIGEST and SIZE.
add_blob() {
  local hex
  hex="$(sha256_of "$2")"
  SIZE="$(size_of "$2")"
  DIGEST="sha256:$hex"
  mv -f "$2" "$1/blobs/sha256/$hex"
}

# make_layer LAYOUT NAME: a gzip tar of a few random files; sets DIGEST,
# SIZE and DIFF_ID (sha256 of the uncompressed tar).
make_layer() {
  local layout="$1" name="$2" root="$work/rootfs-$2" i
  mkdir -p "$root/data/$name"
  for i in 1 2 3; do
    head -c $((4096 * i + RANDOM % 1024)) /dev/urandom >"$root/data/$name/file$i"
  done
  tar --sort=name --mtime='2024-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
    -C "$root" -cf "$work/$name.tar" data
  DIFF_ID="sha256:$(sha256_of "$work/$name.tar")"
  gzip -n -9 "$work/$name.tar"
  add_blob "$layout" "$work/$name.tar.gz"
}

# make_image LAYOUT ARCH: config + two layers + manifest for linux/ARCH;
# sets MANIFEST_DIGEST, MANIFEST_SIZE. Compact JSON, no trailing newline.
make_image() {
  local layout="$1" arch="$2" l1 l2 d1 d2 cfg
  make_layer "$layout" "$arch-base"
  l1="$(jq -nc --arg d "$DIGEST" --argjson s "$SIZE" --arg m "$OCI_LAYER_GZ" '{mediaType:$m,digest:$d,size:$s}')"
  d1="$DIFF_ID"
  make_layer "$layout" "$arch-app"
  l2="$(jq -nc --arg d "$DIGEST" --argjson s "$SIZE" --arg m "$OCI_LAYER_GZ" '{mediaType:$m,digest:$d,size:$s}')"
  d2="$DIFF_ID"
  jq -ncj --arg arch "$arch" --arg d1 "$d1" --arg d2 "$d2" '{
      created: "2024-01-01T00:00:00Z", architecture: $arch, os: "linux",
      config: {Cmd: ["/bin/sh"], Env: ["PATH=/usr/bin:/bin"]},
      rootfs: {type: "layers", diff_ids: [$d1, $d2]},
      history: [{created: "2024-01-01T00:00:00Z", created_by: "wharf e2e base"},
                {created: "2024-01-01T00:00:00Z", created_by: "wharf e2e app"}]
    }' >"$work/config.json"
  add_blob "$layout" "$work/config.json"
  cfg="$(jq -nc --arg d "$DIGEST" --argjson s "$SIZE" --arg m "$OCI_CONFIG" '{mediaType:$m,digest:$d,size:$s}')"
  jq -ncj --arg m "$OCI_MANIFEST" --argjson c "$cfg" --argjson l1 "$l1" --argjson l2 "$l2" \
    '{schemaVersion: 2, mediaType: $m, config: $c, layers: [$l1, $l2]}' >"$work/manifest.json"
  add_blob "$layout" "$work/manifest.json"
  MANIFEST_DIGEST="$DIGEST"
  MANIFEST_SIZE="$SIZE"
}

# write_index_json LAYOUT MEDIATYPE DIGEST SIZE TAG
write_index_json() {
  jq -nc --arg m "$2" --arg d "$3" --argjson s "$4" --arg t "$5" \
    '{schemaVersion: 2, manifests: [{mediaType: $m, digest: $d, size: $s,
       annotations: {"org.opencontainers.image.ref.name": $t}}]}' >"$1/index.json"
}

# blob_path LAYOUT DIGEST
blob_path() { echo "$1/blobs/${2%%:*}/${2#*:}"; }

# manifest_digests LAYOUT DIGEST: the manifest's config and layer digests.
manifest_digests() { jq -r '.config.digest, .layers[].digest' "$(blob_path "$1" "$2")"; }

# compare_blobs WHAT SRC_LAYOUT DST_LAYOUT DIGEST...: byte-for-byte equality.
compare_blobs() {
  local what="$1" src="$2" dst="$3" d bad=0
  shift 3
  for d in "$@"; do
    if [[ ! -f "$(blob_path "$dst" "$d")" ]]; then
      not_ok "$what: $d missing from the copy"; bad=1
    elif ! cmp -s "$(blob_path "$src" "$d")" "$(blob_path "$dst" "$d")"; then
      not_ok "$what: $d differs from the original"; bad=1
    fi
  done
  ((bad)) || ok "$what: $# blobs identical byte for byte"
}

# header FILE NAME: value of header NAME (lower case) in a curl -D dump.
header() {
  tr -d '\r' <"$1" | sed -n "s/^$2:[[:space:]]*//Ip" | tail -n 1
}

# index_ref LAYOUT: digest of the (only) manifest in LAYOUT's index.json.
index_ref() { jq -r '.manifests[0].digest' "$1/index.json"; }

# raw_manifest_sha REF: sha256 of the manifest bytes the registry serves.
raw_manifest_sha() {
  timeout "$TIMEOUT" skopeo inspect --tls-verify=false --raw "docker://$1" >"$work/raw.json"
  echo "sha256:$(sha256_of "$work/raw.json")"
}

echo "# skopeo e2e against $REGISTRY ($(skopeo --version))"

# ---- 1. single image: push, inspect, pull back, compare -------------------

single="$work/single"
new_layout "$single"
make_image "$single" amd64
img_digest="$MANIFEST_DIGEST"
write_index_json "$single" "$OCI_MANIFEST" "$MANIFEST_DIGEST" "$MANIFEST_SIZE" v1
mapfile -t img_blobs < <(manifest_digests "$single" "$img_digest")

ref="$REGISTRY/$NS/img:v1"
if run "push single image" skopeo copy --quiet --dest-tls-verify=false "oci:$single:v1" "docker://$ref"; then
  ok "push single image (oci: -> docker://$ref)"

  if run "inspect" skopeo inspect --tls-verify=false "docker://$ref"; then
    inspected="$(cat "$work/last-command.log")"
    check_eq "inspect: digest" "$img_digest" "$(jq -r .Digest <<<"$inspected")"
    check_eq "inspect: layers" "$(printf '%s\n' "${img_blobs[@]:1}" | paste -sd,)" \
      "$(jq -r '.Layers[]' <<<"$inspected" | paste -sd,)"
    check_eq "inspect: architecture" amd64 "$(jq -r .Architecture <<<"$inspected")"
  fi

  if served="$(raw_manifest_sha "$ref")"; then
    check_eq "raw manifest by tag hashes to the pushed digest" "$img_digest" "$served"
    if cmp -s "$work/raw.json" "$(blob_path "$single" "$img_digest")"; then
      ok "raw manifest bytes identical"
    else
      not_ok "raw manifest bytes differ from what was pushed"
    fi
  else
    not_ok "inspect --raw $ref failed"
  fi

  if served="$(raw_manifest_sha "$REGISTRY/$NS/img@$img_digest")"; then
    check_eq "manifest by digest" "$img_digest" "$served"
  else
    not_ok "inspect --raw by digest failed"
  fi

  if run "list-tags" skopeo list-tags --tls-verify=false "docker://$REGISTRY/$NS/img"; then
    if jq -e '.Tags | index("v1")' "$work/last-command.log" >/dev/null; then
      ok "list-tags includes v1"
    else
      not_ok "list-tags lacks v1: $(jq -c .Tags "$work/last-command.log")"
    fi
  fi

  out="$work/single-out"
  if run "pull single image" skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$out:v1"; then
    ok "pull single image back (docker:// -> oci:)"
    check_eq "pulled manifest digest" "$img_digest" "$(index_ref "$out")"
    compare_blobs "pulled image" "$single" "$out" "$img_digest" "${img_blobs[@]}"
  fi
fi

# ---- 2. multi-arch index, --all --preserve-digests -------------------------

multi="$work/multi"
new_layout "$multi"
platform_entries=()
declare -A arch_digest=()
for arch in amd64 arm64; do
  make_image "$multi" "$arch"
  arch_digest[$arch]="$MANIFEST_DIGEST"
  platform_entries+=("$(jq -nc --arg m "$OCI_MANIFEST" --arg d "$MANIFEST_DIGEST" --argjson s "$MANIFEST_SIZE" \
    --arg a "$arch" '{mediaType: $m, digest: $d, size: $s, platform: {architecture: $a, os: "linux"}}')")
done
printf '%s\n' "${platform_entries[@]}" | jq -scj --arg m "$OCI_INDEX" \
  '{schemaVersion: 2, mediaType: $m, manifests: .}' >"$work/index-blob.json"
add_blob "$multi" "$work/index-blob.json"
index_digest="$DIGEST"
write_index_json "$multi" "$OCI_INDEX" "$DIGEST" "$SIZE" v1
multi_blobs=("$index_digest")
for arch in amd64 arm64; do
  multi_blobs+=("${arch_digest[$arch]}")
  mapfile -t -O "${#multi_blobs[@]}" multi_blobs < <(manifest_digests "$multi" "${arch_digest[$arch]}")
done

mref="$REGISTRY/$NS/multi:v1"
if run "push index" skopeo copy --quiet --all --preserve-digests --dest-tls-verify=false "oci:$multi:v1" "docker://$mref"; then
  ok "push two-platform index with --all --preserve-digests"
  if served="$(raw_manifest_sha "$mref")"; then
    check_eq "index digest preserved" "$index_digest" "$served"
    check_eq "served index media type" "$OCI_INDEX" "$(jq -r .mediaType "$work/raw.json")"
  else
    not_ok "inspect --raw $mref failed"
  fi
  for arch in amd64 arm64; do
    # skopeo inspect reports the index digest, and the chosen platform's
    # config and layers.
    if run "inspect $arch" skopeo inspect --tls-verify=false --override-os linux --override-arch "$arch" "docker://$mref"; then
      check_eq "index resolves linux/$arch: layers" \
        "$(manifest_digests "$multi" "${arch_digest[$arch]}" | tail -n +2 | paste -sd,)" \
        "$(jq -r '.Layers[]' "$work/last-command.log" | paste -sd,)"
    fi
    if served="$(raw_manifest_sha "$REGISTRY/$NS/multi@${arch_digest[$arch]}")"; then
      check_eq "linux/$arch manifest by digest" "${arch_digest[$arch]}" "$served"
    else
      not_ok "inspect --raw linux/$arch manifest by digest failed"
    fi
  done
  mout="$work/multi-out"
  if run "pull index" skopeo copy --quiet --all --preserve-digests --src-tls-verify=false "docker://$mref" "oci:$mout:v1"; then
    ok "pull index back with --all"
    check_eq "pulled index digest" "$index_digest" "$(index_ref "$mout")"
    compare_blobs "pulled index" "$multi" "$mout" "${multi_blobs[@]}"
  fi
fi

# ---- 3. Docker schema 2 ----------------------------------------------------

vref="$REGISTRY/$NS/img-v2s2:v1"
if run "push v2s2" skopeo copy --quiet --format v2s2 --dest-tls-verify=false "oci:$single:v1" "docker://$vref"; then
  ok "push converted to Docker schema 2 (--format v2s2)"
  if served="$(raw_manifest_sha "$vref")"; then
    raw="$work/raw.json"
    check_eq "v2s2 media type" "$V2S2_MANIFEST" "$(jq -r .mediaType "$raw")"
    check_eq "v2s2 config digest kept" "${img_blobs[0]}" "$(jq -r .config.digest "$raw")"
    check_eq "v2s2 layer digests kept" "$(printf '%s\n' "${img_blobs[@]:1}" | paste -sd,)" \
      "$(jq -r '.layers[].digest' "$raw" | paste -sd,)"
    check_eq "v2s2 layer media types" "$V2S2_LAYER_GZ,$V2S2_LAYER_GZ" \
      "$(jq -r '.layers[].mediaType' "$raw" | paste -sd,)"
    # The same manifest by digest over plain HTTP: headers as docker expects.
    hdrs="$work/v2s2.headers"
    if curl -fsS -D "$hdrs" -o "$work/v2s2.body" -H "Accept: $V2S2_MANIFEST" \
        "http://$REGISTRY/v2/$NS/img-v2s2/manifests/$served"; then
      check_eq "v2s2 Content-Type" "$V2S2_MANIFEST" "$(header "$hdrs" content-type | cut -d';' -f1)"
      check_eq "v2s2 Docker-Content-Digest" "$served" "$(header "$hdrs" docker-content-digest)"
    else
      not_ok "GET v2s2 manifest by digest over HTTP"
    fi
  else
    not_ok "inspect --raw $vref failed"
  fi
  vout="$work/v2s2-out"
  if run "pull v2s2" skopeo copy --quiet --src-tls-verify=false "docker://$vref" "dir:$vout"; then
    bad=0
    for d in "${img_blobs[@]}"; do
      cmp -s "$(blob_path "$single" "$d")" "$vout/${d#sha256:}" || { bad=1; not_ok "v2s2 pull: $d differs"; }
    done
    ((bad)) || ok "v2s2 pull: config and layers identical byte for byte"
  fi
fi

# ---- 4. registry to registry (cross-repository blob reuse) ----------------

cref="$REGISTRY/$NS/img-copy:v1"
if run "copy between repositories" skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
    "docker://$ref" "docker://$cref"; then
  ok "copy between repositories"
  if served="$(raw_manifest_sha "$cref")"; then
    check_eq "copied manifest digest" "$img_digest" "$served"
  else
    not_ok "inspect --raw $cref failed"
  fi
fi

# ---- 5. delete ---------------------------------------------------------------

dref="$REGISTRY/$NS/del:v1"
if run "push for delete" skopeo copy --quiet --dest-tls-verify=false "oci:$single:v1" "docker://$dref"; then
  if run "delete" skopeo delete --tls-verify=false "docker://$dref"; then
    ok "skopeo delete"
    if timeout "$TIMEOUT" skopeo inspect --tls-verify=false --raw "docker://$REGISTRY/$NS/del@$img_digest" >/dev/null 2>&1; then
      not_ok "deleted manifest still served by digest"
    else
      ok "deleted manifest no longer served"
    fi
    if served="$(raw_manifest_sha "$ref" 2>/dev/null)"; then
      check_eq "same manifest in another repository unaffected" "$img_digest" "$served"
    else
      not_ok "deleting $dref broke $ref"
    fi
  fi
fi

echo "SUMMARY skopeo.sh: ${passed} checks ok, ${failed} failed"
((failed == 0))

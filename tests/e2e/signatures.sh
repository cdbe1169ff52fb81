#!/usr/bin/env bash
# End-to-end: signatures in every stored form and the trust policy (issue 19),
# with skopeo (containers/image), gpg and oras-py.
#
#   tests/e2e/signatures.sh        (starts its OWN wharf processes; REGISTRY is ignored)
#
# It starts wharf on scratch data (find_wharf_bin: WHARF_BIN, else the
# CARGO_TARGET_DIR build), first with no trust policy:
#   1. /v2/ announces the signature API extension (X-Registry-Supports-Signatures: 1,
#      on the 200 as on a 401, where containers/image reads it);
#   2. skopeo copy --sign-by (GPG keys made here in a scratch GNUPGHOME: an Ed25519
#      and an RSA key the policy will trust, an Ed25519 one it will not) stores
#      simple signatures through the extension; GET returns containers/image's
#      format; skopeo with a policy.json requiring signedBy pulls the signed image
#      and refuses the unsigned and the wrongly signed ones;
#   3. a sigstore signature (ECDSA P-256 key in cosign's encrypted format, made by
#      scripts/lib/sigstore_key.py): skopeo --sign-by-sigstore-private-key with
#      use-sigstore-attachments. Debian's skopeo 1.9.3 is built with sigstore
#      disabled in both directions ("Debian-local change: sigstore disabled"), so
#      where it says so the attachment is written by scripts/lib/sigstore_attach.py
#      in containers/image's exact format, skopeo is shown to find and fetch it
#      from wharf (its debug log), and the signature is verified by this script
#      (python `cryptography`) instead of by skopeo. A skopeo that can sign and
#      verify sigstore is used as such;
#   4. the extension's errors (SIGNATURE_INVALID, SIGNATURE_EXISTS, 404s) and the
#      listing of every form at /extensions/wharf/v1/<name>/signatures/<digest>;
#   5. oras-py pushes a signature-like referrer (notation's artifact type): it is
#      listed, survives garbage collection with its subject, and is collected once
#      the subject is deleted; the subject's extension signatures and sigstore
#      attachment tag go with it too;
# then restarts wharf on the same data with a trust policy (`trust.policies`):
#   6. skopeo (accepting anything itself) pulls the GPG-signed (Ed25519 and RSA),
#      sigstore-attached and cosign-referrer-signed images; the unsigned one and
#      the ones signed with keys the policy does not name are refused with 403
#      DENIED naming the policy; a fetch by digest with push scope passes (open
#      auth: every caller has it); the metrics count the verdicts.
# Exit status: 0 all passed, 1 a check failed, 2 a setup error, 77 when run
# against another registry (E2E_REFERENCE: the extension is Wharf's and
# OpenShift's).
set -euo pipefail

if [[ -n "${E2E_REFERENCE:-}" ]]; then
  echo "signatures.sh: skipped: tests wharf's signature extension and trust policy, not $E2E_REFERENCE"
  exit 77
fi

TIMEOUT="${E2E_CMD_TIMEOUT:-120}"
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_CONFIG=application/vnd.oci.image.config.v1+json
OCI_LAYER_GZ=application/vnd.oci.image.layer.v1.tar+gzip
HERE="$(cd "$(dirname "$0")" && pwd)"
LIB="$HERE/../../scripts/lib"

WHARF_TMP=""
# shellcheck source=scripts/lib/services.sh
source "$LIB/services.sh"
WHARF_LOG_NAME=signatures.sh

for tool in skopeo gpg gpgconf jq curl python3 sha256sum tar gzip; do
  have "$tool" || { echo "signatures.sh: missing $tool (run scripts/install-tools)" >&2; exit 2; }
done
python3 -c 'import cryptography, oras.provider, requests' 2>/dev/null ||
  { echo "signatures.sh: python3 needs cryptography, oras and requests (run scripts/install-tools)" >&2; exit 2; }
find_wharf_bin >/dev/null || { echo "signatures.sh: no wharf binary (set WHARF_BIN or cargo build)" >&2; exit 2; }

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
check_contains() {
  if [[ "$3" == *"$2"* ]]; then ok "$1"; else not_ok "$1: expected to contain '$2', got '${3:0:600}'"; fi
}
header() { tr -d '\r' <"$1" | sed -n "s/^$2:[[:space:]]*//Ip" | tail -n 1; }

# ---- keys ---------------------------------------------------------------------
export GNUPGHOME="$work/gnupg"
mkdir -m 700 -p "$GNUPGHOME"
stop_gpg_agent() { gpgconf --kill gpg-agent 2>/dev/null || true; }
register_service gpg-agent 0 /dev/null stop_gpg_agent
gen_key() { # gen_key EMAIL ALGO: prints the fingerprint
  gpg --batch --passphrase '' --quick-gen-key "Wharf E2E <$1>" "$2" sign never >/dev/null 2>&1
  gpg --list-keys --with-colons "$1" | awk -F: '/^fpr/{print $10; exit}'
}
FPR_ED="$(gen_key ed@wharf.test ed25519)"
FPR_RSA="$(gen_key rsa@wharf.test rsa2048)"
FPR_OTHER="$(gen_key other@wharf.test ed25519)"
gpg --export --armor "$FPR_ED" >"$work/ed.asc"
gpg --export "$FPR_RSA" >"$work/rsa.gpg"
gpg --export "$FPR_ED" >"$work/ed.gpg"
[[ -s "$work/ed.asc" && -s "$work/rsa.gpg" && -n "$FPR_OTHER" ]] || { echo "signatures.sh: gpg made no keys" >&2; exit 2; }
python3 "$LIB/sigstore_key.py" "$work/cosign" e2e-pass
python3 "$LIB/sigstore_key.py" "$work/cosign-other" e2e-pass
printf 'e2e-pass' >"$work/cosign.pass"

# ---- images: one OCI layout per image, each its own random layer ---------------
make_image() { # make_image NAME: $work/img/NAME, tag v1; sets DIGEST
  local dir="$work/img/$1" root="$work/rootfs-$1" l ls diff c cs m
  mkdir -p "$dir/blobs/sha256" "$root"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  head -c 4096 /dev/urandom >"$root/data"
  tar --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/$1.tar" data
  diff="$(sha256sum "$work/$1.tar" | cut -d' ' -f1)"
  gzip -n "$work/$1.tar"
  l="$(sha256sum "$work/$1.tar.gz" | cut -d' ' -f1)"; ls="$(stat -c %s "$work/$1.tar.gz")"
  mv "$work/$1.tar.gz" "$dir/blobs/sha256/$l"
  jq -ncj --arg d "sha256:$diff" '{architecture:"amd64",os:"linux",rootfs:{type:"layers",diff_ids:[$d]}}' >"$work/c.json"
  c="$(sha256sum "$work/c.json" | cut -d' ' -f1)"; cs="$(stat -c %s "$work/c.json")"
  mv "$work/c.json" "$dir/blobs/sha256/$c"
  jq -ncj --arg m "$OCI_MANIFEST" --arg cm "$OCI_CONFIG" --arg lm "$OCI_LAYER_GZ" \
    --arg c "sha256:$c" --argjson cs "$cs" --arg l "sha256:$l" --argjson ls "$ls" \
    '{schemaVersion:2,mediaType:$m,config:{mediaType:$cm,digest:$c,size:$cs},layers:[{mediaType:$lm,digest:$l,size:$ls}]}' >"$work/m.json"
  m="$(sha256sum "$work/m.json" | cut -d' ' -f1)"
  jq -nc --arg m "$OCI_MANIFEST" --arg d "sha256:$m" --argjson s "$(stat -c %s "$work/m.json")" \
    '{schemaVersion:2,manifests:[{mediaType:$m,digest:$d,size:$s,annotations:{"org.opencontainers.image.ref.name":"v1"}}]}' >"$dir/index.json"
  mv "$work/m.json" "$dir/blobs/sha256/$m"
  DIGEST="sha256:$m"
}
declare -A D
for name in signed-ed signed-rsa wrong unsigned cosigned cosign-wrong cosign-ref doomed; do
  make_image "$name"
  D[$name]="$DIGEST"
done

# ---- containers/image configuration --------------------------------------------
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/accept.json"
mkdir -p "$work/registries.d"
SKOPEO=(timeout "$TIMEOUT" skopeo --registries.d "$work/registries.d")
write_registries_d() { # the registry's host:port: sigstore attachments read and written
  printf 'docker:\n  %s:\n    use-sigstore-attachments: true\n' "$1" >"$work/registries.d/wharf.yaml"
}
push() { # push NAME [skopeo signing flags...]
  local name="$1"
  shift
  "${SKOPEO[@]}" --policy "$work/accept.json" copy --dest-tls-verify=false "$@" \
    "oci:$work/img/$name:v1" "docker://$ADDR/e2e/$name:v1" >"$work/push-$name.log" 2>&1
}
pull() { # pull POLICY NAME: exit status of skopeo copy to a dir:, output in $work/pull.log
  rm -rf "$work/pulled"
  "${SKOPEO[@]}" --policy "$1" copy --src-tls-verify=false "docker://$ADDR/e2e/$2:v1" "dir:$work/pulled" >"$work/pull.log" 2>&1
}

# ---- wharf, no trust policy ----------------------------------------------------
cat >"$work/wharf-open.yml" <<'YAML'
version: 0.1
http:
  addr: @ADDR@
storage:
  filesystem:
    rootdirectory: @DATA@/blobs
  gc:
    reviewdelay: 1s
    interval: 1s
database:
  url: sqlite://@DATA@/wharf.db
YAML
start_wharf_with_config "$work/wharf-open.yml" sigs || exit 2
ADDR="$WHARF_ADDR"
write_registries_d "$ADDR"
echo "# signatures e2e: $(find_wharf_bin) at $ADDR, $(skopeo --version), $(gpg --version | head -1)"

echo "## 1. the extension is announced"
curl -s -D "$work/h" -o /dev/null "http://$ADDR/v2/"
check_eq "GET /v2/: X-Registry-Supports-Signatures" 1 "$(header "$work/h" x-registry-supports-signatures)"

echo "## 2. simple signing through the extension (skopeo --sign-by)"
push signed-ed --sign-by "$FPR_ED" && ok "skopeo copy --sign-by (Ed25519) to wharf" || { not_ok "sign-by ed25519"; tail "$work/push-signed-ed.log"; }
push signed-rsa --sign-by "$FPR_RSA" && ok "skopeo copy --sign-by (RSA) to wharf" || { not_ok "sign-by rsa"; tail "$work/push-signed-rsa.log"; }
push wrong --sign-by "$FPR_OTHER" && ok "skopeo copy --sign-by (a key no policy trusts)" || not_ok "sign-by other"
for n in unsigned cosigned cosign-wrong cosign-ref doomed; do
  push "$n" || not_ok "skopeo copy $n"
done
ext="$(curl -s "http://$ADDR/extensions/v2/e2e/signed-ed/signatures/${D[signed-ed]}")"
check_eq "GET extension: one signature" 1 "$(jq '.signatures | length' <<<"$ext")"
check_eq "GET extension: schemaVersion 2, type atomic" "2 atomic" "$(jq -r '.signatures[0] | "\(.schemaVersion) \(.type)"' <<<"$ext")"
check_contains "GET extension: name is <digest>@<name>" "${D[signed-ed]}@" "$(jq -r '.signatures[0].name' <<<"$ext")"
jq -r '.signatures[0].content' <<<"$ext" | base64 -d >"$work/sig.bin"
gpg --decrypt "$work/sig.bin" 2>/dev/null >"$work/payload.json" || true
check_eq "the stored signature is gpg's, over the manifest digest" "${D[signed-ed]}" \
  "$(jq -r '.critical.image["docker-manifest-digest"]' "$work/payload.json" 2>/dev/null)"
check_eq "GET extension of an unsigned manifest: empty list" 0 \
  "$(curl -s "http://$ADDR/extensions/v2/e2e/unsigned/signatures/${D[unsigned]}" | jq '.signatures | length')"

gpg --export "$FPR_ED" "$FPR_RSA" >"$work/trusted.gpg"
jq -n --arg k "$work/trusted.gpg" --arg a "$ADDR" '{default:[{type:"reject"}],
  transports:{docker:{($a + "/e2e"):[{type:"signedBy",keyType:"GPGKeys",keyPath:$k}]},
              dir:{"":[{type:"insecureAcceptAnything"}]}}}' >"$work/signed-by.json"
pull "$work/signed-by.json" signed-ed && ok "skopeo with policy signedBy: pulls the Ed25519-signed image" || { not_ok "signedBy pull signed-ed"; tail -3 "$work/pull.log"; }
pull "$work/signed-by.json" signed-rsa && ok "skopeo with policy signedBy: pulls the RSA-signed image" || { not_ok "signedBy pull signed-rsa"; tail -3 "$work/pull.log"; }
if pull "$work/signed-by.json" unsigned; then not_ok "signedBy: the unsigned image was pulled"; else
  check_contains "skopeo with policy signedBy: refuses the unsigned image" "signature was required, but no signature exists" "$(cat "$work/pull.log")"; fi
if pull "$work/signed-by.json" wrong; then not_ok "signedBy: the wrongly signed image was pulled"; else
  check_contains "skopeo with policy signedBy: refuses the image signed by another key" "rejected" "$(cat "$work/pull.log")"; fi

echo "## 3. sigstore attachments"
sigstore_by_skopeo=1
if push cosigned --sign-by-sigstore-private-key "$work/cosign.key" --sign-passphrase-file "$work/cosign.pass"; then
  ok "skopeo copy --sign-by-sigstore-private-key to wharf"
  push cosign-wrong --sign-by-sigstore-private-key "$work/cosign-other.key" --sign-passphrase-file "$work/cosign.pass" || not_ok "sigstore sign cosign-wrong"
elif grep -q "sigstore disabled" "$work/push-cosigned.log"; then
  sigstore_by_skopeo=0
  echo "#   this skopeo is built with sigstore disabled (Debian): the attachment is written by sigstore_attach.py"
  python3 "$LIB/sigstore_attach.py" "$ADDR" e2e/cosigned "${D[cosigned]}" "$ADDR/e2e/cosigned" "$work/cosign.pem" >/dev/null &&
    ok "sigstore attachment written (containers/image's format)" || not_ok "sigstore_attach.py cosigned"
  python3 "$LIB/sigstore_attach.py" "$ADDR" e2e/cosign-wrong "${D[cosign-wrong]}" "$ADDR/e2e/cosign-wrong" "$work/cosign-other.pem" >/dev/null || not_ok "sigstore_attach.py cosign-wrong"
else
  not_ok "skopeo --sign-by-sigstore-private-key"; tail -5 "$work/push-cosigned.log"
fi
python3 "$LIB/sigstore_attach.py" --referrer "$ADDR" e2e/cosign-ref "${D[cosign-ref]}" "$ADDR/e2e/cosign-ref" "$work/cosign.pem" >/dev/null &&
  ok "cosign OCI 1.1 referrer signature pushed" || not_ok "sigstore_attach.py --referrer"
sig_tag="sha256-${D[cosigned]#sha256:}.sig"
check_contains "the attachment tag is listed" "$sig_tag" "$(curl -s "http://$ADDR/v2/e2e/cosigned/tags/list")"
jq -n --arg k "$work/cosign.pub" --arg a "$ADDR" '{default:[{type:"reject"}],
  transports:{docker:{($a + "/e2e"):[{type:"sigstoreSigned",keyPath:$k,signedIdentity:{type:"matchRepository"}}]},
              dir:{"":[{type:"insecureAcceptAnything"}]}}}' >"$work/sigstore.json"
if pull "$work/sigstore.json" cosigned; then
  ok "skopeo with policy sigstoreSigned: pulls the sigstore-signed image"
  if pull "$work/sigstore.json" unsigned; then not_ok "sigstoreSigned: unsigned pulled"; else ok "skopeo with policy sigstoreSigned: refuses the unsigned image"; fi
  if pull "$work/sigstore.json" cosign-wrong; then not_ok "sigstoreSigned: wrong key pulled"; else ok "skopeo with policy sigstoreSigned: refuses the image signed with another key"; fi
elif grep -q "sigstore disabled" "$work/pull.log"; then
  rm -rf "$work/pulled"
  "${SKOPEO[@]}" --debug --policy "$work/sigstore.json" copy --src-tls-verify=false \
    "docker://$ADDR/e2e/cosigned:v1" "dir:$work/pulled" >"$work/pull-debug.log" 2>&1 || true
  check_contains "skopeo finds the sigstore attachment on wharf (its own verification is disabled in this build)" \
    "Found a sigstore attachment manifest with 1 layers" "$(cat "$work/pull-debug.log")"
  # The stand-in verifier: what skopeo's sigstoreSigned would check.
  python3 - "$ADDR" "${D[cosigned]}" "$work/cosign.pub" "$work/cosign-other.pub" <<'PY' && ok "the attachment verifies with the key (and not with another), payload digest and identity match" || not_ok "attachment verification"
import base64, json, sys, requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.exceptions import InvalidSignature
addr, digest, pub, other = sys.argv[1:5]
base = f"http://{addr}/v2/e2e/cosigned"
tag = digest.replace(":", "-") + ".sig"
m = requests.get(f"{base}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
layer = m["layers"][0]
assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
payload = requests.get(f"{base}/blobs/{layer['digest']}").content
sig = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
serialization.load_pem_public_key(open(pub, "rb").read()).verify(sig, payload, ec.ECDSA(hashes.SHA256()))
try:
    serialization.load_pem_public_key(open(other, "rb").read()).verify(sig, payload, ec.ECDSA(hashes.SHA256()))
    sys.exit(1)
except InvalidSignature:
    pass
p = json.loads(payload)["critical"]
assert p["image"]["docker-manifest-digest"] == digest, p
assert p["identity"]["docker-reference"] == f"{addr}/e2e/cosigned", p
PY
else
  not_ok "skopeo sigstoreSigned pull"; tail -3 "$work/pull.log"
fi

echo "## 4. the extension's errors, and every form listed"
sigurl="http://$ADDR/extensions/v2/e2e/signed-ed/signatures/${D[signed-ed]}"
code="$(curl -s -o "$work/b" -w '%{http_code}' -X PUT "$sigurl" -d '{"schemaVersion":2,"name":"no-digest","type":"atomic","content":"AAAA"}')"
check_eq "PUT a signature named without its digest: 400 SIGNATURE_INVALID" "400 SIGNATURE_INVALID" "$code $(jq -r '.errors[0].code' "$work/b")"
code="$(curl -s -o "$work/b" -w '%{http_code}' -X PUT "$sigurl" -d '{"schemaVersion":2,"name":"x","type":"atomic","content":"!!"}')"
check_eq "PUT a signature that is not base64: 400 SIGNATURE_INVALID" "400 SIGNATURE_INVALID" "$code $(jq -r '.errors[0].code' "$work/b")"
code="$(curl -s -o "$work/b" -w '%{http_code}' -X PUT "$sigurl" -d 'not json')"
check_eq "PUT garbage: 400 SIGNATURE_INVALID" "400 SIGNATURE_INVALID" "$code $(jq -r '.errors[0].code' "$work/b")"
body="$(jq -nc --arg n "${D[signed-ed]}@e2e-dup" '{schemaVersion:2,name:$n,type:"atomic",content:"AAAA"}')"
check_eq "PUT a signature: 201" 201 "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$sigurl" -d "$body")"
code="$(curl -s -o "$work/b" -w '%{http_code}' -X PUT "$sigurl" -d "$body")"
check_eq "PUT it again: 409 SIGNATURE_EXISTS" "409 SIGNATURE_EXISTS" "$code $(jq -r '.errors[0].code' "$work/b")"
unknown="sha256:$(printf nothing | sha256sum | cut -d' ' -f1)"
code="$(curl -s -o "$work/b" -w '%{http_code}' "http://$ADDR/extensions/v2/e2e/signed-ed/signatures/$unknown")"
check_eq "GET signatures of an unknown manifest: 404 MANIFEST_UNKNOWN" "404 MANIFEST_UNKNOWN" "$code $(jq -r '.errors[0].code' "$work/b")"
code="$(curl -s -o "$work/b" -w '%{http_code}' "http://$ADDR/extensions/v2/e2e/signed-ed/signatures/sha256:zz")"
check_eq "GET signatures of a bad digest: 400 DIGEST_INVALID" "400 DIGEST_INVALID" "$code $(jq -r '.errors[0].code' "$work/b")"
manifest_code() { curl -s -o /dev/null -w '%{http_code}' -H "Accept: $OCI_MANIFEST" "http://$ADDR/v2/e2e/doomed/manifests/$1"; }
metric() { curl -s "http://$ADDR/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $2} END {print s + 0}'; }
forms() { curl -s "http://$ADDR/extensions/wharf/v1/e2e/$1/signatures/$2"; }
check_eq "forms: the extension's signatures of signed-ed" 2 "$(forms signed-ed "${D[signed-ed]}" | jq '.extension | length')"
check_eq "forms: the sigstore attachment of cosigned" "$sig_tag 1" "$(forms cosigned "${D[cosigned]}" | jq -r '"\(.sigstoreAttachment.tag) \(.sigstoreAttachment.layers | length)"')"
check_eq "forms: the cosign referrer of cosign-ref" "application/vnd.dev.cosign.artifact.sig.v1+json" "$(forms cosign-ref "${D[cosign-ref]}" | jq -r '.referrers[0].artifactType')"
check_eq "forms: nothing for unsigned" 0 "$(forms unsigned "${D[unsigned]}" | jq '.count')"

echo "## 5. signatures follow their subject (oras-py referrer, garbage collection)"
push doomed --sign-by "$FPR_ED" || not_ok "sign doomed"
python3 "$LIB/sigstore_attach.py" "$ADDR" e2e/doomed "${D[doomed]}" "$ADDR/e2e/doomed" "$work/cosign.pem" >"$work/doomed-att" || not_ok "attach doomed"
ATT_DIGEST="$(cat "$work/doomed-att")"
before="$(metric 'wharf_gc_reviews_done_total{kind="manifest"')"
REF_DIGEST="$(python3 - "$ADDR" "${D[doomed]}" "$work" <<'PY'
import hashlib, json, os, sys
import oras.oci, oras.provider
addr, subject, work = sys.argv[1:4]
os.chdir(work)
reg = oras.provider.Registry(hostname=addr, insecure=True)
r = reg.do_request(f"http://{addr}/v2/e2e/doomed/manifests/{subject}", "GET",
                   headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
subj = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json", digest=subject, size=len(r.content))
with open("notation.sig", "wb") as f:
    f.write(os.urandom(256))
with open("empty.json", "w") as f:
    f.write("{}")
# notation's artifact type rides in the config media type (oras-py 0.2 has no artifactType).
resp = reg.push(target=f"{addr}/e2e/doomed:notation-sig", files=["notation.sig:application/jose+json"],
                manifest_config="empty.json:application/vnd.cncf.notary.signature", subject=subj, quiet=True)
assert resp.status_code == 201, resp.status_code
r = reg.do_request(f"http://{addr}/v2/e2e/doomed/manifests/notation-sig", "GET",
                   headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
# Untag it: only its subject keeps it now.
d = "sha256:" + hashlib.sha256(r.content).hexdigest()
assert reg.do_request(f"http://{addr}/v2/e2e/doomed/manifests/notation-sig", "DELETE").status_code == 202
print(d)
PY
)" || not_ok "oras-py push of the referrer"
check_contains "oras-py's signature referrer is listed among the subject's signatures" "$REF_DIGEST" "$(forms doomed "${D[doomed]}" | jq -c '.referrers')"
check_eq "forms: the doomed image has every form" "1 1 1" "$(forms doomed "${D[doomed]}" | jq -r '"\(.extension | length) \(.sigstoreAttachment.layers | length) \(.referrers | length)"')"
# Garbage collection runs every second with a 1 s review delay: untagging the
# referrer queued its review; wait until reviews were settled since and none is
# queued (a bounded wait for a condition, not a timing claim).
wait_reviews() {
  local i
  for ((i = 0; i < 120; i++)); do
    if (( $(metric 'wharf_gc_reviews_done_total{kind="manifest"') > before )) &&
       [[ "$(metric 'wharf_gc_reviews_pending{kind="manifest",state="queued"}')" == 0 ]]; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}
wait_reviews || not_ok "garbage collection did not settle its manifest reviews"
check_eq "the untagged referrer survives garbage collection while its subject is there" 200 "$(manifest_code "$REF_DIGEST")"
echo "#   manifest reviews settled meanwhile: $(( $(metric 'wharf_gc_reviews_done_total{kind="manifest"') - before ))"
check_eq "DELETE the subject" 202 "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$ADDR/v2/e2e/doomed/manifests/${D[doomed]}")"
check_eq "its extension signatures went with it (404)" 404 "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/extensions/v2/e2e/doomed/signatures/${D[doomed]}")"
check_eq "its sigstore attachment tag went with it" 404 "$(manifest_code "sha256-${D[doomed]#sha256:}.sig")"
gone=0
for ((i = 0; i < 120; i++)); do
  if [[ "$(manifest_code "$REF_DIGEST")" == 404 && "$(manifest_code "$ATT_DIGEST")" == 404 ]]; then gone=1; break; fi
  sleep 0.5
done
check_eq "garbage collection collected the referrer and the attachment manifest" 1 "$gone"
check_eq "the other images' signatures are untouched" 2 "$(forms signed-ed "${D[signed-ed]}" | jq '.extension | length')"

# ---- the same data, a trust policy ------------------------------------------------
echo "## 6. wharf's trust policy"
stop_service "$WHARF_PID"
gpg --export --armor "$FPR_ED" >"$work/trusted-ed.asc"
cat >"$work/wharf-trust.yml" <<YAML
version: 0.1
http:
  addr: @ADDR@
storage:
  filesystem:
    rootdirectory: @DATA@/blobs
database:
  url: sqlite://@DATA@/wharf.db
trust:
  policies:
    - name: e2e-signed
      repositories: ["e2e/*"]
      keys:
        gpg: [$work/trusted-ed.asc, $work/rsa.gpg]
        cosign: [$work/cosign.pub]
YAML
start_wharf_with_config "$work/wharf-trust.yml" sigs || exit 2
ADDR="$WHARF_ADDR"
write_registries_d "$ADDR"
for n in signed-ed signed-rsa cosigned cosign-ref; do
  pull "$work/accept.json" "$n" && ok "trust policy on: skopeo pulls $n" || { not_ok "trust policy on: pull $n"; tail -3 "$work/pull.log"; }
done
refused() { # refused NAME WHY
  if pull "$work/accept.json" "$1"; then not_ok "trust policy on: $1 was pulled"; return; fi
  check_contains "trust policy on: skopeo refused $1 (DENIED, naming the policy)" 'trust policy \"e2e-signed\"' "$(cat "$work/pull.log")"
  code="$(curl -s -o "$work/b" -w '%{http_code}' -H "Accept: $OCI_MANIFEST" "http://$ADDR/v2/e2e/$1/manifests/v1")"
  check_eq "GET $1 by tag: 403 DENIED" "403 DENIED" "$code $(jq -r '.errors[0].code' "$work/b")"
  check_contains "the refusal says why ($1)" "$2" "$(jq -r '.errors[0].message' "$work/b")"
}
refused unsigned "has no signature"
refused wrong "no key of the policy made this signature"
refused cosign-wrong "no cosign key of the policy verifies it"
check_eq "fetch by digest with push scope (open auth): 200" 200 \
  "$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $OCI_MANIFEST" "http://$ADDR/v2/e2e/unsigned/manifests/${D[unsigned]}")"
check_eq "the signature attachment itself is served" 200 \
  "$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $OCI_MANIFEST" "http://$ADDR/v2/e2e/cosigned/manifests/$sig_tag")"
check_eq "metrics: verifications by result" "1 1 1" \
  "$(metric 'wharf_trust_verifications_total{policy="e2e-signed",result="unsigned"}') $(( $(metric 'wharf_trust_verifications_total{policy="e2e-signed",result="invalid"}') > 0 )) $(( $(metric 'wharf_trust_verifications_total{policy="e2e-signed",result="verified"}') >= 4 ))"

echo "SUMMARY signatures.sh: $passed checks ok, $failed failed (sigstore signed by skopeo: $sigstore_by_skopeo)"
((failed == 0))

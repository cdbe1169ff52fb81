#!/usr/bin/env python3
"""End-to-end: OCI 1.1 subject / referrers with the oras Python library.

    REGISTRY=127.0.0.1:5000 tests/e2e/oras_referrers.py

Starts nothing. What it does:
  1. pushes an image (oras-py `push`, with an image config media type);
  2. pushes artifact A, a manifest with `artifactType`, an empty config
     and `subject` pointing at the image, by digest (blobs through oras-py,
     the manifest bytes written by this script so their digest is known);
  3. pushes artifact B with oras-py `push(subject=...)`: no `artifactType`,
     so the registry must report its config media type instead;
  4. GET /v2/<name>/referrers/<digest>: both listed, with artifactType,
     size, media type and annotations; then ?artifactType= filtering, with
     the OCI-Filters-Applied: artifactType header; a digest nobody refers to
     (200 and an empty index); deleting A removes it from the list.

oras-py (0.2.x) can push a manifest with a `subject` but has no call for the
referrers API, no `artifactType` on push and no way to read the raw manifest
bytes, so those requests go through the library's own HTTP session
(`Registry.do_request`), which carries the same auth as its pushes.

Exit status: 0 all checks passed, 1 a check failed, 2 a setup error, 77
(skipped) the registry has no referrers API (404) and is known to lack it:
E2E_REFERENCE=distribution-2.8, the reference registry, which predates OCI
1.1.
"""

import hashlib
import json
import os
import sys
import tempfile
import uuid
from urllib.parse import quote

try:
    import oras.oci
    import oras.provider
    import requests
except ImportError:  # pragma: no cover
    print("oras_referrers.py: the oras package is missing (run scripts/install-tools)", file=sys.stderr)
    sys.exit(2)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SBOM_TYPE = "application/vnd.wharf.e2e.sbom.v1+json"
SIG_CONFIG_TYPE = "application/vnd.wharf.e2e.signature.config.v1+json"
EMPTY_JSON = b"{}"

REGISTRY = os.environ.get("REGISTRY")
if not REGISTRY:
    print("oras_referrers.py: set REGISTRY=host:port of the registry under test", file=sys.stderr)
    sys.exit(2)
NS = os.environ.get("E2E_NAMESPACE", "e2e")
# A fresh repository per run: referrers accumulate across runs otherwise.
REPO = f"{NS}/referrers-{uuid.uuid4().hex[:8]}"
BASE = f"http://{REGISTRY}/v2/{REPO}"

passed = 0
failed = 0


def ok(what):
    global passed
    passed += 1
    print(f"ok   - {what}")


def not_ok(what):
    global failed
    failed += 1
    print(f"FAIL - {what}")


def check(what, cond, detail=""):
    if cond:
        ok(what)
    else:
        not_ok(f"{what}{': ' + detail if detail else ''}")
    return cond


def check_eq(what, expected, actual):
    return check(what, expected == actual, f"expected {expected!r}, got {actual!r}")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)
    return path


def finish():
    print(f"SUMMARY oras_referrers.py: {passed} checks ok, {failed} failed")
    sys.exit(1 if failed else 0)


def main():
    # oras-py retries a refused connection for minutes; find out at once.
    requests.get(f"http://{REGISTRY}/v2/", timeout=10)
    reg = oras.provider.Registry(hostname=REGISTRY, insecure=True)
    with tempfile.TemporaryDirectory(prefix="wharf-e2e-oras.") as work:
        # oras-py only pushes files below the working directory.
        os.chdir(work)
        try:
            run_checks(reg)
        finally:
            os.chdir("/")
    finish()


def run_checks(reg):
    print(f"# oras-py referrers e2e against {REGISTRY}/{REPO}")

    # ---- 1. the subject: an image pushed with oras-py --------------------
    write("layer.bin", os.urandom(3000))
    write("image-config.json", json.dumps({"architecture": "amd64", "os": "linux",
                                           "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    resp = reg.push(target=f"{REGISTRY}/{REPO}:v1", files=["layer.bin"],
                    manifest_config=f"image-config.json:{OCI_CONFIG}", quiet=True)
    if not check("oras push image", resp.status_code == 201, f"status {resp.status_code}"):
        return

    r = reg.do_request(f"{BASE}/manifests/v1", "GET", headers={"Accept": OCI_MANIFEST})
    if not check("GET image manifest", r.status_code == 200, f"status {r.status_code}"):
        return
    subject_bytes = r.content
    subject_digest = sha256(subject_bytes)
    check_eq("Docker-Content-Digest of the image", subject_digest, r.headers.get("Docker-Content-Digest"))
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=subject_digest, size=len(subject_bytes))

    # ---- 2. artifact A: artifactType + subject, pushed by digest ---------
    sbom = json.dumps({"spdxVersion": "SPDX-2.3", "name": "wharf-e2e", "nonce": uuid.uuid4().hex}).encode()
    write("sbom.json", sbom)
    write("empty.json", EMPTY_JSON)
    sbom_layer = {"mediaType": "application/spdx+json", "digest": sha256(sbom), "size": len(sbom),
                  "annotations": {"org.opencontainers.image.title": "sbom.json"}}
    empty_cfg = {"mediaType": OCI_EMPTY, "digest": sha256(EMPTY_JSON), "size": len(EMPTY_JSON)}
    container = reg.get_container(f"{REGISTRY}/{REPO}")
    for path, desc in (("sbom.json", sbom_layer), ("empty.json", empty_cfg)):
        resp = reg.upload_blob(path, container, desc)
        check(f"upload blob {path}", resp.status_code in (200, 201), f"status {resp.status_code}")

    annotations = {"org.opencontainers.image.created": "2024-01-01T00:00:00Z",
                   "org.example.wharf.e2e": "artifact-a"}
    art_a = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": empty_cfg,
        "layers": [sbom_layer],
        "subject": {"mediaType": subject.mediaType, "digest": subject.digest, "size": subject.size},
        "annotations": annotations,
    }
    a_bytes = json.dumps(art_a, separators=(",", ":")).encode()
    a_digest = sha256(a_bytes)
    r = reg.do_request(f"{BASE}/manifests/{a_digest}", "PUT", data=a_bytes,
                       headers={"Content-Type": OCI_MANIFEST})
    if not check("PUT artifact A (artifactType, subject) by digest", r.status_code == 201,
                 f"status {r.status_code}: {r.text[:300]}"):
        return
    check_eq("artifact A Docker-Content-Digest", a_digest, r.headers.get("Docker-Content-Digest"))
    subject_header = r.headers.get("OCI-Subject")

    # ---- 3. artifact B: oras-py push with subject, no artifactType -------
    write("signature.sig", os.urandom(64))
    resp = reg.push(target=f"{REGISTRY}/{REPO}:sig", files=["signature.sig"],
                    manifest_config=f"sig-config.json:{SIG_CONFIG_TYPE}",
                    subject=subject, quiet=True)
    check("oras push artifact B with subject", resp.status_code == 201, f"status {resp.status_code}")
    r = reg.do_request(f"{BASE}/manifests/sig", "GET", headers={"Accept": OCI_MANIFEST})
    b_bytes = r.content
    b_digest = sha256(b_bytes)
    check_eq("artifact B keeps its subject", subject_digest,
             (json.loads(b_bytes).get("subject") or {}).get("digest"))

    # ---- 4. referrers ----------------------------------------------------
    r = reg.do_request(f"{BASE}/referrers/{subject_digest}", "GET", headers={"Accept": OCI_INDEX})
    if r.status_code == 404 and os.environ.get("E2E_REFERENCE") == "distribution-2.8":
        print(f"# no referrers API at {REGISTRY} (404); OCI-Subject header: {subject_header!r}")
        print(f"SUMMARY oras_referrers.py: {passed} checks ok, {failed} failed, referrers skipped")
        sys.exit(1 if failed else 77)
    check_eq("OCI-Subject header on the artifact push", subject_digest, subject_header)
    if not check_eq("GET referrers status", 200, r.status_code):
        return
    check_eq("referrers Content-Type", OCI_INDEX, r.headers.get("Content-Type", "").split(";")[0].strip())
    index = r.json()
    check_eq("referrers index schemaVersion", 2, index.get("schemaVersion"))
    check_eq("referrers index mediaType", OCI_INDEX, index.get("mediaType"))
    by_digest = {m.get("digest"): m for m in index.get("manifests", [])}
    check_eq("referrers lists exactly A and B", sorted([a_digest, b_digest]), sorted(by_digest))
    a = by_digest.get(a_digest, {})
    check_eq("A: artifactType", SBOM_TYPE, a.get("artifactType"))
    check_eq("A: mediaType", OCI_MANIFEST, a.get("mediaType"))
    check_eq("A: size", len(a_bytes), a.get("size"))
    check_eq("A: annotations", annotations, a.get("annotations"))
    b = by_digest.get(b_digest, {})
    check_eq("B: artifactType falls back to config.mediaType", SIG_CONFIG_TYPE, b.get("artifactType"))
    check_eq("B: size", len(b_bytes), b.get("size"))

    # Filtering by artifactType.
    # Media types hold "+", which a query string must carry as %2B.
    r = reg.do_request(f"{BASE}/referrers/{subject_digest}?artifactType={quote(SBOM_TYPE, safe='')}", "GET",
                       headers={"Accept": OCI_INDEX})
    check_eq("filtered referrers status", 200, r.status_code)
    if r.status_code == 200:
        digests = [m.get("digest") for m in r.json().get("manifests", [])]
        check_eq("?artifactType= keeps only A", [a_digest], digests)
        check_eq("OCI-Filters-Applied header", "artifactType", r.headers.get("OCI-Filters-Applied"))
    r = reg.do_request(f"{BASE}/referrers/{subject_digest}?artifactType={quote('application/vnd.none+json', safe='')}", "GET",
                       headers={"Accept": OCI_INDEX})
    check("filter matching nothing: 200, empty list",
          r.status_code == 200 and r.json().get("manifests") == [],
          f"status {r.status_code}: {r.text[:200]}")

    # A digest nothing refers to: 200 with an empty index, never 404.
    nobody = sha256(os.urandom(32))
    r = reg.do_request(f"{BASE}/referrers/{nobody}", "GET", headers={"Accept": OCI_INDEX})
    check("referrers of an unknown digest: 200, empty list",
          r.status_code == 200 and r.json().get("manifests") == [],
          f"status {r.status_code}: {r.text[:200]}")

    # A malformed digest is a client error.
    r = reg.do_request(f"{BASE}/referrers/sha256:nothex", "GET", headers={"Accept": OCI_INDEX})
    check("referrers of a malformed digest: 400", r.status_code == 400, f"status {r.status_code}")

    # Deleting A takes it out of the list.
    r = reg.do_request(f"{BASE}/manifests/{a_digest}", "DELETE")
    if r.status_code == 202:
        ok("DELETE artifact A")
        r = reg.do_request(f"{BASE}/referrers/{subject_digest}", "GET", headers={"Accept": OCI_INDEX})
        digests = [m.get("digest") for m in r.json().get("manifests", [])] if r.status_code == 200 else None
        check_eq("referrers after deleting A", [b_digest], digests)
    else:
        not_ok(f"DELETE artifact A: status {r.status_code}: {r.text[:200]}")


if __name__ == "__main__":
    try:
        main()
    except requests.exceptions.ConnectionError as e:
        not_ok(f"cannot reach the registry: {e}")
        print(f"SUMMARY oras_referrers.py: {passed} checks ok, {failed} failed (registry unreachable)")
        sys.exit(1)

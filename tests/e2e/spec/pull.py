"""Pull: the API version check, manifests by tag and by digest (GET and HEAD,
Content-Type, Docker-Content-Digest, Content-Length, the exact bytes), blobs
(GET, HEAD, Range), and the 404s for what is not there.

Spec (distribution-spec v1.1, "Pull"): "A GET request to an existing manifest
URL MUST provide the expected manifest, with a response code that MUST be
`200 OK`"; "If the manifest is not found in the repository, the response code
MUST be `404 Not Found`"; for blobs the same, and "If present, the value of
this header [Docker-Content-Digest] MUST be a digest matching that of the
response body"; "A registry SHOULD support the `Range` request header in
accordance with RFC 9110"; HEAD "MUST return `200 OK`" and "SHOULD contain"
Docker-Content-Digest and Content-Length.
"""

import os

from .common import (MANIFEST_ACCEPT, OCI_MANIFEST, NS, REF28, ROOT, RUN, check, check_eq, check_error,
                     check_status, expect, get_manifest, image_config, manifest_for, push_blob, repo,
                     req, setup_manifest, sha256, url)


def run():
    # ---- base --------------------------------------------------------------
    r = req("GET", f"{ROOT}/v2/")
    check_status("GET /v2/", 200, r)
    check_eq("Docker-Distribution-API-Version", "registry/2.0",
             r.headers.get("Docker-Distribution-API-Version"))

    blobs()
    manifests()


def blobs():
    name = repo("pull")
    blob = os.urandom(5000)
    digest = push_blob(name, blob)
    if not digest:
        return
    r = req("HEAD", url(f"{name}/blobs/{digest}"))
    check_status("HEAD blob", 200, r)
    check_eq("HEAD blob: Content-Length", str(len(blob)), r.headers.get("Content-Length"))
    check_eq("HEAD blob: Docker-Content-Digest", digest, r.headers.get("Docker-Content-Digest"))
    check("HEAD blob: no body", r.content == b"", f"{len(r.content)} bytes")
    r = req("GET", url(f"{name}/blobs/{digest}"))
    check_status("GET blob", 200, r)
    check("GET blob: same bytes", r.content == blob, f"{len(r.content)} bytes")
    expect("GET blob: Content-Length and a Docker-Content-Digest matching the body", r,
           headers={"Content-Length": str(len(blob))}, dcd=blob)
    r = req("GET", url(f"{name}/blobs/{digest}"), headers={"Range": "bytes=100-199"})
    check("GET blob with Range: 206 and that slice",
          r.status_code == 206 and r.content == blob[100:200], f"status {r.status_code}, {len(r.content)} bytes")

    # Ranges, RFC 9110 section 14: the slice, its length, and Content-Range
    # "bytes first-last/complete-length" (or "/*" when the length is unknown).
    size = 2048
    data = os.urandom(size)
    d = push_blob(name, data)
    if d:
        for spec, first, last in (("500-1499", 500, 1499), ("500-", 500, size - 1),
                                  ("-500", size - 500, size - 1), ("2000-5000", 2000, size - 1)):
            r = req("GET", url(f"{name}/blobs/{d}"), headers={"Range": f"bytes={spec}"})
            expect(f"GET blob, Range: bytes={spec}: 206, the slice, Content-Length, Content-Range", r, status=206,
                   body=data[first:last + 1],
                   headers={"Content-Length": str(last - first + 1),
                            "Content-Range": (f"bytes {first}-{last}/{size}", f"bytes {first}-{last}/*")})
        # Beyond the end: unsatisfiable, 416 (RFC 9110 15.5.17), which SHOULD
        # carry Content-Range: bytes */length.
        r = req("GET", url(f"{name}/blobs/{d}"), headers={"Range": "bytes=5000-10000"})
        expect("GET blob, Range beyond the end (bytes=5000-10000)", r, status=416,
               gap_in=REF28, gap_keys=("broken",))
        check_eq("  416 with Content-Range: bytes */<length> (RFC 9110 SHOULD)", f"bytes */{size}",
                 r.headers.get("Content-Range"), gap_in=REF28)
        # last < first is an invalid range-spec: RFC 9110 lets a server ignore
        # the header (200 and the whole blob) or refuse it (416).
        r = req("GET", url(f"{name}/blobs/{d}"), headers={"Range": "bytes=500-0"})
        check("GET blob, invalid Range bytes=500-0: 416, or ignored (200 and the whole blob)",
              r.status_code == 416 or (r.status_code == 200 and r.content == data),
              f"status {r.status_code}, {len(r.content)} bytes")

    missing = sha256(os.urandom(16))
    check_status("HEAD unknown blob", 404, req("HEAD", url(f"{name}/blobs/{missing}")))
    check_error("GET unknown blob", 404, "BLOB_UNKNOWN", req("GET", url(f"{name}/blobs/{missing}")))
    # "If the blob is not found in the repository": a blob of another
    # repository is not in this one.
    elsewhere = repo("pull-elsewhere")
    if push_blob(elsewhere, b"only in " + elsewhere.encode()):
        d_else = sha256(b"only in " + elsewhere.encode())
        check_status("HEAD of a blob held only by another repository", 404, req("HEAD", url(f"{name}/blobs/{d_else}")))
        check_error("GET of a blob held only by another repository", 404, "BLOB_UNKNOWN",
                    req("GET", url(f"{name}/blobs/{d_else}")))


def manifests():
    name = repo("pull-manifests")
    blob = os.urandom(3000)
    config = image_config([sha256(blob)])
    if not (push_blob(name, blob) and push_blob(name, config)):
        return
    man = manifest_for(config, [blob])
    md = sha256(man)
    if not setup_manifest(name, "v1", man, OCI_MANIFEST):
        return

    for ref in ("v1", md):
        r = req("GET", url(f"{name}/manifests/{ref}"), headers={"Accept": OCI_MANIFEST})
        kind = "tag" if ref == "v1" else "digest"
        check_status(f"GET manifest by {kind}", 200, r)
        check("  same bytes", r.content == man)
        check_eq("  Content-Type", OCI_MANIFEST, r.headers.get("Content-Type", "").split(";")[0])
        check_eq("  Docker-Content-Digest", md, r.headers.get("Docker-Content-Digest"))
        # "The registry SHOULD NOT include parameters on the Content-Type header."
        expect(f"  GET manifest by {kind}: Content-Type exactly the pushed type, Content-Length", r,
               headers={"Content-Type": OCI_MANIFEST, "Content-Length": str(len(man))})
    r = req("HEAD", url(f"{name}/manifests/v1"), headers={"Accept": OCI_MANIFEST})
    check_status("HEAD manifest", 200, r)
    check_eq("HEAD manifest: Content-Length", str(len(man)), r.headers.get("Content-Length"))
    check_eq("HEAD manifest: Docker-Content-Digest", md, r.headers.get("Docker-Content-Digest"))
    r = get_manifest(name, md, "HEAD")
    expect("HEAD manifest by digest: Content-Type, Content-Length, Docker-Content-Digest, no body", r,
           headers={"Content-Type": OCI_MANIFEST, "Content-Length": str(len(man))}, dcd=md, empty_body=True)

    missing = sha256(os.urandom(16))
    check_error("GET unknown tag", 404, "MANIFEST_UNKNOWN",
                req("GET", url(f"{name}/manifests/nope"), headers={"Accept": OCI_MANIFEST}))
    check_status("HEAD unknown tag", 404, get_manifest(name, "nope", "HEAD"))
    check_status("HEAD unknown manifest", 404, req("HEAD", url(f"{name}/manifests/{missing}")))
    check_error("GET unknown manifest digest", 404, "MANIFEST_UNKNOWN", get_manifest(name, missing))
    # The spec leaves the code open here; both are sensible.
    check_error("GET manifest of an unknown repository", 404, ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"),
                req("GET", url(f"{NS}/never-pushed-{RUN}/manifests/latest"), headers={"Accept": OCI_MANIFEST}))
    # A reference that is neither a tag nor a digest ("The <reference> MUST
    # NOT be in any other format"): refused or not found.
    check_status("GET manifest sha256:baddigeststring", (400, 404),
                 req("GET", url(f"{name}/manifests/sha256:baddigeststring"), headers={"Accept": MANIFEST_ACCEPT}),
                 gap_in=REF28)

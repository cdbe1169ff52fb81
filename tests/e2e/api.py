#!/usr/bin/env python3
"""End-to-end: the distribution API over plain HTTP, check by check.

    REGISTRY=127.0.0.1:5000 tests/e2e/api.py

Starts nothing. Written from the OCI Distribution Spec v1.1 text (and the
Docker registry/2.0 behaviour clients rely on), as a black-box stand-in for
the official conformance suite, which cannot be built here (see
tests/conformance/README.md). Every check here also holds for the CNCF
registry (distribution 2.8), so `scripts/test --against distribution`
validates the checks themselves.

Covers: /v2/ and its version header; monolithic, POST-then-PUT and chunked
uploads (Content-Range, Range, upload status, out-of-order chunks, cancel);
HEAD/GET/Range on blobs; cross-repository mount; manifests by tag and by
digest (PUT, GET, HEAD, headers, exact bytes); the spec's error codes;
tag listing with ?n= / ?last= and Link pagination; _catalog; deletes.
Exit status 0 when every check passed, 1 otherwise.

Distribution 2.8 (the reference) misses a few v1.1 requirements: it accepts
an out-of-order chunk, lists tags unsorted and ignores ?n=/?last= on tags,
and treats ?n=0 as no limit. With
E2E_REFERENCE=distribution-2.8 those checks are reported as "gap" instead
of failing; against wharf they are ordinary checks.
"""

import hashlib
import json
import os
import sys
import uuid
from urllib.parse import urljoin

try:
    import requests
except ImportError:  # pragma: no cover
    print("api.py: the requests package is missing (run scripts/install-tools)", file=sys.stderr)
    sys.exit(2)

REGISTRY = os.environ.get("REGISTRY")
if not REGISTRY:
    print("api.py: set REGISTRY=host:port of the registry under test", file=sys.stderr)
    sys.exit(2)
NS = os.environ.get("E2E_NAMESPACE", "e2e")
ROOT = f"http://{REGISTRY}"
RUN = uuid.uuid4().hex[:8]
REPO = f"{NS}/api-{RUN}"
OTHER = f"{NS}/api-{RUN}-mount"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCTET = "application/octet-stream"

http = requests.Session()
TIMEOUT = 60
REFERENCE = os.environ.get("E2E_REFERENCE", "")
passed = 0
failed = 0
gaps = 0


def ok(what):
    global passed
    passed += 1
    print(f"ok   - {what}")


def not_ok(what):
    global failed
    failed += 1
    print(f"FAIL - {what}")


def check(what, cond, detail="", gap_in=None):
    """gap_in: the reference registry known to fail this check (see above)."""
    global gaps
    if cond:
        ok(what)
    elif gap_in and gap_in == REFERENCE:
        gaps += 1
        print(f"gap  - {what} (known gap in {gap_in}){': ' + detail if detail else ''}")
    else:
        not_ok(f"{what}{': ' + detail if detail else ''}")
    return bool(cond)


def check_eq(what, expected, actual, gap_in=None):
    return check(what, expected == actual, f"expected {expected!r}, got {actual!r}", gap_in)


def check_status(what, expected, resp, gap_in=None):
    """expected: one status or a tuple of them."""
    allowed = expected if isinstance(expected, tuple) else (expected,)
    return check(f"{what} -> {'/'.join(map(str, allowed))}", resp.status_code in allowed,
                 f"got {resp.status_code}: {resp.text[:300]!r}", gap_in)


def check_error(what, status, code, resp, gap_in=None):
    """A spec error: the status and, in the JSON body, the error code
    (or one of a tuple of codes)."""
    if not check_status(what, status, resp):
        return
    if resp.request.method == "HEAD":
        return
    try:
        codes = [e.get("code") for e in resp.json().get("errors", [])]
    except ValueError:
        codes = None
    wanted = code if isinstance(code, tuple) else (code,)
    check(f"{what}: error code {'/'.join(wanted)}", codes is not None and any(c in codes for c in wanted),
          f"body {resp.text[:300]!r}", gap_in)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def url(path):
    return f"{ROOT}/v2/{path}"


def location(resp):
    """The Location header made absolute (it may be relative)."""
    loc = resp.headers.get("Location")
    return urljoin(resp.url, loc) if loc else None


def with_query(loc, **params):
    sep = "&" if "?" in loc else "?"
    return loc + sep + "&".join(f"{k}={v}" for k, v in params.items())


def req(method, target, **kw):
    kw.setdefault("timeout", TIMEOUT)
    return http.request(method, target, **kw)


def push_blob(repo, data):
    """POST then PUT; returns the digest, or None."""
    r = req("POST", url(f"{repo}/blobs/uploads/"))
    if r.status_code != 202 or not location(r):
        not_ok(f"POST upload for {repo}: {r.status_code} {r.text[:200]!r}")
        return None
    d = sha256(data)
    r = req("PUT", with_query(location(r), digest=d), data=data, headers={"Content-Type": OCTET})
    if r.status_code != 201:
        not_ok(f"PUT blob {d} to {repo}: {r.status_code} {r.text[:200]!r}")
        return None
    return d


def manifest_for(config: bytes, layers):
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b in layers],
    }, separators=(",", ":")).encode()


def main():
    print(f"# distribution API checks against {REGISTRY}/{REPO}")

    # ---- base ------------------------------------------------------------
    r = req("GET", f"{ROOT}/v2/")
    check_status("GET /v2/", 200, r)
    check_eq("Docker-Distribution-API-Version", "registry/2.0",
             r.headers.get("Docker-Distribution-API-Version"))

    # ---- monolithic upload: POST then PUT --------------------------------
    blob = os.urandom(5000)
    digest = sha256(blob)
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    check_status("POST blobs/uploads/", 202, r)
    check("upload Location header", location(r) is not None)
    r = req("PUT", with_query(location(r), digest=digest), data=blob,
            headers={"Content-Type": OCTET, "Content-Length": str(len(blob))})
    check_status("PUT upload ?digest= with the body", 201, r)
    check_eq("PUT upload: Docker-Content-Digest", digest, r.headers.get("Docker-Content-Digest"))
    check("PUT upload: Location", location(r) is not None)

    r = req("HEAD", url(f"{REPO}/blobs/{digest}"))
    check_status("HEAD blob", 200, r)
    check_eq("HEAD blob: Content-Length", str(len(blob)), r.headers.get("Content-Length"))
    check_eq("HEAD blob: Docker-Content-Digest", digest, r.headers.get("Docker-Content-Digest"))
    r = req("GET", url(f"{REPO}/blobs/{digest}"))
    check_status("GET blob", 200, r)
    check("GET blob: same bytes", r.content == blob, f"{len(r.content)} bytes")
    r = req("GET", url(f"{REPO}/blobs/{digest}"), headers={"Range": "bytes=100-199"})
    check("GET blob with Range: 206 and that slice",
          r.status_code == 206 and r.content == blob[100:200], f"status {r.status_code}, {len(r.content)} bytes")

    # Single POST with ?digest= and a body: the registry may complete it (201)
    # or answer 202 and expect the usual PUT.
    blob2 = os.urandom(1000)
    d2 = sha256(blob2)
    r = req("POST", url(f"{REPO}/blobs/uploads/?digest={d2}"), data=blob2, headers={"Content-Type": OCTET})
    check_status("POST ?digest= with a body", (201, 202), r)
    if r.status_code == 202:
        r = req("PUT", with_query(location(r), digest=d2), data=blob2, headers={"Content-Type": OCTET})
        check_status("  then PUT", 201, r)
    check_status("  blob exists", 200, req("HEAD", url(f"{REPO}/blobs/{d2}")))

    # ---- chunked upload ----------------------------------------------------
    parts = [os.urandom(3000), os.urandom(2500), os.urandom(100)]
    whole = b"".join(parts)
    wd = sha256(whole)
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    check_status("chunked: POST", 202, r)
    loc = location(r)
    offset = 0
    for i, part in enumerate(parts[:2]):
        end = offset + len(part) - 1
        r = req("PATCH", loc, data=part, headers={
            "Content-Type": OCTET, "Content-Length": str(len(part)), "Content-Range": f"{offset}-{end}"})
        check_status(f"chunked: PATCH chunk {i}", 202, r)
        check_eq(f"chunked: Range after chunk {i}", f"0-{end}", r.headers.get("Range"))
        loc = location(r) or loc
        offset = end + 1
    r = req("GET", loc)
    check_status("chunked: GET upload status", 204, r)
    check_eq("chunked: upload status Range", f"0-{offset - 1}", r.headers.get("Range"))
    r = req("PUT", with_query(loc, digest=wd), data=parts[2], headers={
        "Content-Type": OCTET, "Content-Length": str(len(parts[2]))})
    check_status("chunked: closing PUT with the last chunk", 201, r)
    check_eq("chunked: Docker-Content-Digest", wd, r.headers.get("Docker-Content-Digest"))
    r = req("GET", url(f"{REPO}/blobs/{wd}"))
    check("chunked: blob is the concatenation", r.status_code == 200 and r.content == whole,
          f"status {r.status_code}, {len(r.content)} bytes")

    # A chunk that does not start where the upload stands: 416, nothing kept.
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    loc = location(r)
    r = req("PATCH", loc, data=parts[0], headers={
        "Content-Type": OCTET, "Content-Length": str(len(parts[0])), "Content-Range": f"0-{len(parts[0]) - 1}"})
    loc = location(r) or loc
    r = req("PATCH", loc, data=b"x" * 10, headers={
        "Content-Type": OCTET, "Content-Length": "10",
        "Content-Range": f"{len(parts[0]) + 5}-{len(parts[0]) + 14}"})
    check_status("chunked: out-of-order chunk", 416, r, gap_in="distribution-2.8")
    r = req("GET", loc)
    check_eq("chunked: offset unchanged after the refused chunk", f"0-{len(parts[0]) - 1}",
             r.headers.get("Range"), gap_in="distribution-2.8")
    req("DELETE", loc)

    # ---- upload errors and cancel -------------------------------------------
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    loc = location(r)
    r = req("PUT", with_query(loc, digest=sha256(b"something else")), data=b"not that",
            headers={"Content-Type": OCTET})
    check_error("PUT with a digest that does not match", 400, "DIGEST_INVALID", r)

    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    loc = location(r)
    check_status("DELETE upload (cancel)", 204, req("DELETE", loc))
    check_error("GET cancelled upload", 404, "BLOB_UPLOAD_UNKNOWN", req("GET", loc))

    missing = sha256(os.urandom(16))
    check_status("HEAD unknown blob", 404, req("HEAD", url(f"{REPO}/blobs/{missing}")))
    check_error("GET unknown blob", 404, "BLOB_UNKNOWN", req("GET", url(f"{REPO}/blobs/{missing}")))

    # ---- cross-repository mount ------------------------------------------
    r = req("POST", url(f"{OTHER}/blobs/uploads/?mount={digest}&from={REPO}"))
    check_status("mount from another repository", 201, r)
    check_eq("mount: Docker-Content-Digest", digest, r.headers.get("Docker-Content-Digest"))
    check("mount: Location", location(r) is not None)
    r = req("GET", url(f"{OTHER}/blobs/{digest}"))
    check("mounted blob readable in the new repository", r.status_code == 200 and r.content == blob,
          f"status {r.status_code}")
    r = req("POST", url(f"{OTHER}/blobs/uploads/?mount={missing}&from={REPO}"))
    check_status("mount of an unknown blob falls back to an upload", 202, r)
    if r.status_code == 202 and location(r):
        req("DELETE", location(r))

    # ---- manifests --------------------------------------------------------
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(blob)]}}).encode()
    cd = push_blob(REPO, config)
    man = manifest_for(config, [blob])
    md = sha256(man)
    r = req("PUT", url(f"{REPO}/manifests/v1"), data=man, headers={"Content-Type": OCI_MANIFEST})
    check_status("PUT manifest by tag", 201, r)
    check_eq("PUT manifest: Docker-Content-Digest", md, r.headers.get("Docker-Content-Digest"))
    check("PUT manifest: Location", location(r) is not None)

    for ref in ("v1", md):
        r = req("GET", url(f"{REPO}/manifests/{ref}"), headers={"Accept": OCI_MANIFEST})
        kind = "tag" if ref == "v1" else "digest"
        check_status(f"GET manifest by {kind}", 200, r)
        check("  same bytes", r.content == man)
        check_eq("  Content-Type", OCI_MANIFEST, r.headers.get("Content-Type", "").split(";")[0])
        check_eq("  Docker-Content-Digest", md, r.headers.get("Docker-Content-Digest"))
    r = req("HEAD", url(f"{REPO}/manifests/v1"), headers={"Accept": OCI_MANIFEST})
    check_status("HEAD manifest", 200, r)
    check_eq("HEAD manifest: Content-Length", str(len(man)), r.headers.get("Content-Length"))
    check_eq("HEAD manifest: Docker-Content-Digest", md, r.headers.get("Docker-Content-Digest"))

    r = req("PUT", url(f"{REPO}/manifests/{md}"), data=man, headers={"Content-Type": OCI_MANIFEST})
    check_status("PUT manifest by its digest", 201, r)

    ghost = manifest_for(config, [os.urandom(64)])
    r = req("PUT", url(f"{REPO}/manifests/ghost"), data=ghost, headers={"Content-Type": OCI_MANIFEST})
    check_error("PUT manifest naming a missing layer", 400, "MANIFEST_BLOB_UNKNOWN", r)
    r = req("PUT", url(f"{REPO}/manifests/bad"), data=b"{not json", headers={"Content-Type": OCI_MANIFEST})
    check_error("PUT malformed manifest", 400, "MANIFEST_INVALID", r)
    check_error("GET unknown tag", 404, "MANIFEST_UNKNOWN",
                req("GET", url(f"{REPO}/manifests/nope"), headers={"Accept": OCI_MANIFEST}))
    check_status("HEAD unknown manifest", 404, req("HEAD", url(f"{REPO}/manifests/{missing}")))
    # The spec leaves the code open here; both are sensible.
    check_error("GET manifest of an unknown repository", 404, ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"),
                req("GET", url(f"{NS}/never-pushed-{RUN}/manifests/latest"), headers={"Accept": OCI_MANIFEST}))

    # ---- tags ---------------------------------------------------------------
    tags = ["v1", "a", "b", "c", "d"]
    for t in tags[1:]:
        r = req("PUT", url(f"{REPO}/manifests/{t}"), data=man, headers={"Content-Type": OCI_MANIFEST})
        if r.status_code != 201:
            not_ok(f"PUT tag {t}: {r.status_code}")
    r = req("GET", url(f"{REPO}/tags/list"))
    check_status("GET tags/list", 200, r)
    listed = r.json() if r.status_code == 200 else {}
    check_eq("tags/list: name", REPO, listed.get("name"))
    check_eq("tags/list: every tag", sorted(tags), sorted(listed.get("tags") or []))
    check_eq("tags/list: in lexical order", sorted(tags), listed.get("tags"), gap_in="distribution-2.8")

    r = req("GET", url(f"{REPO}/tags/list?n=2"))
    check_eq("tags/list?n=2", ["a", "b"], r.json().get("tags") if r.status_code == 200 else r.status_code,
             gap_in="distribution-2.8")
    link = r.headers.get("Link", "")
    check("tags/list?n=2: Link rel=\"next\"", 'rel="next"' in link, f"Link {link!r}", gap_in="distribution-2.8")
    r = req("GET", url(f"{REPO}/tags/list?n=2&last=b"))
    check_eq("tags/list?n=2&last=b", ["c", "d"], r.json().get("tags") if r.status_code == 200 else r.status_code,
             gap_in="distribution-2.8")
    r = req("GET", url(f"{REPO}/tags/list?n=0"))
    check("tags/list?n=0: empty list, no Link",
          r.status_code == 200 and not r.json().get("tags") and "Link" not in r.headers,
          f"status {r.status_code}: {r.text[:200]!r}, Link {r.headers.get('Link')!r}", gap_in="distribution-2.8")
    if link.startswith("<") and ">" in link:
        r = req("GET", urljoin(ROOT, link[1:link.index(">")]))
        check_eq("following the Link header", ["c", "d"], r.json().get("tags") if r.status_code == 200 else r.status_code)

    # ---- catalog ------------------------------------------------------------
    r = req("GET", f"{ROOT}/v2/_catalog?n=1000")
    check_status("GET _catalog", 200, r)
    repos = r.json().get("repositories", []) if r.status_code == 200 else []
    check("_catalog lists the repositories pushed here", REPO in repos and OTHER in repos,
          f"{len(repos)} listed")
    r = req("GET", f"{ROOT}/v2/_catalog?n=1")
    check("_catalog?n=1: one entry and a Link",
          r.status_code == 200 and len(r.json().get("repositories", [])) == 1 and 'rel="next"' in r.headers.get("Link", ""),
          f"status {r.status_code}, Link {r.headers.get('Link')!r}")

    # ---- deletes ------------------------------------------------------------
    r = req("DELETE", url(f"{REPO}/manifests/{md}"))
    check_status("DELETE manifest by digest", 202, r)
    check_error("GET deleted manifest by digest", 404, "MANIFEST_UNKNOWN",
                req("GET", url(f"{REPO}/manifests/{md}"), headers={"Accept": OCI_MANIFEST}))
    check_status("GET a tag of the deleted manifest", 404,
                 req("GET", url(f"{REPO}/manifests/v1"), headers={"Accept": OCI_MANIFEST}))
    check_status("DELETE blob", 202, req("DELETE", url(f"{REPO}/blobs/{wd}")))
    check_status("HEAD deleted blob", 404, req("HEAD", url(f"{REPO}/blobs/{wd}")))
    check_status("DELETE unknown blob", 404, req("DELETE", url(f"{REPO}/blobs/{missing}")))
    if cd:
        check_status("the config blob is still there", 200, req("HEAD", url(f"{REPO}/blobs/{cd}")))

    extra = f", {gaps} known gaps of {REFERENCE}" if gaps else ""
    print(f"SUMMARY api.py: {passed} checks ok, {failed} failed{extra}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    try:
        main()
    except requests.exceptions.ConnectionError as e:
        not_ok(f"cannot reach the registry: {e}")
        print(f"SUMMARY api.py: {passed} checks ok, {failed} failed (registry unreachable)")
        sys.exit(1)

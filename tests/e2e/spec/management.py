"""Content management: deleting tags, manifests (by digest) and blobs,
cancelling an upload session, and referrers after a delete.

Spec (distribution-spec v1.1, "Content Management"): deleting a tag "Upon
success, the registry MUST respond with a `202 Accepted` code. If tag deletion
is disabled, the registry MUST respond with either a `400 Bad Request` or a
`405 Method Not Allowed`. Once deleted, a `GET` to
`/v2/<name>/manifests/<tag>` will return a 404."; deleting a manifest: "202
Accepted"; "If the repository does not exist, the response MUST return `404
Not Found`"; "Once deleted, a `GET` to `/v2/<name>/manifests/<digest>` and any
tag pointing to that digest will return a 404."; deleting a blob: "202
Accepted"; "If the blob is not found, a `404 Not Found` code MUST be
returned". Cancelling an upload: DELETE on the session, 204 (the conformance
suite's "post cancel").
"""

import os

from .common import (EMPTY_JSON, OCI_EMPTY, OCI_MANIFEST, OCTET, REF28, NS, RUN, check, check_error,
                     check_status, descriptor, expect, get_manifest, image_config, json_bytes, location,
                     manifest_for, push_blob, repo, req, setup_manifest, sha256, url,
                     with_query)

REPO = repo("manage")


def run():
    tag_delete()
    manifest_and_blob_delete()
    referrer_delete()
    upload_cancel()


def tag_delete():
    name = repo("manage-tags")
    blob = os.urandom(1000)
    config = image_config([sha256(blob)])
    if not (push_blob(name, blob) and push_blob(name, config)):
        return
    man = manifest_for(config, [blob])
    md = sha256(man)
    if not (setup_manifest(name, "t1", man, OCI_MANIFEST) and setup_manifest(name, "t2", man, OCI_MANIFEST)):
        return
    r = req("DELETE", url(f"{name}/manifests/t1"))
    check_status("DELETE /manifests/<tag>", 202, r, gap_in=REF28)
    if r.status_code in (400, 405):
        check(f"  refused as disabled ({r.status_code}), which the spec allows", True)
        return
    check_error("GET the deleted tag", 404, "MANIFEST_UNKNOWN", get_manifest(name, "t1"))
    check_status("HEAD the deleted tag", 404, get_manifest(name, "t1", "HEAD"))
    expect("the other tag of that manifest is untouched", get_manifest(name, "t2"), body=man)
    expect("the manifest is still there by digest", get_manifest(name, md), body=man)
    r = req("GET", url(f"{name}/tags/list"))
    check("tags/list no longer lists the deleted tag",
          r.status_code == 200 and "t1" not in (r.json().get("tags") or []) and "t2" in (r.json().get("tags") or []),
          f"status {r.status_code}: {r.text[:200]!r}")
    check_error("DELETE the deleted tag again", 404, "MANIFEST_UNKNOWN", req("DELETE", url(f"{name}/manifests/t1")))


def manifest_and_blob_delete():
    blob = os.urandom(5000)
    parts = [os.urandom(3000), os.urandom(2500)]
    whole = b"".join(parts)
    config = image_config([sha256(blob)])
    cd = push_blob(REPO, config)
    wd = push_blob(REPO, whole)
    if not (push_blob(REPO, blob) and cd and wd):
        return
    man = manifest_for(config, [blob])
    md = sha256(man)
    if not setup_manifest(REPO, "v1", man, OCI_MANIFEST):
        return
    missing = sha256(os.urandom(16))

    r = req("DELETE", url(f"{REPO}/manifests/{md}"))
    check_status("DELETE manifest by digest", 202, r)
    check_error("GET deleted manifest by digest", 404, "MANIFEST_UNKNOWN",
                req("GET", url(f"{REPO}/manifests/{md}"), headers={"Accept": OCI_MANIFEST}))
    check_status("GET a tag of the deleted manifest", 404,
                 req("GET", url(f"{REPO}/manifests/v1"), headers={"Accept": OCI_MANIFEST}))
    check_status("HEAD deleted manifest by digest", 404, get_manifest(REPO, md, "HEAD"))
    check_error("DELETE the deleted manifest again", 404, "MANIFEST_UNKNOWN", req("DELETE", url(f"{REPO}/manifests/{md}")))
    check_error("DELETE a manifest digest never pushed", 404, "MANIFEST_UNKNOWN",
                req("DELETE", url(f"{REPO}/manifests/{missing}")))
    check_status("DELETE a manifest in a repository that does not exist", 404,
                 req("DELETE", url(f"{NS}/never-pushed-{RUN}/manifests/{md}")))

    check_status("DELETE blob", 202, req("DELETE", url(f"{REPO}/blobs/{wd}")))
    check_status("HEAD deleted blob", 404, req("HEAD", url(f"{REPO}/blobs/{wd}")))
    check_error("GET deleted blob", 404, "BLOB_UNKNOWN", req("GET", url(f"{REPO}/blobs/{wd}")))
    check_status("DELETE unknown blob", 404, req("DELETE", url(f"{REPO}/blobs/{missing}")))
    if cd:
        check_status("the config blob is still there", 200, req("HEAD", url(f"{REPO}/blobs/{cd}")))


def referrer_delete():
    """A deleted referrer leaves the subject's referrers list."""
    name = repo("manage-referrers")
    layer = os.urandom(100)
    config = image_config([sha256(layer)])
    if not (push_blob(name, layer) and push_blob(name, config) and push_blob(name, EMPTY_JSON)):
        return
    subj = manifest_for(config, [layer])
    if not setup_manifest(name, "subject", subj, OCI_MANIFEST):
        return
    art = json_bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.wharf.e2e.note",
                      "config": descriptor(OCI_EMPTY, EMPTY_JSON, with_data=True),
                      "layers": [descriptor(OCI_EMPTY, EMPTY_JSON)],
                      "subject": descriptor(OCI_MANIFEST, subj)})
    ad = sha256(art)
    if not setup_manifest(name, ad, art):
        return
    r = req("GET", url(f"{name}/referrers/{sha256(subj)}"))
    listed = [m.get("digest") for m in r.json().get("manifests", [])] if r.status_code == 200 else []
    check("referrer listed before the delete", ad in listed, f"status {r.status_code}, {listed}", gap_in=REF28)
    check_status("DELETE the referrer by digest", 202, req("DELETE", url(f"{name}/manifests/{ad}")))
    r = req("GET", url(f"{name}/referrers/{sha256(subj)}"))
    expect("referrers after the delete: 200, an empty list", r, gap_in=REF28)
    if r.status_code == 200:
        check("  the deleted referrer is gone", r.json().get("manifests") == [], r.text[:300], gap_in=REF28)
    # Deleting the subject leaves the referrers API answering (200, empty).
    check_status("DELETE the subject", 202, req("DELETE", url(f"{name}/manifests/{sha256(subj)}")))
    r = req("GET", url(f"{name}/referrers/{sha256(subj)}"))
    expect("referrers of a deleted subject: 200", r, headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
           gap_in=REF28)


def upload_cancel():
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    loc = location(r)
    check_status("DELETE upload (cancel)", 204, req("DELETE", loc))
    check_error("GET cancelled upload", 404, "BLOB_UPLOAD_UNKNOWN", req("GET", loc))
    check_error("PATCH to a cancelled upload", 404, "BLOB_UPLOAD_UNKNOWN",
                req("PATCH", loc, data=b"late", headers={"Content-Type": OCTET}))
    data = os.urandom(100)
    check_error("PUT to a cancelled upload", 404, "BLOB_UPLOAD_UNKNOWN",
                req("PUT", with_query(loc, digest=sha256(data)), data=data, headers={"Content-Type": OCTET}))

    # Cancelled after a chunk: nothing becomes a blob.
    data = os.urandom(2000)
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    r = req("PATCH", location(r), data=data, headers={"Content-Type": OCTET})
    loc = location(r)
    check_status("DELETE an upload holding a chunk", 204, req("DELETE", loc))
    check_status("  no blob from the cancelled bytes", 404, req("HEAD", url(f"{REPO}/blobs/{sha256(data)}")))
    check_error("DELETE an upload that does not exist", 404, "BLOB_UPLOAD_UNKNOWN", req("DELETE", loc))

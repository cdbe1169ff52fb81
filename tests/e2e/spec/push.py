"""Push: blob uploads (monolithic POST then PUT, single POST with ?digest=,
streamed PATCH, chunked PATCH with Content-Range, upload status, out-of-order
chunks, bad digests), sha512 blobs, cross-repository mounts (with `from`,
without it, of a blob that exists nowhere) and manifest PUTs.

Spec (distribution-spec v1.1, "Push"): POST /v2/<name>/blobs/uploads/ "MUST
have a code of `202 Accepted`, and MUST include" Location; the closing PUT
"MUST be `201 Created`" with a Location that is "a pullable blob URL"; each
chunk "MUST have a `202 Accepted` response code, and MUST have" Location and
`Range: 0-<end-of-range>`; "If a chunk is uploaded out of order, the registry
MUST respond with a `416`"; the upload status GET "MUST be a `204 No Content`"
with Location and Range; a mount "MUST be `201 Created`", else the registry
"SHOULD return a `202`" and the upload session has begun; "The registry MAY
treat the `from` parameter as optional"; a manifest PUT "MUST return `201
Created`" with Location, and its Docker-Content-Digest "MUST be equal to the
client provided digest"; "The registry MUST store the manifest in the exact
byte representation provided by the client."
"""

import json
import os

from .common import (OCI_MANIFEST, OCTET, REF28, SPARSE, check, check_eq, check_error, check_status,
                     digest, expect, get_manifest, image_config, location, manifest_for, note, push_blob,
                     put_manifest, repo, req, sha256, short, url, with_query)

REPO = repo("push")
OTHER = repo("push-mount")


def run():
    monolithic()
    streamed()
    chunked()
    bad_digests()
    for algo in ("sha256", "sha512"):
        every_upload_path(algo)
    mounts()
    manifests()


def pullable(what, loc, data):
    """A Location that MUST be "a pullable blob URL"."""
    if not loc:
        return check(f"{what}: Location", False, "no Location header")
    return expect(f"{what}: GET Location gives the blob", req("GET", loc), body=data)


def monolithic():
    blob = os.urandom(5000)
    d = sha256(blob)
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    check_status("POST blobs/uploads/", 202, r)
    check("upload Location header", location(r) is not None)
    r = req("PUT", with_query(location(r), digest=d), data=blob,
            headers={"Content-Type": OCTET, "Content-Length": str(len(blob))})
    check_status("PUT upload ?digest= with the body", 201, r)
    check_eq("PUT upload: Docker-Content-Digest", d, r.headers.get("Docker-Content-Digest"))
    check("PUT upload: Location", location(r) is not None)
    pullable("PUT upload", location(r), blob)

    # Single POST with ?digest= and a body: the registry may complete it (201)
    # or answer 202 and expect the usual PUT.
    blob2 = os.urandom(1000)
    d2 = sha256(blob2)
    r = req("POST", url(f"{REPO}/blobs/uploads/?digest={d2}"), data=blob2, headers={"Content-Type": OCTET})
    check_status("POST ?digest= with a body", (201, 202), r)
    if r.status_code == 202:
        note("single POST answered 202 (allowed: the registry does not take the blob in the POST)")
        r = req("PUT", with_query(location(r), digest=d2), data=blob2, headers={"Content-Type": OCTET})
        check_status("  then PUT", 201, r)
    pullable("  single POST", location(r), blob2)
    check_status("  blob exists", 200, req("HEAD", url(f"{REPO}/blobs/{d2}")))


def streamed():
    """POST, one PATCH without Content-Range (what docker and containerd do),
    then a PUT with no body."""
    blob = os.urandom(7000)
    d = sha256(blob)
    r = req("POST", url(f"{REPO}/blobs/uploads/"), headers={"Content-Length": "0"})
    if not check_status("streamed: POST", 202, r):
        return
    r = req("PATCH", location(r), data=blob, headers={"Content-Type": OCTET})
    expect("streamed: PATCH without Content-Range", r, status=202,
           headers={"Range": f"0-{len(blob) - 1}"})
    check("streamed: PATCH Location", location(r) is not None)
    r = req("PUT", with_query(location(r), digest=d), headers={"Content-Type": OCTET})
    expect("streamed: closing PUT with no body", r, status=201, dcd=d)
    pullable("streamed: PUT", location(r), blob)


def chunk_sizes(post_resp, default):
    """Chunk size honouring OCI-Chunk-Min-Length ("the size of each chunk,
    except for the final chunk, SHOULD be greater or equal to that value")."""
    try:
        return max(default, int(post_resp.headers.get("OCI-Chunk-Min-Length", "0")))
    except ValueError:
        return default


def patch_chunk(loc, data, start):
    end = start + len(data) - 1
    return req("PATCH", loc, data=data, headers={
        "Content-Type": OCTET, "Content-Length": str(len(data)), "Content-Range": f"{start}-{end}"})


def chunked():
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    check_status("chunked: POST", 202, r)
    loc = location(r)
    size = chunk_sizes(r, 3000)
    parts = [os.urandom(size), os.urandom(size - 500), os.urandom(100)]
    whole = b"".join(parts)
    wd = sha256(whole)
    r = req("GET", loc)
    expect("chunked: upload status of a new session", r, status=204)
    check("  Range starts at 0- (nothing uploaded yet)", (r.headers.get("Range") or "").startswith("0-"),
          f"Range {r.headers.get('Range')!r}")
    check("  Location", location(r) is not None)
    offset = 0
    for i, part in enumerate(parts[:2]):
        end = offset + len(part) - 1
        r = patch_chunk(loc, part, offset)
        check_status(f"chunked: PATCH chunk {i}", 202, r)
        check_eq(f"chunked: Range after chunk {i}", f"0-{end}", r.headers.get("Range"))
        check(f"chunked: Location after chunk {i}", location(r) is not None)
        loc = location(r) or loc
        offset = end + 1
    r = req("GET", loc)
    check_status("chunked: GET upload status", 204, r)
    check_eq("chunked: upload status Range", f"0-{offset - 1}", r.headers.get("Range"))
    check("chunked: upload status Location", location(r) is not None)
    loc = location(r) or loc
    r = req("PUT", with_query(loc, digest=wd), data=parts[2], headers={
        "Content-Type": OCTET, "Content-Length": str(len(parts[2]))})
    check_status("chunked: closing PUT with the last chunk", 201, r)
    check_eq("chunked: Docker-Content-Digest", wd, r.headers.get("Docker-Content-Digest"))
    pullable("chunked: closing PUT", location(r), whole)
    r = req("GET", url(f"{REPO}/blobs/{wd}"))
    check("chunked: blob is the concatenation", r.status_code == 200 and r.content == whole,
          f"status {r.status_code}, {len(r.content)} bytes")

    # Every chunk by PATCH, then a PUT with no body.
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    loc = location(r)
    size = chunk_sizes(r, 2000)
    parts = [os.urandom(size), os.urandom(size), os.urandom(777)]
    whole = b"".join(parts)
    offset = 0
    good = True
    for i, part in enumerate(parts):
        r = patch_chunk(loc, part, offset)
        good &= expect(f"chunked (all PATCH): chunk {i}", r, status=202,
                       headers={"Range": f"0-{offset + len(part) - 1}"})
        loc = location(r) or loc
        offset += len(part)
    r = req("PUT", with_query(loc, digest=sha256(whole)), headers={"Content-Type": OCTET})
    expect("chunked (all PATCH): closing PUT with no body", r, status=201, dcd=sha256(whole))
    pullable("chunked (all PATCH)", location(r), whole)

    # A chunk that does not start where the upload stands: 416, nothing kept.
    parts = [os.urandom(3000)]
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    loc = location(r)
    r = patch_chunk(loc, parts[0], 0)
    loc = location(r) or loc
    r = req("PATCH", loc, data=b"x" * 10, headers={
        "Content-Type": OCTET, "Content-Length": "10",
        "Content-Range": f"{len(parts[0]) + 5}-{len(parts[0]) + 14}"})
    check_status("chunked: out-of-order chunk", 416, r, gap_in="distribution-2.8")
    r = req("GET", loc)
    check_eq("chunked: offset unchanged after the refused chunk", f"0-{len(parts[0]) - 1}",
             r.headers.get("Range"), gap_in="distribution-2.8")
    req("DELETE", loc)

    # Out of order, recovered as a client would: GET the status after the
    # 416, carry on from the Range it gives, finish, and get the right blob.
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    loc = location(r)
    size = chunk_sizes(r, 1500)
    parts = [os.urandom(size), os.urandom(size), os.urandom(size - 5)]
    whole = b"".join(parts)
    r = patch_chunk(loc, parts[0], 0)
    loc = location(r) or loc
    r = patch_chunk(loc, parts[2], 2 * size)  # skips the second chunk
    check_status("chunked: chunk skipping ahead", 416, r, gap_in=REF28)
    r = patch_chunk(loc, parts[0], 0)  # goes back to the start
    check_status("chunked: chunk going back to 0", 416, r, gap_in=REF28)
    r = req("GET", loc)
    expect("chunked: upload status after the 416s", r, status=204, headers={"Range": f"0-{size - 1}"},
           gap_in=REF28)
    loc = location(r) or loc
    if r.headers.get("Range") == f"0-{size - 1}":
        r = patch_chunk(loc, parts[1], size)
        check_status("chunked: the right chunk after recovering", 202, r)
        loc = location(r) or loc
        r = req("PUT", with_query(loc, digest=sha256(whole)), data=parts[2], headers={"Content-Type": OCTET})
        expect("chunked: closing PUT after recovering", r, status=201, dcd=sha256(whole))
        pullable("chunked after recovering", location(r), whole)
    else:
        req("DELETE", loc)


def bad_digests():
    """Content that does not match the digest the client names: 400
    DIGEST_INVALID ("provided digest did not match uploaded content") on
    every upload path, and no blob under that digest."""
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    loc = location(r)
    r = req("PUT", with_query(loc, digest=sha256(b"something else")), data=b"not that",
            headers={"Content-Type": OCTET})
    check_error("PUT with a digest that does not match", 400, "DIGEST_INVALID", r)

    claimed = sha256(os.urandom(64))
    body = os.urandom(3000)
    r = req("POST", url(f"{REPO}/blobs/uploads/?digest={claimed}"), data=body, headers={"Content-Type": OCTET})
    if r.status_code == 202:
        r = req("PUT", with_query(location(r), digest=claimed), data=body, headers={"Content-Type": OCTET})
    check_error("bad digest, single POST (or its PUT)", 400, "DIGEST_INVALID", r)

    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    r = req("PATCH", location(r), data=body, headers={"Content-Type": OCTET})
    r = req("PUT", with_query(location(r), digest=claimed), headers={"Content-Type": OCTET})
    check_error("bad digest, streamed PATCH then PUT", 400, "DIGEST_INVALID", r)

    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    r = patch_chunk(location(r), body[:1000], 0)
    r = req("PUT", with_query(location(r), digest=claimed), data=body[1000:],
            headers={"Content-Type": OCTET, "Content-Range": f"1000-{len(body) - 1}"})
    check_error("bad digest, chunked with the last chunk in the PUT", 400, "DIGEST_INVALID", r)
    check_status("  nothing stored under the claimed digest", 404, req("HEAD", url(f"{REPO}/blobs/{claimed}")))


def every_upload_path(algo):
    """Each upload path with `algo` digests (?digest=<algo>:...), then HEAD and
    GET by that digest. The image spec registers sha256 and sha512."""
    gap_in = REF28 if algo == "sha512" else None
    paths = {}
    # POST then PUT
    data = os.urandom(1500)
    d = digest(data, algo)
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    r = req("PUT", with_query(location(r), digest=d), data=data, headers={"Content-Type": OCTET})
    paths["POST then PUT"] = (expect(f"{algo}: POST then PUT ?digest={short(d)}", r, status=201, gap_in=gap_in),
                              d, data)
    # single POST
    data = os.urandom(1500)
    d = digest(data, algo)
    r = req("POST", url(f"{REPO}/blobs/uploads/?digest={d}"), data=data, headers={"Content-Type": OCTET})
    if r.status_code == 202:
        r = req("PUT", with_query(location(r), digest=d), data=data, headers={"Content-Type": OCTET})
    paths["single POST"] = (expect(f"{algo}: single POST ?digest={short(d)} (or its PUT)", r, status=201,
                                   gap_in=gap_in), d, data)
    # streamed
    data = os.urandom(1500)
    d = digest(data, algo)
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    r = req("PATCH", location(r), data=data, headers={"Content-Type": OCTET})
    r = req("PUT", with_query(location(r), digest=d), headers={"Content-Type": OCTET})
    paths["streamed"] = (expect(f"{algo}: streamed PATCH then PUT ?digest={short(d)}", r, status=201,
                                gap_in=gap_in), d, data)
    # chunked
    data = os.urandom(3000)
    d = digest(data, algo)
    r = req("POST", url(f"{REPO}/blobs/uploads/"))
    r = patch_chunk(location(r), data[:2000], 0)
    r = req("PUT", with_query(location(r), digest=d), data=data[2000:], headers={"Content-Type": OCTET})
    paths["chunked"] = (expect(f"{algo}: chunked PATCH then PUT ?digest={short(d)}", r, status=201,
                               gap_in=gap_in), d, data)
    for path, (pushed, d, data) in paths.items():
        if not pushed:
            continue
        expect(f"{algo} ({path}): HEAD by digest: Content-Length, Docker-Content-Digest", req(
            "HEAD", url(f"{REPO}/blobs/{d}")), headers={"Content-Length": str(len(data))}, dcd=data,
            empty_body=True, gap_in=gap_in)
        expect(f"{algo} ({path}): GET by digest: the bytes, Docker-Content-Digest matching them", req(
            "GET", url(f"{REPO}/blobs/{d}")), body=data, dcd=data, gap_in=gap_in)


def mounts():
    blob = os.urandom(4000)
    d = push_blob(REPO, blob)
    if not d:
        return
    missing = sha256(os.urandom(16))
    r = req("POST", url(f"{OTHER}/blobs/uploads/?mount={d}&from={REPO}"))
    check_status("mount from another repository", 201, r)
    check_eq("mount: Docker-Content-Digest", d, r.headers.get("Docker-Content-Digest"))
    check("mount: Location", location(r) is not None)
    pullable("mount", location(r), blob)
    r = req("GET", url(f"{OTHER}/blobs/{d}"))
    check("mounted blob readable in the new repository", r.status_code == 200 and r.content == blob,
          f"status {r.status_code}")
    expect("mounted blob: HEAD in the new repository", req("HEAD", url(f"{OTHER}/blobs/{d}")),
           headers={"Content-Length": str(len(blob))}, dcd=d)
    r = req("POST", url(f"{OTHER}/blobs/uploads/?mount={missing}&from={REPO}"))
    check_status("mount of an unknown blob falls back to an upload", 202, r)
    if r.status_code == 202 and location(r):
        req("DELETE", location(r))

    # sha512: mounted by its sha512 digest.
    data = os.urandom(1000)
    d512 = push_blob(REPO, data, "sha512")
    if d512:
        r = req("POST", url(f"{OTHER}/blobs/uploads/?mount={d512}&from={REPO}"))
        expect("mount a sha512 blob from another repository", r, status=201, gap_in=REF28)
        expect("  readable there by its sha512 digest", req("GET", url(f"{OTHER}/blobs/{d512}")), body=data,
               gap_in=REF28)

    # Without `from`: "The registry MAY treat the from parameter as optional,
    # and it MAY cross-mount the blob if it can be found." Either a mount
    # (201) or an upload session (202) that then takes the blob.
    anon = repo("push-anon")
    r = req("POST", url(f"{anon}/blobs/uploads/?mount={d}"))
    if check_status("mount without `from`", (201, 202), r):
        if r.status_code == 201:
            check_eq("  mounted: Docker-Content-Digest", d, r.headers.get("Docker-Content-Digest"))
            pullable("  mounted without from", location(r), blob)
        else:
            note("mount without `from` answered 202: the registry does not mount without a source (allowed)")
            check("  202 with a Location", location(r) is not None)
            r = req("PUT", with_query(location(r), digest=d), data=blob, headers={"Content-Type": OCTET})
            expect("  the session takes the blob: PUT", r, status=201)
        expect("  blob readable in the repository", req("GET", url(f"{anon}/blobs/{d}")), body=blob)

    # Anonymous mount of a blob that exists nowhere: not mounted, the 202
    # session is a normal upload.
    data = os.urandom(1200)
    dn = sha256(data)
    r = req("POST", url(f"{anon}/blobs/uploads/?mount={dn}"))
    if check_status("mount without `from` of a blob that exists nowhere", 202, r):
        check("  Location of the upload session", location(r) is not None)
        r = req("PUT", with_query(location(r), digest=dn), data=data, headers={"Content-Type": OCTET})
        expect("  the session is a normal upload: PUT", r, status=201)
        expect("  blob readable", req("GET", url(f"{anon}/blobs/{dn}")), body=data)


def manifests():
    blob = os.urandom(5000)
    config = image_config([sha256(blob)])
    if not (push_blob(REPO, blob) and push_blob(REPO, config)):
        return
    man = manifest_for(config, [blob])
    md = sha256(man)
    r = put_manifest(REPO, "v1", man, OCI_MANIFEST)
    check_status("PUT manifest by tag", 201, r)
    check_eq("PUT manifest: Docker-Content-Digest", md, r.headers.get("Docker-Content-Digest"))
    check("PUT manifest: Location", location(r) is not None)
    if location(r):
        expect("PUT manifest: GET Location gives the manifest", req(
            "GET", location(r), headers={"Accept": OCI_MANIFEST}), body=man,
            headers={"Content-Type": OCI_MANIFEST})

    r = put_manifest(REPO, md, man, OCI_MANIFEST)
    check_status("PUT manifest by its digest", 201, r)
    expect("PUT manifest by digest: Docker-Content-Digest is that digest", r, status=201, dcd=md)
    check("PUT manifest by digest: Location", location(r) is not None)

    # Byte for byte: whitespace and key order are the client's.
    pretty = json.dumps({"layers": json.loads(man)["layers"], "config": json.loads(man)["config"],
                         "mediaType": OCI_MANIFEST, "schemaVersion": 2}, indent=3).encode() + b"\n"
    r = put_manifest(REPO, "pretty", pretty, OCI_MANIFEST)
    expect("PUT an indented manifest with its keys reordered", r, status=201, dcd=sha256(pretty))
    expect("  GET gives those exact bytes", get_manifest(REPO, "pretty"), body=pretty, dcd=sha256(pretty))

    if SPARSE:
        note("E2E_SPARSE_MANIFESTS=1: a manifest naming a missing layer is accepted (checked in the draft area)")
    else:
        ghost = manifest_for(config, [os.urandom(64)])
        r = put_manifest(REPO, "ghost", ghost, OCI_MANIFEST)
        check_error("PUT manifest naming a missing layer", 400, "MANIFEST_BLOB_UNKNOWN", r)
    r = put_manifest(REPO, "bad", b"{not json", OCI_MANIFEST)
    check_error("PUT malformed manifest", 400, "MANIFEST_INVALID", r)

    # The digest in the URL names other bytes: "Docker-Content-Digest ... MUST
    # be equal to the client provided digest", so the PUT cannot succeed.
    other = sha256(man + b"  ")
    r = put_manifest(REPO, other, man, OCI_MANIFEST)
    check_error("PUT manifest under a digest of other bytes", 400, "DIGEST_INVALID", r)
    check_status("  nothing stored under that digest", 404, get_manifest(REPO, other, "HEAD"))
    r = put_manifest(REPO, "sha256:baddigeststring", man, OCI_MANIFEST)
    check_status("PUT manifest under sha256:baddigeststring", 400, r, gap_in=REF28)

"""Content discovery: tags/list (lexical order, ?n=, ?last=, the Link header),
_catalog, and the referrers API (GET /v2/<name>/referrers/<digest>, with and
without ?artifactType=, OCI-Filters-Applied, the empty index).

Spec (distribution-spec v1.1, "Content Discovery"): "the tags MUST be in
lexical order"; with `n`, "the response MUST include `<int>` results" unless
fewer exist or a Link header is given; "When `n` is zero, this endpoint MUST
return an empty list, and MUST NOT include a `Link` header"; `last` returns
tags "beginning non-inclusively with `<tagname>`"; "When using the `last`
query parameter, the `n` parameter is OPTIONAL". Referrers: "this request MUST
return a `200 OK`"; "The `Content-Type` header MUST be set to
`application/vnd.oci.image.index.v1+json`"; descriptors "MUST include an
`artifactType` field" set from the manifest's artifactType, else from the
config mediaType for an image manifest, and "If the `artifactType` is empty or
missing in an index, the `artifactType` MUST be omitted"; "The descriptors MUST
include annotations"; "If a query results in no matching referrers, an empty
manifest list MUST be returned"; "If filtering is requested and applied, the
response MUST include a header `OCI-Filters-Applied: artifactType`"; "If the
request is invalid, such as a `<digest>` with an invalid syntax, a `400 Bad
Request` MUST be returned". On push, "a registry implementation that supports
the referrers API MUST respond with the response header `OCI-Subject: <subject
digest>`".
"""

import os
from urllib.parse import urljoin

from .common import (EMPTY_JSON, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, OCTET, REF28,
                     ROOT, check, check_eq, check_error, check_status, descriptor, expect, image_config,
                     json_bytes, manifest_for, push_blob, put_manifest, repo, req, setup_manifest, sha256,
                     short, simple_image, url)

REPO = repo("tags")
OTHER = repo("tags-other")

SBOM = "application/vnd.wharf.e2e.sbom.v1+json"
SIG = "application/vnd.wharf.e2e.signature.v1"
BUNDLE = "application/vnd.wharf.e2e.bundle.v1"


def run():
    tags()
    catalog()
    referrers()


def tags():
    blob = os.urandom(2000)
    config = image_config([sha256(blob)])
    if not (push_blob(REPO, blob) and push_blob(REPO, config)):
        return
    man = manifest_for(config, [blob])
    if not setup_manifest(REPO, "v1", man, OCI_MANIFEST):
        return
    tag_names = ["v1", "a", "b", "c", "d"]
    for t in tag_names[1:]:
        setup_manifest(REPO, t, man, OCI_MANIFEST)
    r = req("GET", url(f"{REPO}/tags/list"))
    check_status("GET tags/list", 200, r)
    listed = r.json() if r.status_code == 200 else {}
    check_eq("tags/list: name", REPO, listed.get("name"))
    check_eq("tags/list: every tag", sorted(tag_names), sorted(listed.get("tags") or []))
    check_eq("tags/list: in lexical order", sorted(tag_names), listed.get("tags"), gap_in="distribution-2.8")

    r = req("GET", url(f"{REPO}/tags/list?n=2"))
    check_eq("tags/list?n=2", ["a", "b"], r.json().get("tags") if r.status_code == 200 else r.status_code,
             gap_in="distribution-2.8")
    link = r.headers.get("Link", "")
    check("tags/list?n=2: Link rel=\"next\"", 'rel="next"' in link, f"Link {link!r}", gap_in="distribution-2.8")
    # RFC 5988: <target>; rel="next"
    check("tags/list?n=2: Link is <URL>; rel=\"next\"",
          link.startswith("<") and ">" in link and link[link.index(">") + 1:].strip().startswith(";"),
          f"Link {link!r}", gap_in=REF28)
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

    r = req("GET", url(f"{REPO}/tags/list?last=b"))
    check_eq("tags/list?last=b (no n)", ["c", "d", "v1"],
             r.json().get("tags") if r.status_code == 200 else r.status_code, gap_in=REF28)
    r = req("GET", url(f"{REPO}/tags/list?n=100"))
    check_eq("tags/list?n=100 (more than there are): all of them", sorted(tag_names),
             r.json().get("tags") if r.status_code == 200 else r.status_code, gap_in=REF28)
    r = req("GET", url(f"{repo('never-pushed')}/tags/list"))
    check_error("tags/list of an unknown repository", 404, "NAME_UNKNOWN", r)


def catalog():
    if not push_blob(OTHER, os.urandom(100)):
        return
    simple_image(OTHER, "x")
    r = req("GET", f"{ROOT}/v2/_catalog?n=1000")
    check_status("GET _catalog", 200, r)
    repos = r.json().get("repositories", []) if r.status_code == 200 else []
    check("_catalog lists the repositories pushed here", REPO in repos and OTHER in repos,
          f"{len(repos)} listed")
    r = req("GET", f"{ROOT}/v2/_catalog?n=1")
    check("_catalog?n=1: one entry and a Link",
          r.status_code == 200 and len(r.json().get("repositories", [])) == 1 and 'rel="next"' in r.headers.get("Link", ""),
          f"status {r.status_code}, Link {r.headers.get('Link')!r}")


def referrers_of(name, subject, **params):
    return req("GET", url(f"{name}/referrers/{subject}"), params=params or None)


def check_index(what, r):
    """A referrers answer: 200, Content-Type exactly the index type, an image
    index. Returns its manifests list, or None."""
    if not expect(what, r, headers={"Content-Type": OCI_INDEX}, gap_in=REF28):
        return None
    try:
        body = r.json()
    except ValueError:
        check(f"{what}: a JSON image index", False, r.text[:200], gap_in=REF28)
        return None
    check(f"{what}: schemaVersion 2, mediaType {OCI_INDEX}",
          body.get("schemaVersion") == 2 and body.get("mediaType") == OCI_INDEX,
          f"{body.get('schemaVersion')!r}, {body.get('mediaType')!r}", gap_in=REF28)
    manifests = body.get("manifests")
    check(f"{what}: a manifests list", isinstance(manifests, list), f"{manifests!r}", gap_in=REF28)
    return manifests if isinstance(manifests, list) else None


def check_listed(what, listed, expected):
    """expected: {digest: descriptor the registry must give}; listed exactly
    these, each with mediaType, size, artifactType (or none) and at least the
    expected annotations."""
    by_digest = {d.get("digest"): d for d in listed}
    check_eq(f"{what}: exactly the expected referrers", sorted(expected), sorted(by_digest), gap_in=REF28)
    for dg, want in expected.items():
        got = by_digest.get(dg)
        if got is None:
            continue
        problems = []
        for key in ("mediaType", "size"):
            if got.get(key) != want[key]:
                problems.append(f"{key} {got.get(key)!r}, expected {want[key]!r}")
        if "artifactType" in want:
            if got.get("artifactType") != want["artifactType"]:
                problems.append(f"artifactType {got.get('artifactType')!r}, expected {want['artifactType']!r}")
        elif "artifactType" in got:
            problems.append(f"artifactType {got['artifactType']!r} on an index that has none (MUST be omitted)")
        for k, v in (want.get("annotations") or {}).items():
            if (got.get("annotations") or {}).get(k) != v:
                problems.append(f"annotation {k} {(got.get('annotations') or {}).get(k)!r}, expected {v!r}")
        check(f"{what}: {short(dg)} described right", not problems, "; ".join(problems), gap_in=REF28)


def push_referrer(name, body, subject, what):
    """PUT by digest; 201 and OCI-Subject naming the subject."""
    d = sha256(body)
    r = put_manifest(name, d, body)
    expect(f"PUT {what} (subject {short(subject)}) by digest: OCI-Subject", r, status=201,
           headers={"OCI-Subject": subject}, gap_in=REF28, gap_keys=("OCI-Subject",))
    return d


def referrers():
    name = repo("referrers")
    subj = simple_image(name, "subject")
    if not subj:
        return
    subj_man, subject, _ = subj
    subject_desc = descriptor(OCI_MANIFEST, subj_man)

    empty = push_blob(name, EMPTY_JSON)
    sbom_layer = os.urandom(300)
    sig_layer = os.urandom(64)
    if not (empty and push_blob(name, sbom_layer) and push_blob(name, sig_layer)):
        return
    empty_desc = descriptor(OCI_EMPTY, EMPTY_JSON, with_data=True)  # data "e30="
    expected = {}

    ann_a = {"org.opencontainers.image.created": "2024-01-01T00:00:00Z", "org.example.sbom.format": "json"}
    a = json_bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM, "config": empty_desc,
                    "layers": [descriptor(SBOM, sbom_layer)], "subject": subject_desc, "annotations": ann_a})
    da = push_referrer(name, a, subject, "artifact A (artifactType sbom)")
    expected[da] = {"mediaType": OCI_MANIFEST, "size": len(a), "artifactType": SBOM, "annotations": ann_a}

    ann_b = {"org.example.signature.fingerprint": "abcd"}
    b = json_bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIG, "config": empty_desc,
                    "layers": [descriptor(OCTET, sig_layer)], "subject": subject_desc, "annotations": ann_b})
    db = push_referrer(name, b, subject, "artifact B (artifactType signature)")
    expected[db] = {"mediaType": OCI_MANIFEST, "size": len(b), "artifactType": SIG, "annotations": ann_b}

    # No artifactType: the registry reports the config's mediaType.
    layer = os.urandom(200)
    config = image_config([sha256(layer)])
    if push_blob(name, layer) and push_blob(name, config):
        c = json_bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                        "layers": [descriptor(OCI_LAYER, layer)], "subject": subject_desc})
        dc = push_referrer(name, c, subject, "image manifest C (no artifactType)")
        expected[dc] = {"mediaType": OCI_MANIFEST, "size": len(c), "artifactType": OCI_CONFIG}

    # Indexes with a subject: with an artifactType, and without one (omitted).
    ann_d = {"org.example.bundle": "yes"}
    d_idx = json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": BUNDLE,
                        "manifests": [descriptor(OCI_MANIFEST, a)], "subject": subject_desc, "annotations": ann_d})
    dd = push_referrer(name, d_idx, subject, "index D (artifactType bundle)")
    expected[dd] = {"mediaType": OCI_INDEX, "size": len(d_idx), "artifactType": BUNDLE, "annotations": ann_d}
    e_idx = json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [descriptor(OCI_MANIFEST, b)], "subject": subject_desc})
    de = push_referrer(name, e_idx, subject, "index E (no artifactType)")
    expected[de] = {"mediaType": OCI_INDEX, "size": len(e_idx)}

    # A referrer of the same subject in another repository is not listed here.
    elsewhere = repo("referrers-elsewhere")
    if push_blob(elsewhere, EMPTY_JSON) and push_blob(elsewhere, sig_layer):
        push_referrer(elsewhere, b, subject, "artifact B in another repository")

    listed = check_index("GET referrers/<subject>", referrers_of(name, subject))
    if listed is not None:
        check_listed("referrers/<subject>", listed, expected)

    for at in (SIG, SBOM):
        r = referrers_of(name, subject, artifactType=at)
        listed = check_index(f"GET referrers/<subject>?artifactType={at}", r)
        # "The registry SHOULD support filtering on artifactType."
        applied = [f.strip() for f in (r.headers.get("OCI-Filters-Applied") or "").split(",")]
        check(f"  OCI-Filters-Applied: artifactType", "artifactType" in applied,
              f"OCI-Filters-Applied {r.headers.get('OCI-Filters-Applied')!r}", gap_in=REF28)
        if listed is not None:
            check_listed(f"referrers?artifactType={at}", listed,
                         {k: v for k, v in expected.items() if v.get("artifactType") == at})
    r = referrers_of(name, subject, artifactType="application/vnd.wharf.e2e.nobody.v1")
    listed = check_index("GET referrers/<subject>?artifactType=<a type nobody has>", r)
    if listed is not None:
        check_eq("  an empty manifests list", [], listed, gap_in=REF28)

    unknown = sha256(os.urandom(32))
    listed = check_index("GET referrers/<a digest nothing refers to>", referrers_of(name, unknown))
    if listed is not None:
        check_eq("  an empty manifests list", [], listed, gap_in=REF28)
    r = referrers_of(name, "sha256:nothex")
    check_status("GET referrers/<a digest with an invalid syntax>", 400, r, gap_in=REF28)

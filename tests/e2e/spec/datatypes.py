"""The data types: each kind of content a registry stores, pushed, listed,
HEADed, pulled by tag and by digest, and deleted.

The data sets follow the conformance suite's list (image, uncompressed image,
large manifest, index, nested index, empty index, artifact, artifact index,
artifact without layers, artifacts with a subject, index with a subject,
missing subject, `data` field, non-distributable layers, custom fields, no
layers, the empty blob, sha512). For each one, in order:

1. push every blob (POST then PUT), then every manifest by digest (201,
   Docker-Content-Digest equal to that digest, a pullable Location,
   OCI-Subject when it has a `subject`), then every tag (201);
2. tags/list names every tag, and ?last= splits the list;
3. HEAD and GET every tag and every digest: 200, Content-Type exactly the
   manifest's mediaType, Content-Length, a Docker-Content-Digest matching the
   bytes, the exact bytes ("The registry MUST store the manifest in the exact
   byte representation provided by the client");
4. HEAD and GET every blob; blobs a manifest names but nobody pushed
   (non-distributable layers, a missing subject) are 404;
5. the referrers of every subject (see discovery.py for the rules);
6. delete: tags, then manifests newest first, then blobs, each 202 and then
   404.

Image spec (v1.1) rules these sets rest on: a manifest's `artifactType` "MUST
be set" when the config is the empty descriptor; the empty descriptor is
`application/vnd.oci.empty.v1+json`, size 2, digest
sha256:44136fa3...aff8a, and may carry `data: "e30="`; a descriptor's `data`
is "an embedded representation of the referenced content", base64;
"implementations MUST NOT generate an error if they encounter an unknown
property"; non-distributable layer types (deprecated) name their content
through `urls`.
"""

import gzip
import io
import json
import os
import tarfile

from .common import (EMPTY_JSON, MANIFEST_ACCEPT, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER,
                     OCI_LAYER_GZIP, OCI_LAYER_ND, OCI_LAYER_ND_GZIP, OCI_MANIFEST, OCTET, REF28, check,
                     descriptor, digest, expect, get_manifest, json_bytes, location, put_manifest, repo, req,
                     sha256, short, url, with_query)

ARTIFACT = "application/vnd.wharf.e2e.artifact.v1"
ARTIFACT2 = "application/vnd.wharf.e2e.artifact.v2"


def tar_layer(n, compress=True):
    """A real tar (gzipped or not) with one small file; returns (blob, diff_id bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        content = f"wharf e2e layer {n}: {os.urandom(8).hex()}\n".encode()
        info = tarfile.TarInfo(f"./e2e-{n}.txt")
        info.size = len(content)
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(content))
    raw = buf.getvalue()
    return (gzip.compress(raw, mtime=0) if compress else raw), raw


class DataSet:
    """Blobs, manifests (in push order), tags and the referrers they imply."""

    def __init__(self, name, algo="sha256", gap_in=None):
        self.name = name
        self.algo = algo
        self.gap_in = gap_in
        self.repo = repo(f"dt-{name}")
        self.blobs = {}
        self.absent = {}  # named by a manifest, never pushed
        self.manifests = []  # (digest, bytes, mediaType, subject digest or None)
        self.tags = {}
        self.referrers = {}  # subject digest -> {referrer digest: expected descriptor}

    def desc(self, media_type, data, with_data=False, **extra):
        return descriptor(media_type, data, self.algo, with_data=with_data, **extra)

    def blob(self, data, media_type=OCTET, with_data=False, **extra):
        self.blobs[digest(data, self.algo)] = data
        return self.desc(media_type, data, with_data, **extra)

    def layer(self, n, compress=True, with_data=False):
        data, raw = tar_layer(n, compress)
        return self.blob(data, OCI_LAYER_GZIP if compress else OCI_LAYER, with_data), digest(raw, self.algo)

    def config(self, diff_ids, arch="amd64", extra=None, with_data=False, pretty=False):
        cfg = {"architecture": arch, "os": "linux", "author": "wharf e2e",
               "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        if extra:
            cfg.update(extra)
        data = json.dumps(cfg, indent=2).encode() if pretty else json_bytes(cfg)
        return self.blob(data, OCI_CONFIG, with_data)

    def _add(self, obj, media_type, tag, subject, extra, pretty, with_data, platform):
        if extra:
            obj.update(extra)
        body = json.dumps(obj, indent=3, ensure_ascii=False).encode() + b"\n" if pretty else \
            json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        d = digest(body, self.algo)
        subj = subject["digest"] if subject else None
        self.manifests.append((d, body, media_type, subj))
        if tag:
            self.tags[tag] = d
        if subject:
            want = {"mediaType": media_type, "size": len(body), "annotations": obj.get("annotations")}
            at = obj.get("artifactType") or (obj["config"]["mediaType"] if media_type == OCI_MANIFEST else None)
            if at:
                want["artifactType"] = at
            self.referrers.setdefault(subj, {})[d] = want
        extra_desc = {"platform": platform} if platform else {}
        return self.desc(media_type, body, with_data, **extra_desc)

    def manifest(self, config, layers, tag=None, artifact_type=None, subject=None, annotations=None,
                 extra=None, pretty=False, with_data=False, platform=None):
        obj = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
        if artifact_type:
            obj["artifactType"] = artifact_type
        obj["config"] = config
        obj["layers"] = layers
        if subject:
            obj["subject"] = subject
        if annotations:
            obj["annotations"] = annotations
        return self._add(obj, OCI_MANIFEST, tag, subject, extra, pretty, with_data, platform)

    def index(self, manifests, tag=None, artifact_type=None, subject=None, annotations=None,
              extra=None, pretty=False, with_data=False):
        obj = {"schemaVersion": 2, "mediaType": OCI_INDEX}
        if artifact_type:
            obj["artifactType"] = artifact_type
        obj["manifests"] = manifests
        if subject:
            obj["subject"] = subject
        if annotations:
            obj["annotations"] = annotations
        return self._add(obj, OCI_INDEX, tag, subject, extra, pretty, with_data, None)

    def image(self, tag=None, arch="amd64", layers=2, compress=True, with_data=False, extra=None,
              pretty=False, platform=False, **kw):
        descs, diff_ids = [], []
        for n in range(layers):
            dsc, diff = self.layer(n, compress, with_data)
            descs.append(dsc)
            diff_ids.append(diff)
        cfg = self.config(diff_ids, arch, extra=extra, with_data=with_data, pretty=pretty)
        plat = {"architecture": arch, "os": "linux"} if platform else None
        return self.manifest(cfg, descs, tag=tag, extra=extra, pretty=pretty, with_data=with_data,
                             platform=plat, **kw)

    def multi(self, tag=None, arches=("amd64", "arm64"), **kw):
        """An index of one image per platform."""
        shared = {k: v for k, v in kw.items() if k in ("with_data", "extra", "pretty", "compress")}
        descs = [self.image(arch=a, platform=True, **shared) for a in arches]
        return self.index(descs, tag=tag, **{k: v for k, v in kw.items() if k != "compress"})

    def artifact(self, tag=None, artifact_type=ARTIFACT, layer_type=ARTIFACT, layer=None, **kw):
        """artifactType + the empty config, with its `data` ("e30=")."""
        self.blobs[digest(EMPTY_JSON, self.algo)] = EMPTY_JSON
        cfg = self.desc(OCI_EMPTY, EMPTY_JSON, with_data=True)
        layer_desc = self.blob(os.urandom(512) if layer is None else layer, layer_type)
        return self.manifest(cfg, [layer_desc], tag=tag, artifact_type=artifact_type, **kw)


def build():
    sets = []

    ds = DataSet("image")
    ds.image(tag="image")
    sets.append(ds)

    ds = DataSet("image-uncompressed")
    ds.image(tag="image-uncompressed", compress=False)
    sets.append(ds)

    # "Client and registry implementations SHOULD expect to be able to
    # support manifest pushes of at least 4 megabytes": about 3.9 MB here.
    ds = DataSet("large-manifest")
    ds.image(tag="large-manifest", annotations={f"large-annotation-{i}": "A" * 10000 for i in range(390)})
    sets.append(ds)

    ds = DataSet("index")
    ds.multi(tag="index")
    sets.append(ds)

    ds = DataSet("nested-index")
    inner = [ds.multi(), ds.multi()]
    ds.index(inner, tag="index-of-index")
    sets.append(ds)

    ds = DataSet("empty-index")
    ds.index([], tag="empty-index")
    sets.append(ds)

    ds = DataSet("artifact")
    ds.artifact(tag="artifact")
    sets.append(ds)

    ds = DataSet("artifact-index")
    arts = [ds.artifact(platform={"architecture": a, "os": "linux"}) for a in ("amd64", "arm64")]
    ds.index(arts, tag="artifact-index", artifact_type=ARTIFACT)
    sets.append(ds)

    # The empty descriptor as the only layer (image spec: "if the manifest has
    # no layers, use the empty descriptor").
    ds = DataSet("artifact-without-layers")
    ds.artifact(tag="artifact-without-layers", layer_type=OCI_EMPTY, layer=EMPTY_JSON)
    sets.append(ds)

    ds = DataSet("artifacts-with-subject")
    subj = ds.image(tag="image")
    ann = {"org.opencontainers.conformance": "hello conformance test"}
    ds.image(subject=subj)  # an image referrer: artifactType comes from its config
    ds.artifact(tag="tagged-artifact1", subject=subj, annotations=dict(ann, **{"org.example.n": "1"}))
    ds.artifact(tag="tagged-artifact2", subject=subj, artifact_type=ARTIFACT2, layer_type=OCTET,
                annotations=dict(ann, **{"org.example.n": "2"}))
    sets.append(ds)

    ds = DataSet("index-with-subject")
    subj = ds.multi(tag="index")
    arts = [ds.artifact(platform={"architecture": a, "os": "linux"}) for a in ("amd64", "arm64")]
    ds.index(arts, tag="tagged-artifact", artifact_type=ARTIFACT, subject=subj,
             annotations={"org.opencontainers.conformance": "hello conformance test"})
    sets.append(ds)

    # "A registry MUST initially accept an otherwise valid manifest with a
    # `subject` field that references a manifest that does not exist."
    ds = DataSet("missing-subject")
    ghost = {"mediaType": OCI_MANIFEST, "size": 123, "digest": sha256(b"missing content " + os.urandom(8))}
    ds.artifact(tag="tagged-artifact", subject=ghost,
                annotations={"org.opencontainers.conformance": "hello conformance test"})
    ds.absent[ghost["digest"]] = "the missing subject"
    sets.append(ds)

    ds = DataSet("data-field")
    ds.multi(tag="data-field", with_data=True)
    sets.append(ds)

    # Non-distributable layers: named with `urls`, never pushed.
    ds = DataSet("non-distributable-layers")
    nd1, nd2 = os.urandom(256), os.urandom(256)
    nd = [ds.desc(OCI_LAYER_ND_GZIP, nd1, urls=[f"https://store.example.com/blobs/{sha256(nd1)}"]),
          ds.desc(OCI_LAYER_ND, nd2, urls=[f"https://store.example.com/blobs/{sha256(nd2)}"])]
    nd[0]["size"], nd[1]["size"] = 123456, 12345
    normal, diff = ds.layer(1)
    cfg = ds.config([sha256(nd1), sha256(nd2), diff])
    ds.manifest(cfg, nd + [normal], tag="non-distributable-image")
    for dsc in nd:
        ds.absent[dsc["digest"]] = "a non-distributable layer"
    sets.append(ds)

    # Unknown fields and annotations, indented JSON, keys in no particular
    # order, non-ASCII text: all kept byte for byte.
    ds = DataSet("custom-fields")
    custom = {"org.example.custom": {"nested": [1, 2.5, {"x": None}], "text": "déjà vu ✓"},
              "annotations": {"org.example.note": "ünïcödé \u2603", "z.last": "", "a.first": "1"}}
    ds.multi(tag="custom-fields", extra=custom, pretty=True)
    sets.append(ds)

    ds = DataSet("no-layers")
    cfg = ds.config([])
    ds.manifest(cfg, [], tag="no-layers")
    sets.append(ds)

    # The empty blob: size 0, sha256:e3b0c442...b855.
    ds = DataSet("empty-blob")
    ds.artifact(tag="empty-blob", layer=b"", layer_type="application/vnd.wharf.e2e.empty-file")
    sets.append(ds)

    # sha512 everywhere, pushed by digest only (a tag would be hashed with
    # sha256 by a registry without ?tag=; see draft.py).
    ds = DataSet("sha512", algo="sha512", gap_in=REF28)
    ds.multi()
    sets.append(ds)
    return sets


def run():
    for ds in build():
        run_dataset(ds)


def run_dataset(ds):
    n = ds.name
    g = ds.gap_in
    print(f"# data set {n}: {len(ds.blobs)} blobs, {len(ds.manifests)} manifests, tags {sorted(ds.tags)}")
    # ---- push --------------------------------------------------------------
    pushed_blobs = set()
    for d, data in ds.blobs.items():
        r = req("POST", url(f"{ds.repo}/blobs/uploads/"))
        if r.status_code == 202 and location(r):
            r = req("PUT", with_query(location(r), digest=d), data=data, headers={"Content-Type": OCTET})
        if expect(f"{n}: push blob {short(d)} ({len(data)} bytes)", r, status=201, gap_in=g):
            pushed_blobs.add(d)
    pushed = set()
    for d, body, mt, subj in ds.manifests:
        r = put_manifest(ds.repo, d, body, mt)
        headers = {"OCI-Subject": subj} if subj else {}
        expect(f"{n}: PUT {mt.rsplit('.', 2)[-2]} {short(d)} by digest: Docker-Content-Digest"
                    f"{', OCI-Subject' if subj else ''}", r, status=201, dcd=d, headers=headers,
                    gap_in=g or (REF28 if subj else None), gap_keys=None if g else ("OCI-Subject",))
        if r.status_code == 201:
            pushed.add(d)
            loc = location(r)
            if check(f"{n}:   Location", loc is not None, "no Location header", g):
                expect(f"{n}:   Location gives the manifest",
                       req("GET", loc, headers={"Accept": MANIFEST_ACCEPT}), body=body, gap_in=g)
    for tag, d in ds.tags.items():
        body, mt = next((b, m) for dd, b, m, _ in ds.manifests if dd == d)
        r = put_manifest(ds.repo, tag, body, mt)
        expect(f"{n}: PUT tag {tag}", r, status=201, dcd=body, gap_in=g,
               gap_keys=None if g else ("OCI-Subject",))

    # ---- list ----------------------------------------------------------------
    if ds.tags:
        r = req("GET", url(f"{ds.repo}/tags/list"))
        listed = (r.json().get("tags") or []) if r.status_code == 200 else []
        check(f"{n}: tags/list names every tag", set(ds.tags) <= set(listed),
              f"status {r.status_code}, listed {listed}", g)
        if len(listed) >= 2:
            ordered = sorted(listed)
            half = len(ordered) // 2
            r = req("GET", url(f"{ds.repo}/tags/list"), params={"last": ordered[half - 1]})
            after = (r.json().get("tags") or []) if r.status_code == 200 else []
            check(f"{n}: tags/list?last={ordered[half - 1]} gives exactly the tags after it",
                  after == ordered[half:], f"status {r.status_code}, got {after}", g or REF28)

    # ---- HEAD and GET ------------------------------------------------------------
    refs = [(tag, d) for tag, d in ds.tags.items()] + [(d, d) for d, _, _, _ in ds.manifests]
    for ref, d in refs:
        body, mt = next((b, m) for dd, b, m, _ in ds.manifests if dd == d)
        kind = f"tag {ref}" if ref != d else f"digest {short(d)}"
        hdrs = {"Content-Type": mt, "Content-Length": str(len(body))}
        expect(f"{n}: HEAD manifest by {kind}: Content-Type, Content-Length, Docker-Content-Digest",
               get_manifest(ds.repo, ref, "HEAD"), headers=hdrs, dcd=body, empty_body=True, gap_in=g)
        expect(f"{n}: GET manifest by {kind}: the exact bytes, Content-Type, Content-Length, "
               f"Docker-Content-Digest", get_manifest(ds.repo, ref), body=body, headers=hdrs, dcd=body, gap_in=g)
    for d, data in ds.blobs.items():
        expect(f"{n}: HEAD blob {short(d)}: Content-Length, Docker-Content-Digest",
               req("HEAD", url(f"{ds.repo}/blobs/{d}")), headers={"Content-Length": str(len(data))},
               dcd=data, empty_body=True, gap_in=g)
        expect(f"{n}: GET blob {short(d)}: the bytes, Docker-Content-Digest",
               req("GET", url(f"{ds.repo}/blobs/{d}")), body=data,
               headers={"Content-Length": str(len(data))}, dcd=data, gap_in=g)
    for d, what in ds.absent.items():
        check(f"{n}: {what} ({short(d)}), never pushed, is not a blob here (HEAD 404)",
              req("HEAD", url(f"{ds.repo}/blobs/{d}")).status_code == 404, "", g)

    # ---- referrers ------------------------------------------------------------------
    for subj, want in ds.referrers.items():
        r = req("GET", url(f"{ds.repo}/referrers/{subj}"))
        if not expect(f"{n}: GET referrers/{short(subj)}", r, headers={"Content-Type": OCI_INDEX},
                      gap_in=g or REF28):
            continue
        listed = {m.get("digest"): m for m in r.json().get("manifests", [])}
        for rd, w in want.items():
            got = listed.get(rd)
            problems = []
            if got is None:
                problems.append("not listed")
            else:
                for key in ("mediaType", "size", "artifactType"):
                    if got.get(key) != w.get(key):
                        problems.append(f"{key} {got.get(key)!r}, expected {w.get(key)!r}")
                for k, v in (w.get("annotations") or {}).items():
                    if (got.get("annotations") or {}).get(k) != v:
                        problems.append(f"annotation {k} differs")
            check(f"{n}:   referrer {short(rd)} listed with mediaType, size, artifactType, annotations",
                  not problems, "; ".join(problems), g or REF28)
        check(f"{n}:   nothing else listed", set(listed) <= set(want), f"extra {sorted(set(listed) - set(want))}",
              g or REF28)
        for at in sorted({w["artifactType"] for w in want.values() if "artifactType" in w}):
            r = req("GET", url(f"{ds.repo}/referrers/{subj}"), params={"artifactType": at})
            applied = "artifactType" in [f.strip() for f in (r.headers.get("OCI-Filters-Applied") or "").split(",")]
            got = {m.get("digest") for m in r.json().get("manifests", [])} if r.status_code == 200 else set()
            expected = {rd for rd, w in want.items() if w.get("artifactType") == at}
            check(f"{n}:   ?artifactType={at}: OCI-Filters-Applied and exactly those referrers",
                  r.status_code == 200 and applied and got == expected,
                  f"status {r.status_code}, OCI-Filters-Applied {r.headers.get('OCI-Filters-Applied')!r}, "
                  f"got {sorted(got)}, expected {sorted(expected)}", g or REF28)

    # ---- delete -------------------------------------------------------------------------
    for tag in ds.tags:
        r = req("DELETE", url(f"{ds.repo}/manifests/{tag}"))
        if expect(f"{n}: DELETE tag {tag}", r, status=202, gap_in=g or REF28):
            check(f"{n}:   HEAD tag {tag} -> 404", get_manifest(ds.repo, tag, "HEAD").status_code == 404, "", g)
    for d, _, _, _ in reversed(ds.manifests):
        if d not in pushed:
            continue
        r = req("DELETE", url(f"{ds.repo}/manifests/{d}"))
        if expect(f"{n}: DELETE manifest {short(d)}", r, status=202, gap_in=g):
            check(f"{n}:   HEAD manifest {short(d)} -> 404", get_manifest(ds.repo, d, "HEAD").status_code == 404,
                  "", g)
    for tag in ds.tags:  # deleting the manifest removes its tags in any case
        check(f"{n}: tag {tag} gone after its manifest was deleted",
              get_manifest(ds.repo, tag, "HEAD").status_code == 404, "", g)
    for d in ds.blobs:
        if d not in pushed_blobs:
            continue
        r = req("DELETE", url(f"{ds.repo}/blobs/{d}"))
        if expect(f"{n}: DELETE blob {short(d)}", r, status=202, gap_in=g):
            check(f"{n}:   HEAD blob {short(d)} -> 404", req("HEAD", url(f"{ds.repo}/blobs/{d}")).status_code == 404,
                  "", g)
    for subj in ds.referrers:
        r = req("GET", url(f"{ds.repo}/referrers/{subj}"))
        check(f"{n}: referrers/{short(subj)} empty once its referrers are deleted",
              r.status_code == 200 and r.json().get("manifests") == [], f"status {r.status_code}: {r.text[:200]!r}",
              g or REF28)

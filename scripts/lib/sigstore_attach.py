#!/usr/bin/env python3
"""Signs a manifest with a sigstore key and pushes the signature as a sigstore
attachment, byte for byte as containers/image writes one
(`skopeo copy --sign-by-sigstore-private-key` with `use-sigstore-attachments`),
or as cosign's OCI 1.1 referrer (`--referrer`).

    python3 scripts/lib/sigstore_attach.py [--referrer] REGISTRY REPO DIGEST IDENTITY KEY.pem

REGISTRY is host:port (plain HTTP), DIGEST the manifest's, IDENTITY the docker
reference the payload claims (`host:port/repo`), KEY.pem an unencrypted ECDSA
P-256 private key (scripts/lib/sigstore_key.py writes one).

Why by hand: Debian's skopeo 1.9.3 is built with sigstore signing disabled
("Debian-local change: sigstore disabled"), and cosign is not packaged here.
The format is containers/image's (docker/docker_image_dest.go,
putSignaturesToSigstoreAttachments; signature/sigstore): the simple-signing
payload (`critical.identity.docker-reference`, `critical.image.
docker-manifest-digest`, `critical.type` "cosign container image signature")
as a layer of media type application/vnd.dev.cosign.simplesigning.v1+json whose
annotation dev.cosignproject.cosign/signature is the base64 ASN.1 ECDSA
signature of the payload (SHA-256); an OCI image config whose rootfs.diff_ids
are the layers' digests; the manifest tagged sha256-<hex>.sig. An attachment
already there gets the new layer appended, as containers/image does.
"""

import base64
import hashlib
import json
import sys

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"


def push_blob(base, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post(f"{base}/blobs/uploads/", params={"digest": digest}, data=data,
                      headers={"Content-Type": "application/octet-stream"}, timeout=30)
    if r.status_code != 201:
        r = requests.post(f"{base}/blobs/uploads/", timeout=30)
        r.raise_for_status()
        loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = base.split("/v2/")[0] + loc
        r = requests.put(loc, params={"digest": digest}, data=data, timeout=30)
        r.raise_for_status()
    return {"digest": digest, "size": len(data)}


def main():
    args = sys.argv[1:]
    referrer = False
    if args and args[0] == "--referrer":
        referrer, args = True, args[1:]
    if len(args) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    registry, repo, digest, identity, keyfile = args
    with open(keyfile, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    payload = json.dumps({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }, separators=(",", ":")).encode()
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    base = f"http://{registry}/v2/{repo}"
    layer = dict(push_blob(base, payload), mediaType=SIMPLE_SIGNING,
                 annotations={"dev.cosignproject.cosign/signature": signature})
    if referrer:
        config = dict(push_blob(base, b"{}"), mediaType=OCI_EMPTY)
        r = requests.get(f"{base}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}, timeout=30)
        r.raise_for_status()
        subject = {"mediaType": r.headers["Content-Type"], "digest": digest, "size": len(r.content)}
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": COSIGN_SIG_TYPE,
                    "config": config, "layers": [layer], "subject": subject}
        body = json.dumps(manifest, separators=(",", ":")).encode()
        ref = "sha256:" + hashlib.sha256(body).hexdigest()
    else:
        tag = digest.replace(":", "-") + ".sig"
        layers = []
        r = requests.get(f"{base}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=30)
        if r.status_code == 200:
            layers = r.json().get("layers", [])
        layers.append(layer)
        cfg = {"architecture": "", "os": "", "config": {},
               "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}
        config = dict(push_blob(base, json.dumps(cfg, separators=(",", ":")).encode()),
                      mediaType=OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}
        body = json.dumps(manifest, separators=(",", ":")).encode()
        ref = tag
    r = requests.put(f"{base}/manifests/{ref}", data=body,
                     headers={"Content-Type": OCI_MANIFEST}, timeout=30)
    if r.status_code != 201:
        print(f"sigstore_attach.py: PUT manifest {ref}: {r.status_code} {r.text}", file=sys.stderr)
        return 1
    print(r.headers.get("Docker-Content-Digest", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the spec suite: configuration, counters, check helpers,
digests, request helpers and content builders.

Every check goes through `check` (or a helper built on it), which prints one
`ok   - ...`, `FAIL - ...` or `gap  - ...` line and counts it under the
current area (`set_area`). A check may name the reference registry known to
fail it (`gap_in`): when the target is that registry (E2E_REFERENCE) a failure
is reported as a gap instead; against any other registry it is an ordinary
failure. Nothing here starts a registry.
"""

import base64
import hashlib
import json
import os
import sys
import time
import uuid
from urllib.parse import urljoin

import requests
import urllib3

REGISTRY = os.environ.get("REGISTRY", "")
NS = os.environ.get("E2E_NAMESPACE", "e2e")
ROOT = f"http://{REGISTRY}"
RUN = uuid.uuid4().hex[:8]
REFERENCE = os.environ.get("E2E_REFERENCE", "")
# The registry under test accepts manifests naming blobs or manifests it does
# not hold (sparse manifests, a draft-spec option; off by default in wharf).
SPARSE = os.environ.get("E2E_SPARSE_MANIFESTS", "") == "1"
TIMEOUT = 60

# The reference registry: Debian's docker-registry, distribution 2.8.2.
REF28 = "distribution-2.8"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCTET = "application/octet-stream"
MANIFEST_ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}"

# The empty JSON object, `{}`: the image spec's empty descriptor content.
EMPTY_JSON = b"{}"

http = requests.Session()

# ---- counters -----------------------------------------------------------------

_area = "setup"
AREAS = []  # in the order they were first used
COUNTS = {}  # area -> {"ok": n, "failed": n, "gap": n}


def set_area(name):
    global _area
    _area = name
    if name not in COUNTS:
        AREAS.append(name)
        COUNTS[name] = {"ok": 0, "failed": 0, "gap": 0}
    print(f"# ---- {name}")


def _count(kind):
    if _area not in COUNTS:
        set_area(_area)
    COUNTS[_area][kind] += 1


def totals():
    t = {"ok": 0, "failed": 0, "gap": 0}
    for c in COUNTS.values():
        for k in t:
            t[k] += c[k]
    return t


def ok(what):
    _count("ok")
    print(f"ok   - {what}")


def not_ok(what):
    _count("failed")
    print(f"FAIL - {what}")


def gap(what, ref, detail=""):
    _count("gap")
    print(f"gap  - {what} (known gap in {ref}){': ' + detail if detail else ''}")


def note(what):
    """Information that is not a check (a MAY the registry chose not to do)."""
    print(f"# note: {what}")


def check(what, cond, detail="", gap_in=None):
    """gap_in: the reference registry known to fail this check."""
    if cond:
        ok(what)
    elif gap_in and gap_in == REFERENCE:
        gap(what, gap_in, detail)
    else:
        not_ok(f"{what}{': ' + detail if detail else ''}")
    return bool(cond)


def check_eq(what, expected, actual, gap_in=None):
    return check(what, expected == actual, f"expected {expected!r}, got {actual!r}", gap_in)


def check_status(what, expected, resp, gap_in=None):
    """expected: one status or a tuple of them."""
    allowed = expected if isinstance(expected, tuple) else (expected,)
    broken = getattr(resp, "broken", None)
    return check(f"{what} -> {'/'.join(map(str, allowed))}", resp.status_code in allowed and not broken,
                 f"got {resp.status_code}: {resp.text[:300]!r}{', ' + broken if broken else ''}", gap_in)


def error_codes(resp):
    """The `code`s of a spec error body, or None if the body is not one."""
    try:
        return [e.get("code") for e in resp.json().get("errors", [])]
    except (ValueError, AttributeError):
        return None


def check_error(what, status, code, resp, gap_in=None):
    """A spec error: the status and, in the JSON body, the error code
    (or one of a tuple of codes)."""
    if not check_status(what, status, resp, gap_in):
        return False
    if resp.request.method == "HEAD":
        return True
    codes = error_codes(resp)
    wanted = code if isinstance(code, tuple) else (code,)
    return check(f"{what}: error code {'/'.join(wanted)}", codes is not None and any(c in codes for c in wanted),
                 f"body {resp.text[:300]!r}", gap_in)


def expect(what, resp, status=200, body=None, headers=None, dcd=None, empty_body=False,
           gap_in=None, gap_keys=None):
    """One check of one response: the status and everything else asked for.

    body: the exact bytes expected; headers: {name: value} expected exactly
    (value None: the header must be absent; a tuple: any of these values);
    dcd: Docker-Content-Digest must be present and match these bytes under the
    algorithm it names (the spec lets it differ in algorithm from the request's
    digest), or, given as a string, be exactly that digest; empty_body: no body
    (a HEAD). gap_keys: with gap_in, the names of the parts the reference is
    known to miss ("status", "body", a header name); a failure made only of
    those is a gap there; None means any part.
    """
    problems = {}
    allowed = status if isinstance(status, tuple) else (status,)
    if resp.status_code not in allowed:
        problems["status"] = f"status {resp.status_code}: {resp.text[:300]!r}"
    elif getattr(resp, "broken", None):
        problems["broken"] = f"status {resp.status_code} but {resp.broken}"
    else:
        if body is not None and resp.content != body:
            problems["body"] = f"body differs ({len(resp.content)} bytes, expected {len(body)})"
        if empty_body and resp.content:
            problems["body"] = f"a body of {len(resp.content)} bytes"
        for name, want in (headers or {}).items():
            got = resp.headers.get(name)
            wants = want if isinstance(want, tuple) else (want,)
            if got not in wants:
                problems[name] = f"{name} {got!r}, expected {' or '.join(map(repr, wants))}"
        if dcd is not None:
            got = registry_header(resp, "Docker-Content-Digest")
            if isinstance(dcd, str):
                if got != dcd:
                    problems["Docker-Content-Digest"] = f"Docker-Content-Digest {got!r}, expected {dcd!r}"
            elif not digest_matches(got, dcd):
                problems["Docker-Content-Digest"] = f"Docker-Content-Digest {got!r} does not match the content"
    label = f"{what} -> {'/'.join(map(str, allowed))}"
    if not problems:
        ok(label)
        return True
    detail = "; ".join(problems.values())
    if gap_in and gap_in == REFERENCE and (gap_keys is None or set(problems) <= set(gap_keys)):
        gap(label, gap_in, detail)
    else:
        not_ok(f"{label}: {detail}")
    return False


def registry_header(resp, name):
    """A header of the registry's answer: after redirects were followed (a
    blob GET sent on to the object store), the registry's own response is the
    first one in the chain; the store's final answer does not carry registry
    headers such as Docker-Content-Digest."""
    for r in [resp] + list(reversed(resp.history)):
        if r.headers.get(name) is not None:
            return r.headers.get(name)
    return None


# ---- digests --------------------------------------------------------------------

def digest(data: bytes, algo="sha256") -> str:
    return f"{algo}:" + hashlib.new(algo, data).hexdigest()


def sha256(data: bytes) -> str:
    return digest(data, "sha256")


def sha512(data: bytes) -> str:
    return digest(data, "sha512")


def digest_matches(value, data: bytes) -> bool:
    """True if `value` is a sha256/sha512 digest of `data`."""
    if not value or ":" not in value:
        return False
    algo = value.split(":", 1)[0]
    if algo not in ("sha256", "sha512"):
        return False
    return value == digest(data, algo)


def short(d):
    """A digest shortened for check names."""
    return d.split(":", 1)[0] + ":" + d.split(":", 1)[1][:12] if d and ":" in d else str(d)


# ---- requests -------------------------------------------------------------------

def url(path):
    return f"{ROOT}/v2/{path}"


def repo(suffix):
    """A fresh repository name for this run."""
    return f"{NS}/api-{RUN}-{suffix}"


def location(resp):
    """The Location header made absolute (it may be relative)."""
    loc = resp.headers.get("Location")
    return urljoin(resp.url, loc) if loc else None


def with_query(loc, **params):
    sep = "&" if "?" in loc else "?"
    return loc + sep + "&".join(f"{k}={v}" for k, v in params.items())


# E2E_TRANSPORT_RETRIES=N (tests/cluster/run.sh sets it): a request that fails in
# transport (connection refused or reset, no response) or gets the load balancer's own
# 502 (Wharf never answers 502) is sent again, up to N times, as a real client does when
# an instance behind the load balancer dies under it. Wharf's own answers, 503 included,
# are never retried. How many were retried is printed at the end (TRANSPORT_RETRIED).
TRANSPORT_RETRIES = int(os.environ.get("E2E_TRANSPORT_RETRIES", "0") or 0)
TRANSPORT_RETRIED = []


def _send(method, target, kw):
    attempt = 0
    while True:
        try:
            resp = http.request(method, target, stream=True, **kw)
        except requests.exceptions.ConnectionError as e:
            if attempt >= TRANSPORT_RETRIES or not _replayable(kw):
                raise
            TRANSPORT_RETRIED.append(f"{method} {target}: {type(e).__name__}")
        else:
            if resp.status_code != 502 or attempt >= TRANSPORT_RETRIES or not _replayable(kw):
                return resp
            resp.close()
            TRANSPORT_RETRIED.append(f"{method} {target}: 502 from the load balancer")
        attempt += 1
        time.sleep(0.5 * attempt)


def _replayable(kw):
    data = kw.get("data")
    return data is None or isinstance(data, (bytes, str))


def req(method, target, **kw):
    """One request. A response whose body breaks off before its
    Content-Length (seen from distribution 2.8 on a 416) is returned with the
    bytes that came and `broken` set, for the checks to report."""
    kw.setdefault("timeout", TIMEOUT)
    resp = _send(method, target, kw)
    resp.broken = None
    chunks = []
    try:
        for chunk in resp.raw.stream(65536, decode_content=True):
            chunks.append(chunk)
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as e:
        resp.broken = f"the body broke off after {sum(map(len, chunks))} bytes ({type(e).__name__})"
    resp._content = b"".join(chunks)
    resp._content_consumed = True
    resp.close()
    return resp


def header_values(resp, name):
    """Every field line of a header, as sent (requests joins repeats with ', ')."""
    raw = getattr(resp.raw, "headers", None)
    if raw is not None and hasattr(raw, "getlist"):
        return raw.getlist(name)
    v = resp.headers.get(name)
    return [v] if v is not None else []


def push_blob(repo_name, data, algo="sha256"):
    """POST then PUT (setup, not a check); returns the digest, or None after
    reporting the failure."""
    r = req("POST", url(f"{repo_name}/blobs/uploads/"))
    if r.status_code != 202 or not location(r):
        not_ok(f"setup: POST upload for {repo_name}: {r.status_code} {r.text[:200]!r}")
        return None
    d = digest(data, algo)
    r = req("PUT", with_query(location(r), digest=d), data=data, headers={"Content-Type": OCTET})
    if r.status_code != 201:
        not_ok(f"setup: PUT blob {short(d)} to {repo_name}: {r.status_code} {r.text[:200]!r}")
        return None
    return d


def put_manifest(repo_name, ref, body, media_type=None, params=None):
    """PUT a manifest; media_type defaults to the body's mediaType field.
    params: extra query parameters as a list of (name, value)."""
    if media_type is None:
        media_type = json.loads(body).get("mediaType", OCI_MANIFEST)
    target = url(f"{repo_name}/manifests/{ref}")
    if params:
        target += "?" + "&".join(f"{k}={v}" for k, v in params)
    return req("PUT", target, data=body, headers={"Content-Type": media_type})


def setup_manifest(repo_name, ref, body, media_type=None):
    """PUT a manifest as setup (not a check); True on 201."""
    r = put_manifest(repo_name, ref, body, media_type)
    if r.status_code != 201:
        not_ok(f"setup: PUT manifest {ref} to {repo_name}: {r.status_code} {r.text[:200]!r}")
        return False
    return True


def get_manifest(repo_name, ref, method="GET"):
    return req(method, url(f"{repo_name}/manifests/{ref}"), headers={"Accept": MANIFEST_ACCEPT})


# ---- content ---------------------------------------------------------------------

def json_bytes(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def descriptor(media_type, data: bytes, algo="sha256", with_data=False, **extra):
    d = {"mediaType": media_type, "digest": digest(data, algo), "size": len(data)}
    if with_data:
        d["data"] = base64.b64encode(data).decode()
    d.update(extra)
    return d


def manifest_for(config: bytes, layers):
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b in layers],
    }, separators=(",", ":")).encode()


def image_config(diff_ids, arch="amd64", extra=None):
    cfg = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if extra:
        cfg.update(extra)
    return json_bytes(cfg)


def simple_image(repo_name, tag=None, algo="sha256"):
    """Push a one-layer image (setup); returns (manifest bytes, digest, [blob digests]) or None."""
    layer = os.urandom(256)
    config = image_config([digest(layer, algo)])
    blobs = [push_blob(repo_name, config, algo), push_blob(repo_name, layer, algo)]
    if None in blobs:
        return None
    man = json_bytes({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config, algo),
        "layers": [descriptor(OCI_LAYER, layer, algo)],
    })
    md = digest(man, algo)
    if not setup_manifest(repo_name, tag or md, man):
        return None
    return man, md, blobs


def die(msg, code=2):
    print(f"api.py: {msg}", file=sys.stderr)
    sys.exit(code)

#!/usr/bin/env python3
"""End-to-end: traces exported over OTLP/HTTP, then OTLP/gRPC, reach a receiver, one trace per request.

Starts an OTLP receiver (scripts/lib/otlp_receiver.py, which decodes with PyPI's
opentelemetry-proto and writes one JSON line per span; over gRPC with grpcio) and a wharf of its own (the binary in
WHARF_BIN, else $CARGO_TARGET_DIR/release/wharf) with OTEL_EXPORTER_OTLP_ENDPOINT
pointing at it, pushes an image, the manifest PUT carrying a W3C `traceparent`, and
checks what the receiver got:

  - spans of service `wharf-e2e` (OTEL_SERVICE_NAME) arrive;
  - the manifest PUT's request span has the traceparent's trace id and its span as
    parent, and the spans inside that request (the registry core, the metadata
    store) share its trace id, each with a parent in the trace;
  - the request span's children include the metadata store's calls (`store.call`
    spans, attribute `store`), so the trace is the whole tree;
  - requests whose `traceparent` says "not sampled" (flags 00: a blob push and a manifest
    GET, sent before the sampled PUT) export no span at all;
  - a request without traceparent starts a trace of its own.

REGISTRY is not used (a wharf of its own is started). With E2E_REFERENCE set (another
registry under test) it exits 77. Exit 0 when every check passed.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import hashlib

import requests

if os.environ.get("E2E_REFERENCE"):
    print(f"otlp.py: skipped: tests wharf's own OTLP export, not {os.environ['E2E_REFERENCE']}")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OK = 0
FAILED = 0


def ok(msg):
    global OK
    OK += 1
    print(f"ok - {msg}")


def not_ok(msg):
    global FAILED
    FAILED += 1
    print(f"FAIL - {msg}")


def spans(path):
    """The spans received so far, as (service, span) pairs."""
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                s = json.loads(line)
                out.append((s["service"], s))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wharf_bin():
    for c in (os.environ.get("WHARF_BIN"),
              os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "wharf")):
        if c and os.access(c, os.X_OK):
            return c
    sys.exit("otlp.py: no wharf binary (set WHARF_BIN)")


def main():
    # Over OTLP/HTTP (the default), then OTLP/gRPC (OTEL_EXPORTER_OTLP_PROTOCOL=grpc).
    for protocol in ("http/protobuf", "grpc"):
        run_with(protocol)
    print(f"SUMMARY otlp.py: {OK} checks ok, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


def run_with(protocol):
    tmp = tempfile.mkdtemp(prefix="wharf-otlp-")
    spans_file = os.path.join(tmp, "spans.jsonl")
    grpc = protocol == "grpc"
    receiver = subprocess.Popen([sys.executable, "-u", os.path.join(ROOT, "scripts/lib/otlp_receiver.py"),
                                 spans_file] + (["--grpc"] if grpc else []), stdout=subprocess.PIPE, text=True)
    otlp = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"

    port = free_port()
    config = os.path.join(tmp, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\n"
                f"storage:\n  filesystem:\n    rootdirectory: {tmp}/blobs\n"
                f"database:\n  url: sqlite://{tmp}/wharf.db\n")
    env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=otlp, OTEL_SERVICE_NAME="wharf-e2e",
               OTEL_BSP_SCHEDULE_DELAY="200", RUST_LOG="info", NO_COLOR="1",
               OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
    env.pop("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", None)
    log = open(os.path.join(tmp, "wharf.log"), "w")
    proc = subprocess.Popen([wharf_bin(), "serve", "--config", config], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            sys.exit("otlp.py: wharf did not start: " + open(os.path.join(tmp, "wharf.log")).read()[-2000:])
        print(f"# otlp e2e over {protocol}: wharf at {base}, OTLP receiver at {otlp}")
        run_checks(base, spans_file)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        receiver.kill()


def push_blob(base, repo, data, traceparent=None):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    headers = {"Content-Type": "application/octet-stream"}
    if traceparent:
        headers["traceparent"] = traceparent
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data, headers=headers)
    assert r.status_code == 201, r.status_code
    return digest


def run_checks(base, spans_file):
    repo = "e2e/otlp"
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = secrets.token_bytes(1000)
    cd, ld = push_blob(base, repo, config), push_blob(base, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)}],
    }).encode()
    # Not sampled by the caller: neither request may export a span (they are sent
    # first, so their spans, were there any, would be exported before the PUT's).
    unsampled = secrets.token_hex(16)
    push_blob(base, repo, secrets.token_bytes(500), f"00-{unsampled}-{secrets.token_hex(8)}-00")
    r = requests.get(f"{base}/v2/e2e/otlp/tags/list",
                     headers={"traceparent": f"00-{unsampled}-{secrets.token_hex(8)}-00"})
    assert r.status_code in (200, 404), r.status_code
    trace_id = secrets.token_hex(16)
    parent_id = secrets.token_hex(8)
    r = requests.put(f"{base}/v2/{repo}/manifests/v1", data=manifest, headers={
        "Content-Type": "application/vnd.oci.image.manifest.v1+json",
        "traceparent": f"00-{trace_id}-{parent_id}-01",
    })
    if r.status_code != 201:
        not_ok(f"manifest PUT: {r.status_code} {r.text[:200]}")
        return
    r = requests.get(f"{base}/v2/{repo}/manifests/v1",
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.status_code

    # The batch processor sends every 200 ms here (OTEL_BSP_SCHEDULE_DELAY).
    deadline = time.time() + 30
    while time.time() < deadline:
        received = spans(spans_file)
        ours = [s for _, s in received if s["trace"] == trace_id]
        gets = [s for _, s in received if s["trace"] != trace_id and s["parent"] == ""
                and s["attributes"].get("http.method") == "GET"]
        if ours and gets and len(ours) >= 2:
            break
        time.sleep(0.2)
    services = {svc for svc, _ in received}
    total = len(received)
    if total and services == {"wharf-e2e"}:
        ok(f"{total} spans received, service {sorted(services)}")
    else:
        not_ok(f"spans received: {total}, services {sorted(services)}")

    roots = [s for s in ours if s["parent"] == parent_id]
    if len(roots) == 1 and roots[0]["name"] == "HTTP request":
        ok("the manifest PUT's request span continues the traceparent (its trace id, its span as parent)")
    else:
        not_ok(f"spans whose parent is the traceparent's span: {[(s['name'], s['parent']) for s in roots]}")
        return
    ids = {s["span"] for s in ours}
    children = [s for s in ours if s is not roots[0]]
    if children and all(s["parent"] in ids for s in children):
        ok(f"{len(children)} spans inside the request share its trace and have their parents in it: "
           f"{sorted({s['name'] for s in children})[:8]}")
    else:
        not_ok(f"spans inside the request: {[(s['name'], s['parent']) for s in children]}")
    stores = sorted({s["attributes"].get("store", "") for s in children} - {""})
    if "metadata" in stores:
        ok(f"the request's tree includes its store calls ({stores}), all in its trace")
    else:
        not_ok(f"no metadata store call among the request's spans: {[(s['name'], s['attributes']) for s in children]}")
    leaked = [s for _, s in received if s["trace"] == unsampled]
    if not leaked:
        ok("requests whose traceparent is not sampled export no span")
    else:
        not_ok(f"spans of an unsampled trace exported: {[(s['name'], s['parent']) for s in leaked]}")
    if gets:
        ok("a request without traceparent starts a trace of its own")
    else:
        not_ok("no root span of the GET without traceparent")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""End-to-end: the distribution API over plain HTTP, check by check.

    REGISTRY=127.0.0.1:5000 tests/e2e/api.py [AREA...]

Starts nothing. Written from the text of the OCI Distribution Spec v1.1 and
the OCI Image Spec v1.1 (plus the draft-spec features wharf implements), as a
black-box stand-in for the official conformance suite, which cannot be built
here (see tests/conformance/README.md). It covers what that suite covers:
its workflows and its data sets. The checks live in tests/e2e/spec/, one
module per area, run in this order (or only the AREAs named):

  pull        /v2/, manifests by tag and digest (GET, HEAD, headers, bytes),
              blobs (GET, HEAD, Range), 404s
  push        monolithic, single POST, streamed, chunked, upload status,
              out-of-order chunks, bad digests, sha512 blobs, mounts (with
              and without `from`), manifest PUTs
  discovery   tags/list (?n=, ?last=, Link), _catalog, referrers (filters,
              OCI-Filters-Applied, the empty index)
  management  tag, manifest and blob deletes, upload cancel, referrers after
              a delete
  datatypes   image, index, nested index, artifacts, subject (and a missing
              one), `data`, non-distributable layers, custom fields, no
              layers, the empty blob, sha512: each pushed, listed, HEADed,
              pulled by tag and digest, deleted
  draft       ?tag= on a manifest PUT (OCI-Tag), sparse manifests
              (E2E_SPARSE_MANIFESTS=1 when the registry allows them), the
              digest header on a redirected blob GET

E2E_REFERENCE=distribution-2.8 (scripts/test --against distribution) reports
what the reference registry is known to lack (referrers, OCI-Subject, ?tag=,
sha512 manifests, tag pagination rules, out-of-order chunks...) as "gap"
lines instead of failures; against any other registry they are ordinary
checks. Output: one `ok`/`FAIL`/`gap` line per check, a SUMMARY line with the
counts per area, then `SUMMARY api.py: N checks ok, N failed`.
Exit status 0 when every check passed, 1 otherwise, 2 for a setup error.
"""

import os
import sys
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import requests
except ImportError:  # pragma: no cover
    print("api.py: the requests package is missing (run scripts/install-tools)", file=sys.stderr)
    sys.exit(2)

from spec import common, datatypes, discovery, draft, management, pull, push  # noqa: E402

AREAS = {
    "pull": pull.run,
    "push": push.run,
    "discovery": discovery.run,
    "management": management.run,
    "datatypes": datatypes.run,
    "draft": draft.run,
}


def summary(note=""):
    parts = []
    for area in common.AREAS:
        c = common.COUNTS[area]
        part = f"{area} {c['ok']} ok, {c['failed']} failed"
        if c["gap"]:
            part += f", {c['gap']} gaps"
        parts.append(part)
    t = common.totals()
    for r in common.TRANSPORT_RETRIED:
        print(f"# sent again after a transport failure: {r}")
    if common.TRANSPORT_RETRIED:
        note += f"; {len(common.TRANSPORT_RETRIED)} requests sent again after a transport failure"
    print(f"SUMMARY api.py: {'; '.join(parts)}")
    extra = f", {t['gap']} known gaps of {common.REFERENCE}" if t["gap"] else ""
    print(f"SUMMARY api.py: {t['ok']} checks ok, {t['failed']} failed{extra}{note}")
    return t


def main():
    if not common.REGISTRY:
        common.die("set REGISTRY=host:port of the registry under test")
    wanted = sys.argv[1:] or list(AREAS)
    unknown = [a for a in wanted if a not in AREAS]
    if unknown:
        common.die(f"unknown area(s) {', '.join(unknown)}; areas: {', '.join(AREAS)}")
    print(f"# distribution API checks against {common.REGISTRY}, repositories {common.NS}/api-{common.RUN}-*"
          + (f", reference {common.REFERENCE}" if common.REFERENCE else "")
          + (", sparse manifests allowed" if common.SPARSE else ""))
    for area in wanted:
        common.set_area(area)
        try:
            AREAS[area]()
        except requests.exceptions.ConnectionError as e:
            common.not_ok(f"cannot reach the registry: {e}")
            summary(" (registry unreachable)")
            sys.exit(1)
        except Exception as e:  # a check bug or an answer the checks did not expect
            traceback.print_exc()
            common.not_ok(f"{area}: stopped by {type(e).__name__}: {e}")
    t = summary()
    sys.exit(1 if t["failed"] else 0)


if __name__ == "__main__":
    main()

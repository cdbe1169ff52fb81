#!/usr/bin/env bash
# The load-balanced cluster, tested as its users meet it: `scripts/cluster up` (nginx
# round robin over three instances on S3 (moto) + PostgreSQL + Redis, notifications to
# a receiver), then through the load balancer:
#
#   spec     tests/e2e/api.py, the project's spec suite; every request of an upload may
#            land on another instance. Instance 2 is killed with SIGKILL part-way through
#            the run (CLUSTER_KILL_AFTER seconds, default 20) and started again 3 s later.
#            A request that dies with it (reset, or nginx's 502) is sent again as a real
#            client would (E2E_TRANSPORT_RETRIES=3; the suite lists each one); every
#            answer Wharf gives is checked as strictly as on one instance.
#   clients  tests/e2e/skopeo.sh and tests/e2e/oras_referrers.py (real clients), and
#            containerd's ctr (a daemon of its own on a private socket) pulling the
#            image of the events step and pushing it under another name.
#   events   a push of one image by tag: the receiver gets the push event of each of its
#            blobs and of the manifest (with the tag), each event id once or more.
#   traces   every instance exports over OTLP to a receiver here (otlp_receiver.py);
#            requests through nginx with a traceparent each have exactly one request
#            span continuing it, and the spans come from all three instances.
#
#   tests/cluster/run.sh            (scripts/test runs it as its cluster step)
#
# Needs what scripts/cluster needs (nginx, moto, PostgreSQL, redis-server) and a built
# wharf. Exit status: 0 when every part passed; the summary says which failed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
export WHARF_CLUSTER_DIR="${WHARF_CLUSTER_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/wharf-cluster.XXXXXX")}"
KILL_AFTER="${CLUSTER_KILL_AFTER:-20}"
failed=()
killer=""

otlp_pid=""
finish() {
  local rc=$?
  [[ -z "$killer" ]] || kill "$killer" 2>/dev/null || true
  scripts/cluster down >/dev/null 2>&1 || true
  [[ -z "$otlp_pid" ]] || kill "$otlp_pid" 2>/dev/null || true
  [[ -z "${CONTAINERD_PID:-}" ]] || stop_service "$CONTAINERD_PID"
  rm -f "${SPANS:-}" "${pushed:-}"
  exit "$rc"
}
trap finish EXIT

# An OTLP receiver: every instance exports its traces to it.
SPANS="$WHARF_CLUSTER_DIR.spans.jsonl"
: >"$SPANS"
coproc OTLP { exec python3 -u scripts/lib/otlp_receiver.py "$SPANS"; }
otlp_pid=$OTLP_PID
read -r otlp_port <&"${OTLP[0]}"
export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:${otlp_port}" OTEL_BSP_SCHEDULE_DELAY=200
unset OTEL_EXPORTER_OTLP_PROTOCOL

scripts/cluster up
eval "$(scripts/cluster env)"
echo "# cluster up: load balancer at ${WHARF_CLUSTER_URL}"

# ---- spec: the spec suite through nginx, one instance SIGKILLed and restarted
(
  sleep "$KILL_AFTER"
  scripts/cluster kill 2 KILL
  sleep 3
  scripts/cluster start 2
) >"$WHARF_CLUSTER_DIR/killer.log" 2>&1 &
killer=$!
echo "---- spec suite through the load balancer (wharf2 SIGKILLed after ${KILL_AFTER}s)"
rc=0
E2E_TRANSPORT_RETRIES=3 REGISTRY="$WHARF_CLUSTER_ADDR" timeout 900 tests/e2e/api.py || rc=$?
if wait "$killer"; then
  killer=""
  echo "# killer: $(tr '\n' ' ' <"$WHARF_CLUSTER_DIR/killer.log")"
else
  killer=""
  failed+=("spec: the kill and restart of wharf2 failed: $(tail -n 3 "$WHARF_CLUSTER_DIR/killer.log" | tr '\n' ' ')")
fi
((rc == 0)) || failed+=("spec: tests/e2e/api.py exit ${rc}")
grep -q "SIGKILL\|KILL" "$WHARF_CLUSTER_DIR/killer.log" || failed+=("spec: wharf2 was never killed (the suite ended first?)")

# ---- clients: real clients through the load balancer
for t in tests/e2e/skopeo.sh tests/e2e/oras_referrers.py; do
  echo "---- $(basename "$t") through the load balancer"
  rc=0
  REGISTRY="$WHARF_CLUSTER_ADDR" timeout 600 "$t" || rc=$?
  ((rc == 0)) || failed+=("clients: $(basename "$t") exit ${rc}")
done

# ---- events: every event of a push reaches the receiver
echo "---- events of a push reach the receiver"
rc=0
pushed="$WHARF_CLUSTER_DIR.pushed"
python3 - "$WHARF_CLUSTER_URL" "$WHARF_CLUSTER_RECEIVER_LOG" "$pushed" <<'PY' || rc=$?
import hashlib, json, sys, time, urllib.request

base, log = sys.argv[1], sys.argv[2]
repo = f"cluster/events-{int(time.time())}"

def req(method, url, data=None, headers=None):
    r = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(r, timeout=30) as resp:
        return resp.status, resp.headers

def push_blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers = req("POST", f"{base}/v2/{repo}/blobs/uploads/")
    assert status == 202, status
    loc = headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    sep = "&" if "?" in loc else "?"
    status, _ = req("PUT", f"{loc}{sep}digest={digest}", data,
                    {"Content-Type": "application/octet-stream"})
    assert status == 201, status
    return digest

# A real image (a tar layer, its diff_id in the config), so containerd can unpack it.
import io, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tar:
    data = (repo + "\n").encode() * 100
    info = tarfile.TarInfo("hello.txt")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
layer = buf.getvalue()
ld = push_blob(layer)
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode()
cd = push_blob(config)
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)}],
}).encode()
md = "sha256:" + hashlib.sha256(manifest).hexdigest()
status, _ = req("PUT", f"{base}/v2/{repo}/manifests/v1", manifest,
                {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
assert status == 201, status

want = {("push", cd, None), ("push", ld, None), ("push", md, "v1")}
deadline = time.time() + 60
seen = set()
while time.time() < deadline:
    seen = set()
    with open(log) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("repository") != repo:
                continue
            seen.add((rec.get("action"), rec.get("digest"), rec.get("tag") or None))
    if want <= seen:
        print(f"# receiver got all {len(want)} push events of {repo}")
        open(sys.argv[3], "w").write(f"{repo} {md}\n")
        sys.exit(0)
    time.sleep(0.5)
print(f"missing events: {sorted(map(str, want - seen))}; seen {sorted(map(str, seen))}", file=sys.stderr)
sys.exit(1)
PY
((rc == 0)) || failed+=("events: the receiver did not get every push event")

# ---- ctr: containerd's client pulls and pushes through the load balancer
echo "---- containerd's ctr through the load balancer"
rc=0
if [[ ! -s "$pushed" ]]; then
  failed+=("ctr: not run, the events step pushed no image")
else
  read -r repo digest <"$pushed"
  cdir="$WHARF_CLUSTER_DIR.containerd"
  if ! start_containerd "$cdir"; then
    failed+=("ctr: containerd did not start (see above)")
  fi
fi
if [[ -s "$pushed" && -n "${CONTAINERD_PID:-}" ]] && _alive "$CONTAINERD_PID"; then
  CTR=(ctr -a "$CONTAINERD_SOCK" -n cluster)
  ref="$WHARF_CLUSTER_ADDR/$repo:v1"
  if "${CTR[@]}" images pull --plain-http --snapshotter native "$ref" >"$cdir/pull.log" 2>&1 \
    && [[ "$("${CTR[@]}" images ls | awk -v r="$ref" '$1 == r { print $3 }')" == "$digest" ]]; then
    echo "ok - ctr pulled $ref ($digest)"
  else
    rc=1
    failed+=("ctr: pull of $ref: $(tail -n 3 "$cdir/pull.log" | tr '\n' ' ')")
  fi
  copy="$WHARF_CLUSTER_ADDR/$repo-ctr:v1"
  if ((rc == 0)) && "${CTR[@]}" images tag "$ref" "$copy" >/dev/null \
    && "${CTR[@]}" images push --plain-http "$copy" >"$cdir/push.log" 2>&1 \
    && [[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
      "$WHARF_CLUSTER_URL/v2/$repo-ctr/manifests/$digest")" == 200 ]]; then
    echo "ok - ctr pushed $copy, served by digest through the load balancer"
  elif ((rc == 0)); then
    failed+=("ctr: push of $copy: $(tail -n 3 "$cdir/push.log" | tr '\n' ' ')")
  fi
  stop_service "$CONTAINERD_PID"
  rm -rf "$cdir"
fi

# ---- traces: every instance exports; one trace per request, through the LB
echo "---- traces from every instance reach the OTLP receiver, one trace per request"
rc=0
python3 - "$WHARF_CLUSTER_URL" "$SPANS" "$WHARF_CLUSTER_INSTANCES" <<'PY' || rc=$?
import json, secrets, sys, time, urllib.request

base, spans_file, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sent = {}
for _ in range(6 * n):
    trace, parent = secrets.token_hex(16), secrets.token_hex(8)
    r = urllib.request.Request(f"{base}/v2/", headers={"traceparent": f"00-{trace}-{parent}-01"})
    with urllib.request.urlopen(r, timeout=10) as resp:
        assert resp.status == 200
    sent[trace] = parent
deadline = time.time() + 30
while True:
    spans = [json.loads(l) for l in open(spans_file) if l.strip()]
    roots = {}
    for s in spans:
        if s["trace"] in sent and s["name"] == "HTTP request":
            roots.setdefault(s["trace"], []).append(s)
    if len(roots) == len(sent) or time.time() > deadline:
        break
    time.sleep(0.3)
instances = {s["instance"] for s in spans}
bad = [t for t in sent if len(roots.get(t, [])) != 1 or roots[t][0]["parent"] != sent[t]]
served_by = {roots[t][0]["instance"] for t in sent if t in roots}
print(f"# {len(spans)} spans from {sorted(instances)}; {len(sent)} traced requests served by {sorted(served_by)}")
if bad:
    print(f"requests without exactly one root span continuing their traceparent: {len(bad)}", file=sys.stderr)
    sys.exit(1)
if len(served_by) != n or len(instances - {''}) < n:
    print(f"traces from {sorted(instances)}, want {n} instances", file=sys.stderr)
    sys.exit(1)
PY
((rc == 0)) || failed+=("traces: not every instance's traces arrived, one per request")

echo
if ((${#failed[@]})); then
  printf 'cluster: FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "cluster: spec suite, clients, events and traces through the load balancer passed"

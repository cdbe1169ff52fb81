# shellcheck shell=bash
# Shared helpers for Wharf's shell scripts: paths, logging, environment.
# Source it; it defines functions and variables and changes no shell options.

if [[ -n "${_WHARF_COMMON_SH:-}" ]]; then
  return 0
fi
_WHARF_COMMON_SH=1

# Repository root (this file lives in scripts/lib/).
WHARF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export WHARF_ROOT

# One cargo target directory for every script (the bench helper uses it too).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/wharf-target}"

# A CA bundle inherited from the environment makes some AWS SDKs (and tools
# built on them) fail to start when the file is absent; the tests never need it.
unset AWS_CA_BUNDLE

# Logging to stderr, with the calling script's name.
_log_prefix() { printf '[%s %s]' "${WHARF_LOG_NAME:-$(basename "$0")}" "$(date +%H:%M:%S)"; }
log()  { printf '%s %s\n' "$(_log_prefix)" "$*" >&2; }
warn() { printf '%s WARNING: %s\n' "$(_log_prefix)" "$*" >&2; }
die()  { printf '%s ERROR: %s\n' "$(_log_prefix)" "$*" >&2; exit 1; }

# have CMD: true if CMD is on PATH.
have() { command -v "$1" >/dev/null 2>&1; }

# Run as root, or through sudo when not root.
as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif have sudo; then
    sudo "$@"
  else
    die "need root for: $*"
  fi
}

#!/bin/sh
# Entry point of the Wharf image: materializes file secrets, then runs wharf as PID 1
# (actix-web shuts down gracefully on SIGTERM, so no init process is needed).
#
# Some platforms inject secrets only as environment variables (ECS Fargate), but Wharf
# reads the CloudFront private key from a file (middleware.storage[].options.privatekey).
# When WHARF_CLOUDFRONT_PRIVATE_KEY holds a PEM, it is written to
# WHARF_CLOUDFRONT_PRIVATE_KEY_FILE (default /run/wharf/cloudfront-private-key.pem,
# mode 0600) and removed from the environment wharf sees; point privatekey at that path.
set -eu

if [ -n "${WHARF_CLOUDFRONT_PRIVATE_KEY:-}" ]; then
  key_file="${WHARF_CLOUDFRONT_PRIVATE_KEY_FILE:-/run/wharf/cloudfront-private-key.pem}"
  (
    umask 077
    printf '%s\n' "$WHARF_CLOUDFRONT_PRIVATE_KEY" > "$key_file"
  )
  unset WHARF_CLOUDFRONT_PRIVATE_KEY
fi

exec /usr/local/bin/wharf "$@"

# syntax=docker/dockerfile:1.7
#
# Wharf container image.
#
#   docker build -t wharf:dev --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg REVISION=$(git rev-parse HEAD) \
#                --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
#
# Stage 1 builds the shipped binary (the `dist` profile: release plus thin LTO; see
# Cargo.toml) with BuildKit cache mounts (the cargo registry and
# the target directory survive between builds, so a source-only change recompiles only
# Wharf). Stage 2 is debian:bookworm-slim with ca-certificates (TLS to the object
# store, Redis and the token endpoints of the clouds) and curl (the HEALTHCHECK below).
# distroless/cc would be smaller but has no shell or HTTP client for a HEALTHCHECK, and
# Wharf has no health subcommand yet; orchestrators that probe over HTTP themselves
# (ECS/ALB, Cloud Run, Container Apps, Kubernetes) do not need it, docker and compose do.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# Only what the build reads: the workspace manifests (bench/ is a workspace member, so
# its manifest and sources must be present for --locked resolution), the sources and the
# SQL migrations that sqlx::migrate! embeds at compile time.
COPY Cargo.toml Cargo.lock ./
COPY bench/Cargo.toml bench/Cargo.toml
COPY bench/src bench/src
COPY migrations migrations
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile dist --locked --bin wharf \
 && install -D -m 0755 target/dist/wharf /out/wharf \
 && /out/wharf --version

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="wharf" \
      org.opencontainers.image.description="A container registry (OCI Distribution Spec v1.1, Docker registry/2.0 API)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_RELEASE}-slim"

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 wharf \
 && useradd --system --uid 10001 --gid wharf --home-dir /var/lib/wharf --shell /usr/sbin/nologin wharf \
 && install -d -o wharf -g wharf -m 0750 /var/lib/wharf \
 && install -d -o wharf -g wharf -m 0700 /run/wharf

COPY --from=builder /out/wharf /usr/local/bin/wharf
COPY deploy/docker/entrypoint.sh /usr/local/bin/wharf-entrypoint
COPY deploy/docker/config.yml /etc/wharf/config.yml

# The default configuration listens on :5000 with filesystem blobs and SQLite under
# /var/lib/wharf (mount a volume there); deployments mount their own file over it or
# set REGISTRY_* variables, which override any key of the file.
ENV WHARF_CONFIG=/etc/wharf/config.yml \
    WHARF_HEALTHCHECK_URL=http://127.0.0.1:5000/readyz

# /run/wharf is where the entrypoint writes secrets that Wharf reads from files but that
# some platforms can only hand over as environment variables (the CloudFront private
# key on ECS Fargate). It is declared a volume so that it stays writable, and owned by
# the wharf user, when the root filesystem is read-only (ECS copies a VOLUME's
# ownership into the task's bind mount).
VOLUME ["/run/wharf"]

USER 10001:10001
WORKDIR /var/lib/wharf
EXPOSE 5000

# /readyz answers 200 when the metadata database answers, 503 otherwise. Change
# WHARF_HEALTHCHECK_URL with http.addr.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS --max-time 4 -o /dev/null "$WHARF_HEALTHCHECK_URL" || exit 1

ENTRYPOINT ["/usr/local/bin/wharf-entrypoint"]
CMD ["serve"]

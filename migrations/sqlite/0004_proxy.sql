-- Pull-through cache (proxy) state, shared by every instance. Kept in step with
-- ../postgres/0004_proxy.sql.

-- A blob being fetched from an upstream: one row per digest across the cluster, the
-- lease of the instance that fetches it. `token` changes with every owner (a new
-- claim or a take-over of an expired lease), so an owner that stalled and lost its
-- lease can tell. The bytes go to the upload session `upload_id`, whose `received`
-- is what followers may read; `committed` repeats it for observation.
CREATE TABLE proxy_fills (
    digest              TEXT    PRIMARY KEY,
    repository          TEXT    NOT NULL,
    upstream            TEXT    NOT NULL,
    upstream_repository TEXT    NOT NULL,
    upload_id           TEXT    NOT NULL,
    owner               TEXT    NOT NULL,
    token               TEXT    NOT NULL,
    size                INTEGER,
    committed           INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    created_at          INTEGER NOT NULL
);

-- What a cached tag pointed at upstream when it was last fetched or revalidated.
CREATE TABLE proxy_tags (
    repository  TEXT    NOT NULL,
    tag         TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    fetched_at  INTEGER NOT NULL,
    PRIMARY KEY (repository, tag)
);

-- Content the cache holds (manifests and blobs, per repository): for expiry (not
-- pulled for the upstream's ttl) and eviction (least recently pulled first).
CREATE TABLE proxy_content (
    repository  TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    upstream    TEXT    NOT NULL,
    is_manifest INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    fetched_at  INTEGER NOT NULL,
    last_pulled INTEGER NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX proxy_content_pulled ON proxy_content (last_pulled);
CREATE INDEX proxy_content_upstream ON proxy_content (upstream, last_pulled);

-- Leases of the cache's periodic sweeps (expiry, eviction): one instance runs each.
CREATE TABLE proxy_sweeps (
    name        TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
);

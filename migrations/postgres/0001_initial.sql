-- Wharf metadata schema (PostgreSQL). Kept in step with ../sqlite/0001_initial.sql.
-- Blobs are content-addressed here, not by their storage path: storage_key says where
-- the bytes are, so committing an upload never renames or copies it.
--
-- Names and tags are COLLATE "C": the spec pages `_catalog` and `tags/list` in lexical
-- (byte) order, which is what SQLite's default BINARY collation gives; a database
-- created with en_US.UTF-8 or an ICU locale (the default on managed services) would
-- otherwise order "a-b" after "ab" and break `last=` pagination.

CREATE TABLE repositories (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE blobs (
    digest      TEXT    PRIMARY KEY,
    size        BIGINT NOT NULL,
    storage_key TEXT    NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE repository_blobs (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL REFERENCES blobs (digest),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repository_id  BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest         TEXT    NOT NULL,
    media_type     TEXT    NOT NULL,
    payload        BYTEA    NOT NULL,
    subject_digest TEXT,
    artifact_type  TEXT,
    annotations    TEXT,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests (repository_id, subject_digest)
    WHERE subject_digest IS NOT NULL;

-- What each manifest references: blobs (config, layers) and child manifests (index).
CREATE TABLE manifest_references (
    repository_id   BIGINT NOT NULL,
    manifest_digest TEXT    NOT NULL,
    child_digest    TEXT    NOT NULL,
    child_is_manifest BOOLEAN NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, child_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_references_child ON manifest_references (repository_id, child_digest);

CREATE TABLE tags (
    repository_id   BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name            TEXT    COLLATE "C" NOT NULL,
    manifest_digest TEXT    NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);

CREATE TABLE upload_sessions (
    id          TEXT    PRIMARY KEY,
    repository  TEXT    NOT NULL,
    received    BIGINT NOT NULL,
    storage_key TEXT    NOT NULL,
    chunks      TEXT    NOT NULL,
    hash_state  BYTEA    NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX upload_sessions_updated ON upload_sessions (updated_at);

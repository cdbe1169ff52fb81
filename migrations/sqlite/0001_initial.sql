-- Wharf metadata schema (SQLite). Kept in step with ../postgres/0001_initial.sql.
-- Blobs are content-addressed here, not by their storage path: storage_key says where
-- the bytes are, so committing an upload never renames or copies it.

CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE blobs (
    digest      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL,
    storage_key TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL REFERENCES blobs (digest),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repository_id  INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest         TEXT    NOT NULL,
    media_type     TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    subject_digest TEXT,
    artifact_type  TEXT,
    annotations    TEXT,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests (repository_id, subject_digest)
    WHERE subject_digest IS NOT NULL;

-- What each manifest references: blobs (config, layers) and child manifests (index).
CREATE TABLE manifest_references (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT    NOT NULL,
    child_digest    TEXT    NOT NULL,
    child_is_manifest INTEGER NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, child_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_references_child ON manifest_references (repository_id, child_digest);

CREATE TABLE tags (
    repository_id   INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    manifest_digest TEXT    NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);

CREATE TABLE upload_sessions (
    id          TEXT    PRIMARY KEY,
    repository  TEXT    NOT NULL,
    received    INTEGER NOT NULL,
    storage_key TEXT    NOT NULL,
    chunks      TEXT    NOT NULL,
    hash_state  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX upload_sessions_updated ON upload_sessions (updated_at);

-- Online garbage collection (SQLite). Kept in step with ../postgres/0002_gc.sql.
-- Expand only: new tables, a nullable column, indexes and triggers; nothing 0001 made
-- is changed, so the previous release keeps working beside this one (and its writes
-- queue reviews too: the triggers below do the queueing, not the code).
--
-- A review says "look at this blob / manifest once `event_at` + storage.gc.reviewdelay
-- has passed". `event_at` is the last event that may have made it garbage (a reference
-- dropped) or shown it in use (an upload, a mount, a HEAD): later events push it back.
-- Times here are the database's clock, Unix milliseconds.

-- When a manifest was last pulled (GET or HEAD), recorded in batches; for retention's
-- keeppulledwithin.
ALTER TABLE manifests ADD COLUMN last_pulled_at INTEGER;

CREATE TABLE gc_blob_reviews (
    digest   TEXT    PRIMARY KEY,
    event_at INTEGER NOT NULL
);
CREATE INDEX gc_blob_reviews_event ON gc_blob_reviews (event_at);

CREATE TABLE gc_manifest_reviews (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL,
    event_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX gc_manifest_reviews_event ON gc_manifest_reviews (event_at);

-- A blob object being deleted: written (with the blob's rows removed) in the
-- transaction that decides the blob is garbage, removed once the object is gone.
-- Keyed by storage key: a digest collected, pushed again and collected again has two.
CREATE TABLE gc_tombstones (
    storage_key TEXT    PRIMARY KEY,
    digest      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX gc_tombstones_digest ON gc_tombstones (digest);

-- The writes that drop a reference queue a review of what they dropped.

-- A tag moved: the manifest it left.
CREATE TRIGGER gc_tag_moved AFTER UPDATE OF manifest_digest ON tags
FOR EACH ROW WHEN OLD.manifest_digest <> NEW.manifest_digest
BEGIN
    INSERT INTO gc_manifest_reviews (repository_id, digest, event_at)
    SELECT OLD.repository_id, OLD.manifest_digest,
           CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
    WHERE EXISTS (SELECT 1 FROM manifests m
                  WHERE m.repository_id = OLD.repository_id AND m.digest = OLD.manifest_digest)
    ON CONFLICT (repository_id, digest) DO UPDATE SET event_at = max(event_at, excluded.event_at);
END;

-- A tag deleted (not with its manifest: then the manifest is gone already).
CREATE TRIGGER gc_tag_deleted AFTER DELETE ON tags
FOR EACH ROW
BEGIN
    INSERT INTO gc_manifest_reviews (repository_id, digest, event_at)
    SELECT OLD.repository_id, OLD.manifest_digest,
           CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
    WHERE EXISTS (SELECT 1 FROM manifests m
                  WHERE m.repository_id = OLD.repository_id AND m.digest = OLD.manifest_digest)
    ON CONFLICT (repository_id, digest) DO UPDATE SET event_at = max(event_at, excluded.event_at);
END;

-- A manifest deleted: its references go (ON DELETE CASCADE), each queueing its child;
-- a child manifest only while it still exists.
CREATE TRIGGER gc_reference_dropped AFTER DELETE ON manifest_references
FOR EACH ROW
BEGIN
    INSERT INTO gc_manifest_reviews (repository_id, digest, event_at)
    SELECT OLD.repository_id, OLD.child_digest,
           CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
    WHERE OLD.child_is_manifest
      AND EXISTS (SELECT 1 FROM manifests m
                  WHERE m.repository_id = OLD.repository_id AND m.digest = OLD.child_digest)
    ON CONFLICT (repository_id, digest) DO UPDATE SET event_at = max(event_at, excluded.event_at);
    INSERT INTO gc_blob_reviews (digest, event_at)
    SELECT OLD.child_digest, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
    WHERE NOT OLD.child_is_manifest
    ON CONFLICT (digest) DO UPDATE SET event_at = max(event_at, excluded.event_at);
END;

-- A manifest deleted: its referrers (signatures, SBOMs) in the repository.
CREATE TRIGGER gc_manifest_deleted AFTER DELETE ON manifests
FOR EACH ROW
BEGIN
    INSERT INTO gc_manifest_reviews (repository_id, digest, event_at)
    SELECT m.repository_id, m.digest, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
    FROM manifests m
    WHERE m.repository_id = OLD.repository_id AND m.subject_digest = OLD.digest
    ON CONFLICT (repository_id, digest) DO UPDATE SET event_at = max(event_at, excluded.event_at);
END;

-- A blob linked (an upload committed, a mount) or unlinked (a blob DELETE, GC).
CREATE TRIGGER gc_blob_linked AFTER INSERT ON repository_blobs
FOR EACH ROW
BEGIN
    INSERT INTO gc_blob_reviews (digest, event_at)
    VALUES (NEW.digest, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))
    ON CONFLICT (digest) DO UPDATE SET event_at = max(event_at, excluded.event_at);
END;

CREATE TRIGGER gc_blob_unlinked AFTER DELETE ON repository_blobs
FOR EACH ROW
BEGIN
    INSERT INTO gc_blob_reviews (digest, event_at)
    VALUES (OLD.digest, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))
    ON CONFLICT (digest) DO UPDATE SET event_at = max(event_at, excluded.event_at);
END;

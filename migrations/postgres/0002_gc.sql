-- Online garbage collection (PostgreSQL). Kept in step with ../sqlite/0002_gc.sql.
-- Expand only: new tables, a nullable column, indexes, functions and triggers; nothing
-- 0001 made is changed, so the previous release keeps working beside this one (and its
-- writes queue reviews too: the triggers below do the queueing, not the code).
--
-- A review says "look at this blob / manifest once `event_at` + storage.gc.reviewdelay
-- has passed". `event_at` is the last event that may have made it garbage (a reference
-- dropped) or shown it in use (an upload, a mount, a HEAD): later events push it back.
-- Times here are the database's clock (one clock for every instance), Unix ms.

-- When a manifest was last pulled (GET or HEAD), recorded in batches; for retention's
-- keeppulledwithin.
ALTER TABLE manifests ADD COLUMN last_pulled_at BIGINT;

CREATE TABLE gc_blob_reviews (
    digest   TEXT   PRIMARY KEY,
    event_at BIGINT NOT NULL
);
CREATE INDEX gc_blob_reviews_event ON gc_blob_reviews (event_at);

CREATE TABLE gc_manifest_reviews (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT   NOT NULL,
    event_at      BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX gc_manifest_reviews_event ON gc_manifest_reviews (event_at);

-- A blob object being deleted: written (with the blob's rows removed) in the
-- transaction that decides the blob is garbage, removed once the object is gone.
-- Keyed by storage key: a digest collected, pushed again and collected again has two.
CREATE TABLE gc_tombstones (
    storage_key TEXT   PRIMARY KEY,
    digest      TEXT   NOT NULL,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX gc_tombstones_digest ON gc_tombstones (digest);

CREATE FUNCTION gc_now() RETURNS BIGINT LANGUAGE sql VOLATILE AS
$$ SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT $$;

-- Queues (or pushes back) the review of a manifest, while it exists.
CREATE FUNCTION gc_queue_manifest(repo BIGINT, manifest TEXT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO gc_manifest_reviews (repository_id, digest, event_at)
    SELECT repo, manifest, gc_now()
    WHERE EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = repo AND m.digest = manifest)
    ON CONFLICT (repository_id, digest)
    DO UPDATE SET event_at = GREATEST(gc_manifest_reviews.event_at, excluded.event_at)
$$;

-- Queues (or pushes back) the review of a blob.
CREATE FUNCTION gc_queue_blob(blob TEXT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO gc_blob_reviews (digest, event_at) VALUES (blob, gc_now())
    ON CONFLICT (digest)
    DO UPDATE SET event_at = GREATEST(gc_blob_reviews.event_at, excluded.event_at)
$$;

-- A tag moved or deleted: the manifest it left (not when the manifest itself is being
-- deleted: gc_queue_manifest checks it still exists).
CREATE FUNCTION gc_tag_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_queue_manifest(OLD.repository_id, OLD.manifest_digest);
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_tag_moved AFTER UPDATE OF manifest_digest ON tags
    FOR EACH ROW WHEN (OLD.manifest_digest IS DISTINCT FROM NEW.manifest_digest)
    EXECUTE FUNCTION gc_tag_dropped();
CREATE TRIGGER gc_tag_deleted AFTER DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION gc_tag_dropped();

-- A manifest deleted: its references go (ON DELETE CASCADE), each queueing its child.
CREATE FUNCTION gc_reference_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.child_is_manifest THEN
        PERFORM gc_queue_manifest(OLD.repository_id, OLD.child_digest);
    ELSE
        PERFORM gc_queue_blob(OLD.child_digest);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_reference_dropped AFTER DELETE ON manifest_references
    FOR EACH ROW EXECUTE FUNCTION gc_reference_dropped();

-- A manifest deleted: its referrers (signatures, SBOMs) in the repository.
CREATE FUNCTION gc_manifest_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gc_manifest_reviews (repository_id, digest, event_at)
    SELECT m.repository_id, m.digest, gc_now() FROM manifests m
    WHERE m.repository_id = OLD.repository_id AND m.subject_digest = OLD.digest
    ON CONFLICT (repository_id, digest)
    DO UPDATE SET event_at = GREATEST(gc_manifest_reviews.event_at, excluded.event_at);
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_manifest_deleted AFTER DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION gc_manifest_deleted();

-- A blob linked (an upload committed, a mount) or unlinked (a blob DELETE, GC).
CREATE FUNCTION gc_blob_link_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM gc_queue_blob(NEW.digest);
    ELSE
        PERFORM gc_queue_blob(OLD.digest);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_blob_linked AFTER INSERT OR DELETE ON repository_blobs
    FOR EACH ROW EXECUTE FUNCTION gc_blob_link_changed();

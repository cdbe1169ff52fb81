-- Storage quotas (PostgreSQL). Kept in step with ../sqlite/0006_quotas.sql, which
-- explains the scopes and the counters. Expand only: new tables, an index, functions
-- and triggers.
--
-- The counting triggers never update a shared row: each change is a row appended to
-- `quota_usage_deltas`, and a scope's figures are `quota_usage` (the compacted base)
-- plus its deltas (the view `quota_usage_totals`). A per-scope counter row updated by
-- every link would serialize every write of a namespace behind garbage collection's
-- batches and deadlock with them (a commit holding its blob's key lock waiting for the
-- counter, a review holding the counter waiting for that blob). Reservations lock the
-- `quota_usage` row of their scope, which only they and compaction take.
--
-- Concurrency (READ COMMITTED, several instances): whether a link makes a blob new to
-- a scope is decided by `INSERT … ON CONFLICT DO UPDATE … RETURNING refs` on
-- `quota_scope_blobs(scope, digest)`, which takes the row's lock and sees the latest
-- committed count, so two transactions linking the same blob into one namespace count
-- it once. Every trigger takes the scopes' rows in scope order (`ORDER BY scope`: a
-- namespace before what is inside it), the same order the quota reservations lock
-- them in, so they wait on each other rather than deadlock.

CREATE TABLE quota_repository_scopes (
    repository_id BIGINT NOT NULL,
    scope         TEXT   NOT NULL,
    PRIMARY KEY (repository_id, scope)
);
CREATE INDEX quota_repository_scopes_scope ON quota_repository_scopes (scope);

CREATE TABLE quota_usage (
    scope         TEXT   PRIMARY KEY,
    logical_bytes BIGINT NOT NULL DEFAULT 0,
    stored_bytes  BIGINT NOT NULL DEFAULT 0,
    blobs         BIGINT NOT NULL DEFAULT 0,
    manifests     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE quota_usage_deltas (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope         TEXT   NOT NULL,
    logical_bytes BIGINT NOT NULL DEFAULT 0,
    stored_bytes  BIGINT NOT NULL DEFAULT 0,
    blobs         BIGINT NOT NULL DEFAULT 0,
    manifests     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX quota_usage_deltas_scope ON quota_usage_deltas (scope);

CREATE VIEW quota_usage_totals AS
SELECT scope, CAST(sum(logical_bytes) AS BIGINT) AS logical_bytes,
       CAST(sum(stored_bytes) AS BIGINT) AS stored_bytes,
       CAST(sum(blobs) AS BIGINT) AS blobs, CAST(sum(manifests) AS BIGINT) AS manifests
FROM (SELECT scope, logical_bytes, stored_bytes, blobs, manifests FROM quota_usage
      UNION ALL
      SELECT scope, logical_bytes, stored_bytes, blobs, manifests FROM quota_usage_deltas) u
GROUP BY scope;

CREATE TABLE quota_scope_blobs (
    scope  TEXT   NOT NULL,
    digest TEXT   NOT NULL,
    refs   BIGINT NOT NULL,
    PRIMARY KEY (scope, digest)
);

CREATE TABLE quota_limits (
    scope      TEXT   PRIMARY KEY,
    bytes      BIGINT NOT NULL,
    source     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE quota_reservations (
    id         TEXT   PRIMARY KEY,
    repository TEXT   NOT NULL,
    bytes      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX quota_reservations_repository ON quota_reservations (repository);

CREATE INDEX quota_manifest_references_child ON manifest_references (child_digest)
    WHERE NOT child_is_manifest;

-- A repository's scopes: its name, and its name up to each `/`.
CREATE FUNCTION quota_scopes_of(name TEXT) RETURNS SETOF TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT substr(name, 1, p) FROM generate_series(1, length(name) - 1) AS p
    WHERE substr(name, p, 1) = '/'
    UNION SELECT name
$$;

INSERT INTO quota_repository_scopes (repository_id, scope)
SELECT r.id, s FROM repositories r, quota_scopes_of(r.name) AS s;
INSERT INTO quota_scope_blobs (scope, digest, refs)
SELECT s.scope, rb.digest, count(*) FROM repository_blobs rb
JOIN quota_repository_scopes s ON s.repository_id = rb.repository_id
GROUP BY s.scope, rb.digest;
INSERT INTO quota_usage (scope) SELECT DISTINCT scope FROM quota_repository_scopes;
UPDATE quota_usage SET
    stored_bytes = (SELECT coalesce(sum(b.size), 0) FROM quota_scope_blobs q
                    JOIN blobs b ON b.digest = q.digest WHERE q.scope = quota_usage.scope),
    blobs = (SELECT count(*) FROM quota_scope_blobs q WHERE q.scope = quota_usage.scope),
    logical_bytes = (SELECT coalesce(sum(b.size), 0) FROM manifest_references mr
                     JOIN quota_repository_scopes s ON s.repository_id = mr.repository_id
                     JOIN blobs b ON b.digest = mr.child_digest
                     WHERE s.scope = quota_usage.scope AND NOT mr.child_is_manifest),
    manifests = (SELECT count(*) FROM manifests m
                 JOIN quota_repository_scopes s ON s.repository_id = m.repository_id
                 WHERE s.scope = quota_usage.scope);

CREATE FUNCTION quota_repository_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO quota_repository_scopes (repository_id, scope)
    SELECT NEW.id, s FROM quota_scopes_of(NEW.name) AS s
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER quota_repository_created AFTER INSERT ON repositories
    FOR EACH ROW EXECUTE FUNCTION quota_repository_created();

CREATE FUNCTION quota_blob_link_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s TEXT;
    n BIGINT;
    sz BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT size INTO sz FROM blobs WHERE digest = NEW.digest;
        FOR s IN SELECT scope FROM quota_repository_scopes
                 WHERE repository_id = NEW.repository_id ORDER BY scope LOOP
            INSERT INTO quota_scope_blobs AS q (scope, digest, refs) VALUES (s, NEW.digest, 1)
            ON CONFLICT (scope, digest) DO UPDATE SET refs = q.refs + 1
            RETURNING q.refs INTO n;
            IF n = 1 THEN
                INSERT INTO quota_usage_deltas (scope, stored_bytes, blobs)
                VALUES (s, coalesce(sz, 0), 1);
            END IF;
        END LOOP;
    ELSE
        SELECT size INTO sz FROM blobs WHERE digest = OLD.digest;
        FOR s IN SELECT scope FROM quota_repository_scopes
                 WHERE repository_id = OLD.repository_id ORDER BY scope LOOP
            UPDATE quota_scope_blobs SET refs = refs - 1
            WHERE scope = s AND digest = OLD.digest RETURNING refs INTO n;
            IF n IS NOT NULL AND n <= 0 THEN
                DELETE FROM quota_scope_blobs WHERE scope = s AND digest = OLD.digest;
                INSERT INTO quota_usage_deltas (scope, stored_bytes, blobs)
                VALUES (s, -coalesce(sz, 0), -1);
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER quota_blob_link_changed AFTER INSERT OR DELETE ON repository_blobs
    FOR EACH ROW EXECUTE FUNCTION quota_blob_link_changed();

CREATE FUNCTION quota_manifest_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s TEXT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        FOR s IN SELECT scope FROM quota_repository_scopes
                 WHERE repository_id = NEW.repository_id ORDER BY scope LOOP
            INSERT INTO quota_usage_deltas (scope, manifests) VALUES (s, 1);
        END LOOP;
    ELSE
        FOR s IN SELECT scope FROM quota_repository_scopes
                 WHERE repository_id = OLD.repository_id ORDER BY scope LOOP
            INSERT INTO quota_usage_deltas (scope, manifests) VALUES (s, -1);
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER quota_manifest_changed AFTER INSERT OR DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION quota_manifest_changed();

CREATE FUNCTION quota_reference_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s TEXT;
    sz BIGINT;
    repo BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT size INTO sz FROM blobs WHERE digest = NEW.child_digest;
        repo := NEW.repository_id;
    ELSE
        SELECT -size INTO sz FROM blobs WHERE digest = OLD.child_digest;
        repo := OLD.repository_id;
    END IF;
    IF sz IS NOT NULL THEN
        FOR s IN SELECT scope FROM quota_repository_scopes
                 WHERE repository_id = repo ORDER BY scope LOOP
            INSERT INTO quota_usage_deltas (scope, logical_bytes) VALUES (s, sz);
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER quota_reference_added AFTER INSERT ON manifest_references
    FOR EACH ROW WHEN (NOT NEW.child_is_manifest)
    EXECUTE FUNCTION quota_reference_changed();
CREATE TRIGGER quota_reference_dropped AFTER DELETE ON manifest_references
    FOR EACH ROW WHEN (NOT OLD.child_is_manifest)
    EXECUTE FUNCTION quota_reference_changed();

-- A blob recorded or deleted while sparse manifests reference it.
CREATE FUNCTION quota_blob_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
    d TEXT;
    sz BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        d := NEW.digest;
        sz := NEW.size;
    ELSE
        d := OLD.digest;
        sz := -OLD.size;
    END IF;
    FOR r IN SELECT s.scope, count(*) AS n FROM manifest_references mr
             JOIN quota_repository_scopes s ON s.repository_id = mr.repository_id
             WHERE mr.child_digest = d AND NOT mr.child_is_manifest
             GROUP BY s.scope ORDER BY s.scope LOOP
        INSERT INTO quota_usage_deltas (scope, logical_bytes) VALUES (r.scope, sz * r.n);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER quota_blob_row_changed AFTER INSERT OR DELETE ON blobs
    FOR EACH ROW EXECUTE FUNCTION quota_blob_row_changed();

CREATE FUNCTION quota_upload_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM quota_reservations WHERE id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER quota_upload_ended AFTER DELETE ON upload_sessions
    FOR EACH ROW EXECUTE FUNCTION quota_upload_ended();

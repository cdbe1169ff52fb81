-- Storage quotas (SQLite). Kept in step with ../postgres/0006_quotas.sql.
-- Expand only: new tables, an index and triggers.
--
-- A *scope* is a repository name (`team-a/app`) or a namespace prefix ending in `/`
-- (`team-a/`, `team-a/sub/`): every repository belongs to its own scope and to one
-- scope per `/` in its name. Every scope has counters, whether or not a quota names it,
-- so a quota set at run time is enforced against exact figures at once.
--
-- The counters are kept by triggers on the rows they count, in the transaction of the
-- write — every writer (an upload's commit, a mount, a blob DELETE, garbage
-- collection's unlinks, the pull-through cache, a cascade) counts the same way:
-- - stored_bytes / blobs: the scope's unique blobs, each once however many of the
--   scope's repositories link it (`quota_scope_blobs` holds how many links each has);
-- - logical_bytes: the sizes of the blobs the scope's manifests reference (a layer
--   referenced by two manifests counts twice; a reference to a blob the registry does
--   not hold — a sparse manifest — counts from when the blob is recorded);
-- - manifests: the scope's manifests.
-- `wharf quota recompute` recomputes every figure from the rows themselves.

-- Positions 1..255 (repository names are at most 255 characters): the repository
-- trigger finds a name's `/`s with it (SQLite allows no recursive query in a trigger).
CREATE TABLE quota_positions (n INTEGER PRIMARY KEY);
WITH RECURSIVE p(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM p WHERE n < 255)
INSERT INTO quota_positions (n) SELECT n FROM p;

-- The scopes each repository counts in (no foreign key: repositories are never
-- deleted, and the rows must outlive a cascade's link deletes if they ever were).
CREATE TABLE quota_repository_scopes (
    repository_id INTEGER NOT NULL,
    scope         TEXT    NOT NULL,
    PRIMARY KEY (repository_id, scope)
);
CREATE INDEX quota_repository_scopes_scope ON quota_repository_scopes (scope);

CREATE TABLE quota_usage (
    scope         TEXT    PRIMARY KEY,
    logical_bytes INTEGER NOT NULL DEFAULT 0,
    stored_bytes  INTEGER NOT NULL DEFAULT 0,
    blobs         INTEGER NOT NULL DEFAULT 0,
    manifests     INTEGER NOT NULL DEFAULT 0
);

-- A scope's figures as the shared statements read them (on PostgreSQL the compacted
-- base plus the triggers' deltas; here the one writer updates the rows in place).
CREATE VIEW quota_usage_totals AS
SELECT scope, logical_bytes, stored_bytes, blobs, manifests FROM quota_usage;

-- A blob in a scope, with how many of the scope's repositories link it.
CREATE TABLE quota_scope_blobs (
    scope  TEXT    NOT NULL,
    digest TEXT    NOT NULL,
    refs   INTEGER NOT NULL,
    PRIMARY KEY (scope, digest)
);

-- Quotas in bytes: `scope` is a repository, a namespace prefix (ends in `/`) or `*`
-- (the default for every namespace without its own). `source`: `config` (seeded at
-- start-up, replaced when the configuration changes) or `api` (set at run time; the
-- configuration does not override it).
CREATE TABLE quota_limits (
    scope      TEXT    PRIMARY KEY,
    bytes      INTEGER NOT NULL,
    source     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Bytes an upload in flight (or a mount) may still add to its repository's scopes.
-- `id` is the upload session's (its delete removes the reservation, below) or a
-- mount's; a reservation past `expires_at` no longer counts.
CREATE TABLE quota_reservations (
    id         TEXT    PRIMARY KEY,
    repository TEXT    NOT NULL,
    bytes      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX quota_reservations_repository ON quota_reservations (repository);

-- Sparse manifests' references, found by digest when their blob is recorded.
CREATE INDEX quota_manifest_references_child ON manifest_references (child_digest)
    WHERE NOT child_is_manifest;

-- Scopes of the repositories that exist already, and their counters.
INSERT INTO quota_repository_scopes (repository_id, scope)
SELECT r.id, substr(r.name, 1, p.n) FROM repositories r JOIN quota_positions p
    ON p.n < length(r.name) AND substr(r.name, p.n, 1) = '/'
UNION SELECT id, name FROM repositories;
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

CREATE TRIGGER quota_repository_created AFTER INSERT ON repositories
FOR EACH ROW
BEGIN
    INSERT INTO quota_repository_scopes (repository_id, scope)
    SELECT NEW.id, substr(NEW.name, 1, p.n) FROM quota_positions p
    WHERE p.n < length(NEW.name) AND substr(NEW.name, p.n, 1) = '/'
    ON CONFLICT DO NOTHING;
    INSERT INTO quota_repository_scopes (repository_id, scope) VALUES (NEW.id, NEW.name)
    ON CONFLICT DO NOTHING;
END;

-- A link: the blob is new to each scope where it had no link (one writer: the
-- NOT EXISTS below cannot race).
CREATE TRIGGER quota_blob_linked AFTER INSERT ON repository_blobs
FOR EACH ROW
BEGIN
    INSERT INTO quota_usage (scope, stored_bytes, blobs)
    SELECT s.scope, b.size, 1
    FROM quota_repository_scopes s JOIN blobs b ON b.digest = NEW.digest
    WHERE s.repository_id = NEW.repository_id
      AND NOT EXISTS (SELECT 1 FROM quota_scope_blobs q
                      WHERE q.scope = s.scope AND q.digest = NEW.digest)
    ON CONFLICT (scope) DO UPDATE SET stored_bytes = stored_bytes + excluded.stored_bytes,
                                      blobs = blobs + 1;
    INSERT INTO quota_scope_blobs (scope, digest, refs)
    SELECT s.scope, NEW.digest, 1 FROM quota_repository_scopes s
    WHERE s.repository_id = NEW.repository_id
    ON CONFLICT (scope, digest) DO UPDATE SET refs = refs + 1;
END;

-- An unlink: the blob leaves each scope where this was its last link. The blob's row
-- is still there (its links reference it).
CREATE TRIGGER quota_blob_unlinked AFTER DELETE ON repository_blobs
FOR EACH ROW
BEGIN
    UPDATE quota_scope_blobs SET refs = refs - 1
    WHERE digest = OLD.digest
      AND scope IN (SELECT scope FROM quota_repository_scopes
                    WHERE repository_id = OLD.repository_id);
    UPDATE quota_usage
    SET stored_bytes = stored_bytes - coalesce((SELECT size FROM blobs WHERE digest = OLD.digest), 0),
        blobs = blobs - 1
    WHERE scope IN (SELECT q.scope FROM quota_scope_blobs q
                    JOIN quota_repository_scopes s ON s.scope = q.scope
                    WHERE s.repository_id = OLD.repository_id
                      AND q.digest = OLD.digest AND q.refs <= 0);
    DELETE FROM quota_scope_blobs WHERE digest = OLD.digest AND refs <= 0;
END;

CREATE TRIGGER quota_manifest_stored AFTER INSERT ON manifests
FOR EACH ROW
BEGIN
    INSERT INTO quota_usage (scope, manifests)
    SELECT scope, 1 FROM quota_repository_scopes WHERE repository_id = NEW.repository_id
    ON CONFLICT (scope) DO UPDATE SET manifests = manifests + 1;
END;

CREATE TRIGGER quota_manifest_deleted AFTER DELETE ON manifests
FOR EACH ROW
BEGIN
    UPDATE quota_usage SET manifests = manifests - 1
    WHERE scope IN (SELECT scope FROM quota_repository_scopes
                    WHERE repository_id = OLD.repository_id);
END;

CREATE TRIGGER quota_reference_added AFTER INSERT ON manifest_references
FOR EACH ROW WHEN NOT NEW.child_is_manifest
BEGIN
    UPDATE quota_usage
    SET logical_bytes = logical_bytes + (SELECT size FROM blobs WHERE digest = NEW.child_digest)
    WHERE scope IN (SELECT scope FROM quota_repository_scopes
                    WHERE repository_id = NEW.repository_id)
      AND EXISTS (SELECT 1 FROM blobs WHERE digest = NEW.child_digest);
END;

CREATE TRIGGER quota_reference_dropped AFTER DELETE ON manifest_references
FOR EACH ROW WHEN NOT OLD.child_is_manifest
BEGIN
    UPDATE quota_usage
    SET logical_bytes = logical_bytes - (SELECT size FROM blobs WHERE digest = OLD.child_digest)
    WHERE scope IN (SELECT scope FROM quota_repository_scopes
                    WHERE repository_id = OLD.repository_id)
      AND EXISTS (SELECT 1 FROM blobs WHERE digest = OLD.child_digest);
END;

-- A blob recorded or deleted while sparse manifests reference it.
CREATE TRIGGER quota_blob_recorded AFTER INSERT ON blobs
FOR EACH ROW
BEGIN
    UPDATE quota_usage
    SET logical_bytes = logical_bytes + NEW.size * (
        SELECT count(*) FROM manifest_references mr
        JOIN quota_repository_scopes s ON s.repository_id = mr.repository_id
        WHERE mr.child_digest = NEW.digest AND NOT mr.child_is_manifest
          AND s.scope = quota_usage.scope)
    WHERE scope IN (SELECT s.scope FROM manifest_references mr
                    JOIN quota_repository_scopes s ON s.repository_id = mr.repository_id
                    WHERE mr.child_digest = NEW.digest AND NOT mr.child_is_manifest);
END;

CREATE TRIGGER quota_blob_deleted AFTER DELETE ON blobs
FOR EACH ROW
BEGIN
    UPDATE quota_usage
    SET logical_bytes = logical_bytes - OLD.size * (
        SELECT count(*) FROM manifest_references mr
        JOIN quota_repository_scopes s ON s.repository_id = mr.repository_id
        WHERE mr.child_digest = OLD.digest AND NOT mr.child_is_manifest
          AND s.scope = quota_usage.scope)
    WHERE scope IN (SELECT s.scope FROM manifest_references mr
                    JOIN quota_repository_scopes s ON s.repository_id = mr.repository_id
                    WHERE mr.child_digest = OLD.digest AND NOT mr.child_is_manifest);
END;

-- An upload session's end (committed, cancelled, purged) ends its reservation.
CREATE TRIGGER quota_upload_ended AFTER DELETE ON upload_sessions
FOR EACH ROW
BEGIN
    DELETE FROM quota_reservations WHERE id = OLD.id;
END;

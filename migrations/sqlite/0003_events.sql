-- Notifications: the transactional outbox, per-endpoint delivery cursors and dead
-- letters. Kept in step with ../postgres/0003_events.sql. (0002 is the GC migration.)
--
-- An event row is written in the transaction of the change it reports. Each
-- repository's events form a stream ordered by `id`: a writer first locks the
-- repository's `event_streams` row, then inserts, so within one repository ids are
-- assigned in commit order (see src/metadata/events.rs). AUTOINCREMENT: an id is never
-- reused after pruning, so a cursor never points past a new event.

CREATE TABLE event_streams (
    repository TEXT PRIMARY KEY,
    last_id    INTEGER NOT NULL
);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid       TEXT    NOT NULL,
    repository TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    record     TEXT    NOT NULL,
    -- Set on a replay: only this endpoint delivers it.
    endpoint   TEXT
);
CREATE INDEX events_repository ON events (repository, id);

-- Every endpoint a worker has served: where it started ("now" when first seen) and
-- when a worker last ran for it (endpoints gone from every configuration stop
-- holding events back from pruning).
CREATE TABLE event_endpoints (
    name     TEXT    PRIMARY KEY,
    start_id INTEGER NOT NULL,
    seen_at  INTEGER NOT NULL
);

-- Delivery state per (endpoint, repository): everything up to delivered_id is done;
-- a worker holds the lease while it delivers the next batch.
CREATE TABLE event_cursors (
    endpoint     TEXT    NOT NULL,
    repository   TEXT    NOT NULL,
    delivered_id INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    due_at       INTEGER NOT NULL DEFAULT 0,
    lease_token  TEXT,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    PRIMARY KEY (endpoint, repository)
);
CREATE INDEX event_cursors_due ON event_cursors (endpoint, due_at);

CREATE TABLE event_dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint   TEXT    NOT NULL,
    event_id   INTEGER NOT NULL,
    uuid       TEXT    NOT NULL,
    repository TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    record     TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    dead_at    INTEGER NOT NULL
);
CREATE INDEX event_dead_letters_endpoint ON event_dead_letters (endpoint, id);

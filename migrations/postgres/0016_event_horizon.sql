-- The outbox without a lock per stream (see src/metadata/postgres/event_horizon.rs).
-- Kept in step with ../sqlite/0016_event_horizon.sql (nothing to do there: SQLite's one
-- writer commits events in id order).
--
-- Until now a writer upserted its repository's `event_streams` row before inserting
-- an event, and held that row lock to its commit, so that ids were in commit order
-- within a repository. Pushes to one repository waited for each other's commits on
-- that row: in the notifications benchmark (32 connections, 16 repositories) the
-- upsert and its waits were about 37 µs of PostgreSQL's CPU per push, nearly half of
-- what notifications cost it. Writers now only insert the event; readers stop at a
-- horizon below which every id is final, and the streams up to it are recorded by
-- the delivery workers, not by the writers.

-- The horizon: every event id up to `safe_id` belongs to a transaction that has ended.
-- One row. It starts where the streams are: under the stream lock every committed
-- event's stream recorded its id as `last_id`.
CREATE TABLE event_horizon (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    safe_id  BIGINT  NOT NULL
);
INSERT INTO event_horizon (safe_id) SELECT COALESCE(MAX(last_id), 0) FROM event_streams;

-- Finding the events that became final, by id range. On `id + 0` rather than `id`: an
-- index in id order is one the planner may choose to read a stream's next events
-- (`repository = $1 AND id > $2 ORDER BY id`) filtering on the repository, which is
-- what migration 0015 removed; an expression index serves only queries written with
-- the same expression.
CREATE INDEX events_by_id ON events ((id + 0));

COMMENT ON TABLE event_horizon IS
    'every event id up to safe_id is final; readers stop there (event_horizon.rs)';
COMMENT ON COLUMN event_streams.last_id IS
    'the newest event of the stream up to the horizon, recorded by the delivery workers';

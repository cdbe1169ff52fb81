-- The outbox keyed by stream: `events` gets the primary key (repository, id) and loses
-- its index on `id` alone and `events_repository (repository, id)`, which the new key
-- replaces. Kept in step with ../sqlite/0015_events_by_stream.sql (nothing to do there:
-- SQLite reads streams in id order on purpose, see its 0014).
--
-- Why: with an index on `id` alone PostgreSQL's planner read a stream's next events
-- (`repository = $1 AND id > $2 ORDER BY id LIMIT $3`, prepared once, so planned for
-- any repository) from that index, filtering on the repository: every event of every
-- repository after the cursor, to find the few of one. On the notifications benchmark
-- (16 repositories) a delivery round read ~3,300 buffers for ~190 events, and a
-- cursor whose repository is quiet behind a long backlog reads the whole backlog on
-- every round. With the stream as the key there is no such index to choose: a read is
-- a descent to (repository, cursor) and the events after it, in order. It also spares
-- every append an insert at the right edge of the `id` index, the page every
-- concurrent writer's entry went to.
--
-- Ids stay unique (drawn from the identity sequence under the stream's lock, see
-- 0003); nothing looks an event up by id alone. What needed the `id` order — pruning
-- oldest first, an endpoint's starting point — now works per stream
-- (src/metadata/postgres/events.rs).
--
-- Rolling deploys: the previous release's statements still run (its pruning sorts
-- what it scans rather than reading the old index; slower on a large backlog, right).

CREATE UNIQUE INDEX events_stream ON events (repository, id);
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_stream;
DROP INDEX events_repository;

COMMENT ON INDEX events_pkey IS
    'a stream''s events in order: delivery reads, pruning, "any events left"';

-- The outbox's per-repository index, replaced by one in id order. Kept in step with
-- ../postgres/0014_events_by_id.sql (which keeps its index: see there).
--
-- Why: `events_repository (repository, id)` put each event's entry at its repository's
-- place in the index, so a group-commit batch of pushes to 16 repositories dirtied 16
-- index pages, and each page is a 4 KiB WAL frame written, checksummed, fsynced and
-- checkpointed: measured on the notifications benchmark, 16 KiB more written per
-- manifest push with notifications on, 9 of them this index's. An index in id order
-- takes a batch's entries on its last page or two, as the table does.
--
-- A stream's events are read with it (`INDEXED BY`: entries after the cursor in id
-- order, filtered on the repository they carry, the rows fetched for those that
-- match). That reads other repositories' entries between the cursor and the stream's
-- next events: few while delivery keeps up (pruning leaves little more than what is
-- pending), more for a stream whose next event is far behind a long backlog — small
-- entries, read in order, and only for cursors the in-memory hand-off cannot serve.
--
-- Pruning asked "has this stream any events left?" of the old index. Now each stream
-- counts its events (`events`, kept by the triggers below in the same transaction as
-- the insert or delete).

ALTER TABLE event_streams ADD COLUMN events INTEGER NOT NULL DEFAULT 0;
UPDATE event_streams SET events =
    (SELECT COUNT(*) FROM events e WHERE e.repository = event_streams.repository);

DROP INDEX events_repository;
CREATE INDEX events_id_repository ON events (id, repository);

DROP TRIGGER events_stream_last_id;
CREATE TRIGGER events_stream_last_id AFTER INSERT ON events
FOR EACH ROW
BEGIN
    INSERT INTO event_streams (repository, last_id, events) VALUES (NEW.repository, NEW.id, 1)
    ON CONFLICT (repository) DO UPDATE SET last_id = excluded.last_id, events = events + 1;
END;

CREATE TRIGGER events_stream_count AFTER DELETE ON events
FOR EACH ROW
BEGIN
    UPDATE event_streams SET events = events - 1 WHERE repository = OLD.repository;
END;

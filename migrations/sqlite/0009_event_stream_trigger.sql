-- An event's insert records its stream's last_id itself, so appending an event is one
-- statement on the writer connection rather than two (each statement there is a round
-- trip to the connection's thread, on the path of every push with notifications on).
-- SQLite runs one write transaction at a time, so ids are in commit order without the
-- stream row being locked first (see src/metadata/events.rs). Kept in step with
-- ../postgres/0009_event_stream_trigger.sql (which has no trigger: PostgreSQL locks
-- the stream row before the insert).

CREATE TRIGGER events_stream_last_id AFTER INSERT ON events
FOR EACH ROW
BEGIN
    INSERT INTO event_streams (repository, last_id) VALUES (NEW.repository, NEW.id)
    ON CONFLICT (repository) DO UPDATE SET last_id = excluded.last_id;
END;

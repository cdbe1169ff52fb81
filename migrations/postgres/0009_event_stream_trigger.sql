-- Kept in step with ../sqlite/0009_event_stream_trigger.sql, where a trigger records a
-- stream's last_id as each event is inserted. Not here: on PostgreSQL a writer locks
-- its repository's stream row before it inserts (so ids are in commit order within a
-- repository, see src/metadata/events.rs) and records last_id in the statement that
-- inserts the event.

COMMENT ON TABLE event_streams IS
    'one row per repository with events; locked by a writer before it inserts events';

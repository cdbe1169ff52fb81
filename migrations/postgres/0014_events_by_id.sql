-- Kept in step with ../sqlite/0014_events_by_id.sql, which replaces SQLite's
-- per-repository outbox index by one in id order (on SQLite every dirtied page is a
-- WAL frame the one writer writes and fsyncs before the pushes it batches are
-- acknowledged). Not here: PostgreSQL keeps `events_repository (repository, id)`, its
-- writers run in parallel and a page dirtied by many commits is written once per
-- checkpoint; its streams' reads and pruning's "any events left" use the index.

COMMENT ON INDEX events_repository IS
    'a stream''s events in order: delivery reads and pruning''s emptiness check';

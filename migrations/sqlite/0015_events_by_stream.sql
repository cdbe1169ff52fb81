-- Kept in step with ../postgres/0015_events_by_stream.sql, which keys PostgreSQL's
-- outbox by (repository, id) so that a stream's reads cannot take an index in id
-- order. SQLite has nothing to change: it reads streams in id order on purpose, with
-- `INDEXED BY` (see 0014).
SELECT 1;

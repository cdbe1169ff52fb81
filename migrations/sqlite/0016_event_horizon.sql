-- Kept in step with ../postgres/0016_event_horizon.sql, where writers stop locking
-- their stream and readers stop at a horizon below which every id is final. SQLite
-- has nothing to change: its one writer commits events in id order, and a trigger
-- records each stream's `last_id` (0009).
SELECT 1;

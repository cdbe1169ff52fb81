-- Kept in step with ../postgres/0013_quota_link_charged.sql, which links a charged
-- commit's blob and takes it from the connection's quota slice in one statement (one
-- round trip fewer per charged commit). Nothing to do here: SQLite's one writer
-- charges every commit under its lock with no round trips to save, and its slices
-- table stays empty (0011). A statement that changes nothing, so that the migration
-- is not empty.
SELECT 1;

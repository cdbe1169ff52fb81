-- Kept in step with ../postgres/0011_quota_slices.sql, which hands a scope's free room
-- out in per-connection slices so that commits into one namespace need not take its
-- usage row one at a time. SQLite's one writer charges every commit under its lock
-- anyway: the table is made (the shared reservation check reads it) and stays empty.
CREATE TABLE quota_slices (
    scope      TEXT    NOT NULL,
    holder     INTEGER NOT NULL,
    room       INTEGER NOT NULL,
    quota      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, holder)
);

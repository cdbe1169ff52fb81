-- Kept in step with ../postgres/0010_quota_charge.sql, which adds PostgreSQL's
-- one-call quota charge (`quota_charge`). SQLite has nothing to add: its counting
-- triggers update the per-scope rows in place under its one writer, and a commit is
-- charged first in the commit's job (src/metadata/sqlite/quota.rs).
SELECT 1;

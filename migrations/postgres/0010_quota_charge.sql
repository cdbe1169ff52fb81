-- A blob commit's quota charge in one call, and the running totals it keeps
-- (PostgreSQL). Kept in step with ../sqlite/0010_quota_charge.sql (which has nothing to
-- add: SQLite's triggers update the per-scope rows in place, under its one writer).
--
-- The charge runs last in the commit's transaction, after the link whose trigger
-- appended the blob's delta. For each limited scope (the caller passes them in scope
-- order, byte-wise) that the link made the blob new to, it locks the scope's
-- `quota_usage` row, folds the scope's committed deltas (and this transaction's own)
-- into it — so the row is the scope's running total and no sum over deltas is needed
-- — and checks stored bytes plus the live reservations other than `own` against the
-- quota. One round trip, so the row is held for this call and the COMMIT only.
--
-- Lock order: a scope's deltas are deleted only by a holder of the scope's usage row
-- (this function, and `compact`, which locks the rows in scope order first), so
-- deleting them waits on no one; the usage rows are taken in scope order everywhere.
--
-- Returns no row when the blob fits, else the first scope it does not fit with the
-- quota, the stored bytes (this blob included) and the other reservations.
CREATE FUNCTION quota_charge(scopes TEXT[], quotas BIGINT[], blob TEXT, own TEXT)
RETURNS TABLE (over_scope TEXT, over_quota BIGINT, over_stored BIGINT, over_reserved BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i INT;
    s TEXT;
    n BIGINT;
    st BIGINT;
    res BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(scopes, 1), 0) LOOP
        s := scopes[i];
        SELECT q.refs INTO n FROM quota_scope_blobs q WHERE q.scope = s AND q.digest = blob;
        CONTINUE WHEN n IS DISTINCT FROM 1;
        PERFORM 1 FROM quota_usage u WHERE u.scope = s FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO quota_usage (scope) VALUES (s) ON CONFLICT DO NOTHING;
            PERFORM 1 FROM quota_usage u WHERE u.scope = s FOR UPDATE;
        END IF;
        -- A new statement, a new snapshot: every delta committed before the lock was
        -- granted is seen.
        WITH moved AS (DELETE FROM quota_usage_deltas d WHERE d.scope = s
                       RETURNING d.logical_bytes, d.stored_bytes, d.blobs, d.manifests),
             sums AS (SELECT CAST(coalesce(sum(m.logical_bytes), 0) AS BIGINT) AS l,
                             CAST(coalesce(sum(m.stored_bytes), 0) AS BIGINT) AS sb,
                             CAST(coalesce(sum(m.blobs), 0) AS BIGINT) AS b,
                             CAST(coalesce(sum(m.manifests), 0) AS BIGINT) AS mf
                      FROM moved m)
        UPDATE quota_usage u SET logical_bytes = u.logical_bytes + sums.l,
               stored_bytes = u.stored_bytes + sums.sb, blobs = u.blobs + sums.b,
               manifests = u.manifests + sums.mf
        FROM sums WHERE u.scope = s
        RETURNING u.stored_bytes INTO st;
        SELECT CAST(coalesce(sum(r.bytes), 0) AS BIGINT) INTO res FROM quota_reservations r
        WHERE r.id <> own AND r.expires_at > gc_now()
          AND (r.repository = s OR (right(s, 1) = '/' AND left(r.repository, length(s)) = s));
        IF st + res > quotas[i] THEN
            over_scope := s;
            over_quota := quotas[i];
            over_stored := st;
            over_reserved := res;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
END
$$;

-- A blob commit's quota charge, run at COMMIT, and the running totals it keeps
-- (PostgreSQL). Kept in step with ../sqlite/0010_quota_charge.sql (which has nothing to
-- add: SQLite's triggers update the per-scope rows in place, under its one writer).
--
-- A charged commit, after its link (whose trigger appended the blob's delta), inserts
-- its request into `quota_charges`; a deferred constraint trigger runs the charge
-- (`quota_charge`) when the transaction commits, so the scopes' usage rows are locked
-- inside the COMMIT and held for no round trip at all: commits into one namespace
-- pass the lock one at a time only for the charge itself and the commit record. A
-- charge that does not fit raises SQLSTATE `WQ001`, the COMMIT fails, and nothing of
-- the transaction is kept.
--
-- `quota_charge`: for each limited scope (the caller passes them in scope order,
-- byte-wise) that the link made the blob new to, it locks the scope's `quota_usage`
-- row, folds the scope's committed deltas (and this transaction's own) into it — so
-- the row is the scope's running total and no sum over deltas is needed — and checks
-- stored bytes plus the live reservations other than `own` against the quota.
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

-- A charged commit's request, consumed by its own COMMIT (unlogged: a request never
-- outlives its transaction, so a crash has nothing to keep).
CREATE UNLOGGED TABLE quota_charges (
    id     BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scopes TEXT[]   NOT NULL,
    quotas BIGINT[] NOT NULL,
    digest TEXT     NOT NULL,
    own    TEXT     NOT NULL
);

-- Raises `WQ001` with the message `quota_charge|scope|quota|stored|reserved` when the
-- blob does not fit.
CREATE FUNCTION quota_charge_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    DELETE FROM quota_charges WHERE id = NEW.id;
    FOR r IN SELECT * FROM quota_charge(NEW.scopes, NEW.quotas, NEW.digest, NEW.own) LOOP
        RAISE EXCEPTION USING ERRCODE = 'WQ001', MESSAGE = format(
            'quota_charge|%s|%s|%s|%s', r.over_scope, r.over_quota, r.over_stored,
            r.over_reserved);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER quota_charge_at_commit AFTER INSERT ON quota_charges
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION quota_charge_at_commit();

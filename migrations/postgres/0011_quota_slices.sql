-- Per-connection quota slices (PostgreSQL). Kept in step with ../sqlite/0011_quota_slices.sql
-- (there the table is made and stays empty: SQLite's one writer charges every commit
-- under its lock anyway).
--
-- Why: a charged commit (0010_quota_charge) locked its namespace's usage row inside its
-- COMMIT, so commits into one namespace passed one at a time. Now a scope's free room
-- is handed out in *slices*, one per holder — a PostgreSQL connection, named by its
-- backend pid — each a row of `quota_slices` with the bytes it may still take (`room`).
-- A commit whose blob fits its connection's slice moves the blob's size from the slice
-- to stored bytes (the link's delta, 0006) touching only its own slice row; only a
-- commit whose slice is short (or missing, expired, or granted under another quota)
-- takes the scope's usage row to top it up.
--
-- The invariant, after every transaction, for every limited scope:
--     stored bytes + live upload reservations + live slices' room ≤ quota
-- A slice's room is counted against the quota as a reservation is, so slices never
-- let a scope take more than the quota: the bound of 0006/0010 is unchanged. Usage
-- (stored bytes) is still the usage row plus its deltas: a slice holds room, never
-- bytes, so the usage API, the gauges and `wharf quota recompute` read what they read
-- before. A top-up that does not fit first revokes the other holders' room
-- (`room = 0`), so unused slices never make a push be refused that would fit: near the
-- quota every commit tops up, which is 0010's behaviour.
--
-- Why the pid alone names a holder: a slice is room counted against the quota, not
-- bytes of its holder's; a new connection that gets a dead one's pid inherits room that
-- is still counted, which is as good as a fresh grant. Slices live 60 s from their last
-- top-up (`expires_at`; an expired slice counts for nothing and is consumed by no one),
-- and every instance's 30 s compaction deletes expired slices and those whose backend
-- is gone (`quota_sweep_slices`). Unlogged: a crash that empties the table only gives
-- room back.
--
-- Lock order, the same everywhere: scopes in scope order (byte-wise); within a scope,
-- the usage row before slice rows. A commit's fast path locks only its own slice row
-- (its deltas wait for the next top-up or the 30 s compaction, as they do with no quota
-- set). A top-up holds the usage
-- row and then updates slice rows (its own; the others' when it revokes). A slice row
-- is held only by a transaction in its COMMIT, which waits on nothing but later scopes.
CREATE UNLOGGED TABLE quota_slices (
    scope      TEXT    NOT NULL,
    holder     INTEGER NOT NULL,
    room       BIGINT  NOT NULL,
    quota      BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (scope, holder)
);

-- The largest slice a top-up grants, and the share of the free room it takes.
CREATE FUNCTION quota_slice_grant(free BIGINT) RETURNS BIGINT LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(least(free / 4, 64 * 1024 * 1024), 0)
$$;

-- Folds scope `s`'s deltas into its usage row; the caller holds the row.
CREATE FUNCTION quota_fold(s TEXT) RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
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
    RETURNING u.stored_bytes
$$;

-- A scope's figures in one snapshot: stored bytes (row plus the deltas not folded yet),
-- the live reservations other than `own`, and the live slices' room other than `me`'s.
CREATE FUNCTION quota_held(s TEXT, own TEXT, me INTEGER, now_ms BIGINT,
                           OUT stored BIGINT, OUT reserved BIGINT, OUT sliced BIGINT)
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT u.stored_bytes FROM quota_usage u WHERE u.scope = s), 0)
             + coalesce((SELECT CAST(sum(d.stored_bytes) AS BIGINT) FROM quota_usage_deltas d
                         WHERE d.scope = s), 0),
           coalesce((SELECT CAST(sum(r.bytes) AS BIGINT) FROM quota_reservations r
                     WHERE r.id <> own AND r.expires_at > now_ms
                       AND (r.repository = s OR (right(s, 1) = '/'
                            AND left(r.repository, length(s)) = s))), 0),
           coalesce((SELECT CAST(sum(q.room) AS BIGINT) FROM quota_slices q
                     WHERE q.scope = s AND q.holder <> me AND q.expires_at > now_ms), 0)
$$;

-- The charge (same contract as 0010's): for each limited scope the link made the blob
-- new to, the blob is taken from this connection's slice, or the slice is topped up
-- under the scope's usage row. Returns the first scope the blob does not fit, with the
-- quota, the stored bytes (this blob included) and the other reservations and slices.
CREATE OR REPLACE FUNCTION quota_charge(scopes TEXT[], quotas BIGINT[], blob TEXT, own TEXT)
RETURNS TABLE (over_scope TEXT, over_quota BIGINT, over_stored BIGINT, over_reserved BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i INT;
    s TEXT;
    n BIGINT;
    sz BIGINT;
    h RECORD;
    me INTEGER := pg_backend_pid();
    now_ms BIGINT := gc_now();
    free BIGINT;
BEGIN
    SELECT b.size INTO sz FROM blobs b WHERE b.digest = blob;
    sz := coalesce(sz, 0);
    FOR i IN 1 .. coalesce(array_length(scopes, 1), 0) LOOP
        s := scopes[i];
        SELECT q.refs INTO n FROM quota_scope_blobs q WHERE q.scope = s AND q.digest = blob;
        CONTINUE WHEN n IS DISTINCT FROM 1;
        -- The fast path: the blob fits this connection's slice (its own row only).
        UPDATE quota_slices q SET room = q.room - sz
        WHERE q.scope = s AND q.holder = me AND q.quota = quotas[i]
          AND q.expires_at > now_ms AND q.room >= sz;
        -- Its deltas are folded at the next top-up or compaction, as with no quota set
        -- (folding here cost every commit a lock, a delete and an update of the shared row).
        CONTINUE WHEN FOUND;
        -- The top-up: the scope's usage row, then the slices.
        PERFORM 1 FROM quota_usage u WHERE u.scope = s FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO quota_usage (scope) VALUES (s) ON CONFLICT DO NOTHING;
            PERFORM 1 FROM quota_usage u WHERE u.scope = s FOR UPDATE;
        END IF;
        PERFORM quota_fold(s);
        -- One statement, one snapshot: a commit that moves bytes from its slice to
        -- stored is seen wholly or not at all.
        SELECT * INTO h FROM quota_held(s, own, me, now_ms);
        IF h.stored + h.reserved + h.sliced > quotas[i] AND h.sliced > 0 THEN
            -- Take the other holders' unused room back, then look again.
            UPDATE quota_slices q SET room = 0
            WHERE q.scope = s AND q.holder <> me AND q.room > 0;
            SELECT * INTO h FROM quota_held(s, own, me, now_ms);
        END IF;
        free := quotas[i] - h.stored - h.reserved - h.sliced;
        IF free < 0 THEN
            over_scope := s;
            over_quota := quotas[i];
            over_stored := h.stored;
            over_reserved := h.reserved + h.sliced;
            RETURN NEXT;
            RETURN;
        END IF;
        INSERT INTO quota_slices AS q (scope, holder, room, quota, expires_at)
        VALUES (s, me, quota_slice_grant(free), quotas[i], now_ms + 60000)
        ON CONFLICT (scope, holder) DO UPDATE SET room = excluded.room,
            quota = excluded.quota, expires_at = excluded.expires_at;
    END LOOP;
END
$$;

-- Compaction's sweep: deletes expired slices and those whose backend is gone, skipping
-- any row a commit holds (never waits). Returns how many went.
CREATE FUNCTION quota_sweep_slices() RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
    WITH gone AS (
        DELETE FROM quota_slices q WHERE (q.scope, q.holder) IN (
            SELECT x.scope, x.holder FROM quota_slices x
            WHERE x.expires_at <= gc_now()
               OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = x.holder)
            FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*) FROM gone
$$;

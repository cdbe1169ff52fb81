-- A charged commit's link and its charge in one statement (PostgreSQL). Kept in step
-- with ../sqlite/0013_quota_link_charged.sql (a no-op there: SQLite charges every
-- commit under its one writer, with no round trips to save).
--
-- Why: a charged commit linked its blob (`INSERT INTO repository_blobs`) and then
-- queued its charge (`INSERT INTO quota_charges`, 0010), whose deferred trigger ran
-- `quota_charge` at COMMIT: one round trip more than an uncharged commit, and per push
-- a row inserted and deleted, a deferred trigger queued and fired and the blob's size
-- looked up. With slices (0011) nearly every commit fits its connection's slice, and
-- taking it touches only the connection's own slice row, which no other commit takes:
-- it need not wait for the COMMIT. So `quota_link_charged` links the blob and, for
-- each limited scope the link made the blob new to, takes the blob (its size passed by
-- the caller, which has just read or written the blob's row) from the connection's
-- slice, in the link's own round trip. Only the scopes whose slice is short (missing,
-- expired, granted under another quota) are queued for the COMMIT as before
-- (`quota_charges`, `quota_charge`: the top-up under the scope's usage row); the scopes
-- before the first short one are charged already and are not queued again.
--
-- `defer`: queue every scope for the COMMIT, taking no slice row now. For a commit
-- that takes more locks after its link (its events' stream lock, 0003/0009): holding
-- its slice row while waiting for one could close a cycle with a top-up that revokes
-- slices (it holds the usage row and waits for the slice row) and a commit that holds
-- the stream lock and waits for the usage row in its COMMIT.
--
-- Lock order (0011's, unchanged): the link's trigger takes the scopes' blob rows, then
-- the fast path the connection's slice rows in scope order, then the COMMIT's charge
-- the remaining scopes (later in scope order) usage row before slice rows. Between
-- this statement and its COMMIT a commit runs no statement (or, deferring, takes no
-- slice row): a slice row is held across no wait but those of later scopes.
--
-- The invariant (stored + live reservations + live slices' room ≤ quota) and the
-- bound are 0011's: the fast path moves the blob's bytes from the slice to stored in
-- one transaction, exactly as the COMMIT-time fast path did.
--
-- Returns whether the link is new (an existing link charges nothing).
CREATE FUNCTION quota_link_charged(repo BIGINT, blob TEXT, created BIGINT, sz BIGINT,
                                   scopes TEXT[], quotas BIGINT[], own TEXT,
                                   defer BOOLEAN)
RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i INT := 1;
    n INT := coalesce(array_length(scopes, 1), 0);
    refs BIGINT;
    me INTEGER;
    now_ms BIGINT;
BEGIN
    INSERT INTO repository_blobs (repository_id, digest, created_at)
    VALUES (repo, blob, created) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- The link's triggers ran at the end of its statement: the scopes' counts are
    -- this transaction's.
    IF NOT defer THEN
        me := pg_backend_pid();
        now_ms := gc_now();
        WHILE i <= n LOOP
            SELECT q.refs INTO refs FROM quota_scope_blobs q
            WHERE q.scope = scopes[i] AND q.digest = blob;
            IF refs IS NOT DISTINCT FROM 1 THEN
                UPDATE quota_slices q SET room = q.room - sz
                WHERE q.scope = scopes[i] AND q.holder = me AND q.quota = quotas[i]
                  AND q.expires_at > now_ms AND q.room >= sz;
                EXIT WHEN NOT FOUND;
            END IF;
            i := i + 1;
        END LOOP;
    END IF;
    IF i <= n THEN
        INSERT INTO quota_charges (scopes, quotas, digest, own)
        VALUES (scopes[i:n], quotas[i:n], blob, own);
    END IF;
    RETURN true;
END
$$;

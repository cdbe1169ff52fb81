//! The outbox on PostgreSQL (see `metadata::events`): each method is one READ
//! COMMITTED transaction; claims lock the due cursors `FOR UPDATE SKIP LOCKED`, so
//! the workers of every instance share the cursors without waiting on each other.

use async_trait::async_trait;

use super::{retry, PostgresStore};
use crate::metadata::events::{
    ClaimedCursor, DeadLetter, EndpointBacklog, EventStore, PendingEvent, ReplayFilter, StoredEvent,
};
use crate::metadata::Result;
use crate::types::EventRecord;

/// The shared outbox statements, for PostgreSQL.
pub(super) mod queries {
    crate::metadata::events::event_queries!(
        sqlx::PgConnection,
        "FOR UPDATE OF c SKIP LOCKED",
        "events",
        "SELECT s.repository, s.last_id FROM event_streams s
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.repository = s.repository)
         LIMIT $1",
        // Stream by stream on the key (repository, id) (migration 0015: no index in id
        // order): each stream's events up to the least position of the endpoints
        // (`delivered_id`, or `start_id` without a cursor; everything when no endpoint
        // is left). No endpoint waits for those. A replayed event meant for one
        // endpoint goes once every endpoint has passed it (the others pass it over as
        // not theirs), not as soon as its own endpoint has.
        "DELETE FROM events WHERE (repository, id) IN (
             SELECT e.repository, e.id FROM event_streams s
             CROSS JOIN LATERAL (
                 SELECT ev.repository, ev.id FROM events ev
                 WHERE ev.repository = s.repository AND ev.id <= COALESCE(
                     (SELECT MIN(COALESCE(c.delivered_id, ep.start_id)) FROM event_endpoints ep
                      LEFT JOIN event_cursors c ON c.endpoint = ep.name AND c.repository = s.repository),
                     9223372036854775807)
                 ORDER BY ev.id LIMIT $1) AS e
             LIMIT $1)
         RETURNING repository, id"
    );

    /// `events_after` of each cursor in one statement whose text does not depend on how
    /// many cursors there are (arrays bound as parameters), so each connection prepares
    /// it once and PostgreSQL need not plan a new `UNION ALL` of per-cursor reads on
    /// every delivery round.
    pub(super) async fn events_after_each(
        conn: &mut sqlx::PgConnection,
        cursors: &[(String, i64)],
        limit: u32,
    ) -> Result<Vec<Vec<StoredEvent>>> {
        let (repositories, after): (Vec<&str>, Vec<i64>) =
            cursors.iter().map(|(r, a)| (r.as_str(), *a)).unzip();
        let rows: Vec<crate::metadata::events::CursorEventRow> = sqlx::query_as(
            "SELECT c.ord - 1 AS cursor, e.id, e.record, e.endpoint, e.created_at
             FROM UNNEST($1::TEXT[], $2::BIGINT[]) WITH ORDINALITY AS c (repository, after, ord)
             CROSS JOIN LATERAL (
                 SELECT id, record, endpoint, created_at FROM events
                 WHERE repository = c.repository AND id > c.after ORDER BY id LIMIT $3) AS e
             ORDER BY c.ord, e.id",
        )
        .bind(&repositories)
        .bind(&after)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        crate::metadata::events::per_cursor(cursors.len(), rows)
    }

    /// `complete_cursor` for each of `done` in one statement (arrays, as in
    /// [`events_after_each`]); how many were still leased.
    pub(super) async fn complete_cursors(
        conn: &mut sqlx::PgConnection,
        endpoint: &str,
        token: &str,
        done: &[(String, i64)],
    ) -> Result<u64> {
        let (repositories, delivered): (Vec<&str>, Vec<i64>) =
            done.iter().map(|(r, d)| (r.as_str(), *d)).unzip();
        let updated = sqlx::query(
            "UPDATE event_cursors SET delivered_id = d.delivered_id, attempts = 0, due_at = 0,
                 lease_token = NULL, lease_until = 0, last_error = NULL
             FROM UNNEST($1::TEXT[], $2::BIGINT[]) AS d (repository, delivered_id)
             WHERE event_cursors.endpoint = $3 AND event_cursors.lease_token = $4
               AND event_cursors.repository = d.repository",
        )
        .bind(&repositories)
        .bind(&delivered)
        .bind(endpoint)
        .bind(token)
        .execute(&mut *conn)
        .await?;
        Ok(updated.rows_affected())
    }

    /// The statement of one event whose stream exists (see [`append_stream`]), with
    /// `$source` the rows its stream upsert inserts: `$1`–`$5` are the event's uuid,
    /// repository, action, time and record.
    macro_rules! stream_event_sql {
        ($before:literal, $source:literal) => {
            concat!(
                "WITH ", $before,
                "s AS (
                     INSERT INTO event_streams (repository, last_id) ", $source, "
                     ON CONFLICT (repository) DO UPDATE
                         SET last_id = nextval('events_id_seq')
                     RETURNING last_id)
                 INSERT INTO events (id, uuid, repository, action, created_at, record, endpoint)
                 OVERRIDING SYSTEM VALUE
                 SELECT s.last_id, $1, $2, $3, $4, $5, NULL FROM s WHERE s.last_id <> 0
                 RETURNING id"
            )
        };
    }

    /// What an event's statement writes before the event ([`append_one`]).
    #[derive(Clone, Copy)]
    enum Before<'a> {
        /// Nothing: the event alone.
        Nothing,
        /// A tag's upsert ([`upsert_tag_with_event`]).
        Tag {
            repo_id: i64,
            tag: &'a crate::types::Tag,
            digest: &'a crate::types::Digest,
            updated_at: i64,
        },
        /// A blob's link into a repository, if not linked yet ([`link_with_event`]).
        Link {
            repo_id: i64,
            digest: &'a crate::types::Digest,
            created_at: i64,
        },
    }

    /// One event in one statement (after `before`'s write) when its stream exists;
    /// else, holding the stream's new row, the event and `last_id` go in as for several
    /// events (see [`append_stream`]).
    async fn append_one(
        conn: &mut sqlx::PgConnection,
        e: &EventRecord,
        now: i64,
        before: Before<'_>,
    ) -> Result<()> {
        // The stream's upsert selects from the write before it, so that write runs
        // first (the order the two statements had) and the stream's lock is taken
        // second, as in every transaction that appends events.
        let sql = match before {
            Before::Nothing => stream_event_sql!("", "VALUES ($2, 0)"),
            Before::Tag { .. } => stream_event_sql!(
                "t AS (
                     INSERT INTO tags (repository_id, name, manifest_digest, updated_at)
                     VALUES ($6, $7, $8, $9)
                     ON CONFLICT (repository_id, name) DO UPDATE
                         SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at
                     RETURNING 1 AS upserted), ",
                "SELECT $2, 0 FROM t"
            ),
            // A link that exists inserts no row: the count is one row either way, and
            // counting reads the insert to its end before the stream's upsert starts.
            Before::Link { .. } => stream_event_sql!(
                "t AS (
                     INSERT INTO repository_blobs (repository_id, digest, created_at)
                     VALUES ($6, $7, $8)
                     ON CONFLICT DO NOTHING
                     RETURNING 1 AS linked), ",
                "SELECT $2, 0 FROM (SELECT count(*) FROM t) AS linked"
            ),
        };
        let mut q = sqlx::query_scalar(sql)
            .bind(&e.id)
            .bind(&e.repository)
            .bind(e.action.as_str())
            .bind(now)
            .bind(crate::metadata::events::encode(e)?);
        match before {
            Before::Nothing => {}
            Before::Tag {
                repo_id,
                tag,
                digest,
                updated_at,
            } => {
                q = q
                    .bind(repo_id)
                    .bind(tag.as_str())
                    .bind(digest.to_string())
                    .bind(updated_at);
            }
            Before::Link {
                repo_id,
                digest,
                created_at,
            } => {
                q = q.bind(repo_id).bind(digest.to_string()).bind(created_at);
            }
        }
        let id: Option<i64> = q.fetch_optional(&mut *conn).await?;
        if id.is_none() {
            // A new stream, its row now ours.
            let last = insert_event(conn, e, None, now).await?;
            set_last(conn, &e.repository, last).await?;
        }
        Ok(())
    }

    /// A blob's link into a repository and the one event of its push or mount, in one
    /// statement (`commit_blob` and `link_blob` without a quota charge): the change
    /// with notifications on then costs no round trip more than without, as
    /// [`upsert_tag_with_event`] does for a push by tag.
    pub(in crate::metadata::postgres) async fn link_with_event(
        conn: &mut sqlx::PgConnection,
        repo_id: i64,
        digest: &crate::types::Digest,
        e: &EventRecord,
    ) -> Result<()> {
        let before = Before::Link {
            repo_id,
            digest,
            created_at: crate::clock::now_ms(),
        };
        append_one(conn, e, crate::clock::now_ms(), before).await
    }

    /// A manifest's one tag and the one event of its push, in one statement
    /// (`put_manifest`'s usual case): a push with notifications on then costs no round
    /// trip more than without ([`append_one`] with the tag).
    pub(in crate::metadata::postgres) async fn upsert_tag_with_event(
        conn: &mut sqlx::PgConnection,
        repo_id: i64,
        tag: &crate::types::Tag,
        digest: &crate::types::Digest,
        updated_at: i64,
        e: &EventRecord,
    ) -> Result<()> {
        let before = Before::Tag {
            repo_id,
            tag,
            digest,
            updated_at,
        };
        append_one(conn, e, crate::clock::now_ms(), before).await
    }

    /// One repository's events (for `append_events`): the stream row locked first (see
    /// `metadata::events` on order), then the inserts and `last_id`.
    ///
    /// The usual case — one event, a stream that exists — is one statement, so a change
    /// with notifications on costs one round trip more than without, not two (a push by
    /// tag none: [`upsert_tag_with_event`]): the
    /// upsert of the stream row takes its lock and only then (`DO UPDATE`, evaluated
    /// on the locked row) draws the event's id from the identity sequence and records
    /// it as `last_id`; the event is inserted with that id. The id is drawn after the
    /// lock, as with an insert after the lock, so ids stay in commit order within the
    /// repository. A stream that did not exist is inserted with `last_id` 0 and no id
    /// (the insert path's values are computed before any lock, so they must not hold
    /// an id); then, holding the new row, the event goes in as for several events.
    async fn append_stream(
        conn: &mut sqlx::PgConnection,
        repository: &str,
        list: &[&EventRecord],
        now: i64,
    ) -> Result<()> {
        if let [e] = list {
            return append_one(conn, e, now, Before::Nothing).await;
        }
        sqlx::query(
            "INSERT INTO event_streams (repository, last_id) VALUES ($1, 0)
             ON CONFLICT (repository) DO UPDATE SET last_id = event_streams.last_id",
        )
        .bind(repository)
        .execute(&mut *conn)
        .await?;
        let mut last = 0i64;
        for e in list {
            last = insert_event(conn, e, None, now).await?;
        }
        set_last(conn, repository, last).await
    }
}

/// Runs `$body` (a future using the connection `$c`) in one READ COMMITTED
/// transaction, retried when it loses a race.
macro_rules! in_tx {
    ($store:expr, $op:literal, |$c:ident| $body:expr) => {
        retry($op, || async {
            let mut tx = $store
                .pool
                .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
                .await?;
            let $c: &mut sqlx::PgConnection = &mut tx;
            let out = $body.await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    };
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append_events(&self, events: &[EventRecord]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        in_tx!(self, "append_events", |c| queries::append_events(c, events))
    }

    async fn register_endpoint(&self, endpoint: &str, now: i64) -> Result<()> {
        in_tx!(self, "register_endpoint", |c| queries::register_endpoint(
            c, endpoint, now
        ))
    }

    async fn claim_cursors(
        &self,
        endpoint: &str,
        token: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedCursor>> {
        let mut conn = self.pool.acquire().await?;
        if !queries::work_due(&mut conn, endpoint, now).await? {
            return Ok(Vec::new());
        }
        drop(conn);
        // Two statements, each atomic (the missing cursors, then the lease of the due
        // ones): no transaction around them, which would add two round trips per tick.
        retry("claim_cursors", || async {
            let mut c = self.pool.acquire().await?;
            queries::claim_cursors(&mut c, endpoint, token, now, lease_until, limit).await
        })
        .await
    }

    async fn events_after(
        &self,
        repository: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let mut conn = self.pool.acquire().await?;
        queries::events_after(&mut conn, repository, after, limit).await
    }

    async fn events_after_each(
        &self,
        cursors: &[(String, i64)],
        limit: u32,
    ) -> Result<Vec<Vec<StoredEvent>>> {
        let mut conn = self.pool.acquire().await?;
        queries::events_after_each(&mut conn, cursors, limit).await
    }

    async fn complete_cursor(
        &self,
        endpoint: &str,
        repository: &str,
        token: &str,
        delivered_id: i64,
    ) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        queries::complete_cursor(&mut conn, endpoint, repository, token, delivered_id).await
    }

    async fn complete_cursors(
        &self,
        endpoint: &str,
        token: &str,
        done: &[(String, i64)],
    ) -> Result<u64> {
        if done.is_empty() {
            return Ok(0);
        }
        // One statement per chunk, each atomic: a transaction around them would add
        // two round trips and guard nothing (each cursor is completed or not alone).
        retry("complete_cursors", || async {
            let mut conn = self.pool.acquire().await?;
            queries::complete_cursors(&mut conn, endpoint, token, done).await
        })
        .await
    }

    async fn complete_and_claim(
        &self,
        endpoint: &str,
        done_token: &str,
        done: &[(String, i64)],
        token: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<(u64, Vec<ClaimedCursor>)> {
        // Each statement atomic, as in the two calls on their own: the completions go
        // first, so the cursors they release can be claimed again at once.
        let completed = self.complete_cursors(endpoint, done_token, done).await?;
        let claimed = self
            .claim_cursors(endpoint, token, now, lease_until, limit)
            .await?;
        Ok((completed, claimed))
    }

    async fn fail_cursor(
        &self,
        endpoint: &str,
        repository: &str,
        token: &str,
        attempts: u32,
        due_at: i64,
        error: &str,
    ) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        queries::fail_cursor(
            &mut conn, endpoint, repository, token, attempts, due_at, error,
        )
        .await
    }

    async fn dead_letter(
        &self,
        endpoint: &str,
        repository: &str,
        token: &str,
        events: &[StoredEvent],
        attempts: u32,
        error: &str,
        now: i64,
    ) -> Result<bool> {
        in_tx!(self, "dead_letter", |c| queries::dead_letter(
            c, endpoint, repository, token, events, attempts, error, now,
        ))
    }

    async fn dead_letters(&self, endpoint: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>> {
        let mut conn = self.pool.acquire().await?;
        queries::dead_letters(&mut conn, endpoint, limit).await
    }

    async fn replay_dead_letters(&self, filter: &ReplayFilter) -> Result<u64> {
        in_tx!(self, "replay_dead_letters", |c| {
            queries::replay_dead_letters(c, filter)
        })
    }

    async fn pending_events(
        &self,
        endpoint: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PendingEvent>> {
        let mut conn = self.pool.acquire().await?;
        queries::pending_events(&mut conn, endpoint, limit).await
    }

    async fn endpoint_backlog(&self, endpoint: &str) -> Result<EndpointBacklog> {
        let mut conn = self.pool.acquire().await?;
        queries::endpoint_backlog(&mut conn, endpoint).await
    }

    async fn prune_events(&self, stale_before: i64, limit: u32) -> Result<u64> {
        let pruned: Vec<(String, i64)> = in_tx!(self, "prune_events", |c| {
            queries::prune_events(c, stale_before, limit)
        })?;
        Ok(pruned.len() as u64)
    }
}

//! The outbox on PostgreSQL (see `metadata::events`): each method is one READ
//! COMMITTED transaction; claims lock the due cursors `FOR UPDATE SKIP LOCKED`, so
//! the workers of every instance share the cursors without waiting on each other.
//! Writers insert their events and lock nothing shared; readers stop at the horizon
//! (`event_horizon`), which each claim first moves on.

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
        " AND id <= (SELECT safe_id FROM event_horizon)",
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

    /// `events_after` of each cursor (up to the horizon) in one statement whose text does not depend on how
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
                 WHERE repository = c.repository AND id > c.after
                   AND id <= (SELECT safe_id FROM event_horizon)
                 ORDER BY id LIMIT $3) AS e
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

    /// The statement of an event written with the change before it (`$before`, a CTE
    /// named `t`, and `$source`, the row the event is inserted once per): `$1`–`$5`
    /// are the event's uuid, repository, action, time and record. The change's row
    /// locks come first and the event's id is drawn after them, when the insert forms
    /// its row: two writes that conflict get their ids in commit order.
    macro_rules! event_with_sql {
        ($before:literal, $source:literal) => {
            concat!(
                "WITH t AS (",
                $before,
                ")
                 INSERT INTO events (uuid, repository, action, created_at, record, endpoint)
                 SELECT $1, $2, $3, $4, $5, NULL FROM ",
                $source
            )
        };
    }

    /// What an event's statement writes before the event ([`append_with`]).
    #[derive(Clone, Copy)]
    enum Before<'a> {
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

    /// One event and the write before it, in one statement: a change with
    /// notifications on costs no round trip more than without.
    async fn append_with(
        conn: &mut sqlx::PgConnection,
        e: &EventRecord,
        now: i64,
        before: Before<'_>,
    ) -> Result<()> {
        let sql = match before {
            Before::Tag { .. } => event_with_sql!(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at)
                 VALUES ($6, $7, $8, $9)
                 ON CONFLICT (repository_id, name) DO UPDATE
                     SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at
                 RETURNING 1 AS upserted",
                "t"
            ),
            // A link that exists inserts no row: the count is one row either way, and
            // counting reads the insert to its end before the event's row is formed.
            Before::Link { .. } => event_with_sql!(
                "INSERT INTO repository_blobs (repository_id, digest, created_at)
                 VALUES ($6, $7, $8)
                 ON CONFLICT DO NOTHING
                 RETURNING 1 AS linked",
                "(SELECT count(*) FROM t) AS linked"
            ),
        };
        let mut q = sqlx::query(sql)
            .bind(&e.id)
            .bind(&e.repository)
            .bind(e.action.as_str())
            .bind(now)
            .bind(crate::metadata::events::encode(e)?);
        match before {
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
        q.execute(&mut *conn).await?;
        Ok(())
    }

    /// A blob's link into a repository and the one event of its push or mount, in one
    /// statement (`commit_blob` and `link_blob` without a quota charge).
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
        append_with(conn, e, crate::clock::now_ms(), before).await
    }

    /// A manifest's one tag and the one event of its push, in one statement
    /// (`put_manifest`'s usual case).
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
        append_with(conn, e, crate::clock::now_ms(), before).await
    }

    /// One repository's events (for `append_events`): inserted, each id drawn at its
    /// insert. Nothing shared is locked; readers stop at the horizon, so an event
    /// committed after one with a higher id is still read in id order.
    async fn append_stream(
        conn: &mut sqlx::PgConnection,
        _repository: &str,
        list: &[&EventRecord],
        now: i64,
    ) -> Result<()> {
        for e in list {
            insert_event(conn, e, None, now).await?;
        }
        Ok(())
    }
}

/// Runs `$body` (a future using the connection `$c`) in one READ COMMITTED
/// transaction, retried when it loses a race.
macro_rules! in_tx {
    ($pool:expr, $op:literal, |$c:ident| $body:expr) => {
        retry($op, || async {
            let mut tx = $pool
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
        in_tx!(self.pool, "append_events", |c| queries::append_events(
            c, events
        ))
    }

    async fn register_endpoint(&self, endpoint: &str, now: i64) -> Result<()> {
        // A new endpoint starts after the newest stream's `last_id`, which covers the
        // events committed so far only once the horizon has passed them.
        super::event_horizon::advance(&self.delivery, &self.horizon).await?;
        in_tx!(self.delivery, "register_endpoint", |c| {
            queries::register_endpoint(c, endpoint, now)
        })
    }

    async fn claim_cursors(
        &self,
        endpoint: &str,
        token: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedCursor>> {
        // Events that became final since the last claim, first: the claims and the
        // reads below stop at the horizon.
        super::event_horizon::advance(&self.delivery, &self.horizon).await?;
        let mut conn = self.delivery.acquire().await?;
        if !queries::work_due(&mut conn, endpoint, now).await? {
            return Ok(Vec::new());
        }
        drop(conn);
        // Two statements, each atomic (the missing cursors, then the lease of the due
        // ones): no transaction around them, which would add two round trips per tick.
        retry("claim_cursors", || async {
            let mut c = self.delivery.acquire().await?;
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
        let mut conn = self.delivery.acquire().await?;
        queries::events_after(&mut conn, repository, after, limit).await
    }

    async fn events_after_each(
        &self,
        cursors: &[(String, i64)],
        limit: u32,
    ) -> Result<Vec<Vec<StoredEvent>>> {
        let mut conn = self.delivery.acquire().await?;
        queries::events_after_each(&mut conn, cursors, limit).await
    }

    async fn complete_cursor(
        &self,
        endpoint: &str,
        repository: &str,
        token: &str,
        delivered_id: i64,
    ) -> Result<bool> {
        let mut conn = self.delivery.acquire().await?;
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
            let mut conn = self.delivery.acquire().await?;
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
        let mut conn = self.delivery.acquire().await?;
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
        in_tx!(self.delivery, "dead_letter", |c| queries::dead_letter(
            c, endpoint, repository, token, events, attempts, error, now,
        ))
    }

    async fn dead_letters(&self, endpoint: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>> {
        let mut conn = self.delivery.acquire().await?;
        queries::dead_letters(&mut conn, endpoint, limit).await
    }

    async fn replay_dead_letters(&self, filter: &ReplayFilter) -> Result<u64> {
        in_tx!(self.delivery, "replay_dead_letters", |c| {
            queries::replay_dead_letters(c, filter)
        })
    }

    async fn pending_events(
        &self,
        endpoint: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PendingEvent>> {
        let mut conn = self.delivery.acquire().await?;
        queries::pending_events(&mut conn, endpoint, limit).await
    }

    async fn endpoint_backlog(&self, endpoint: &str) -> Result<EndpointBacklog> {
        let mut conn = self.delivery.acquire().await?;
        queries::endpoint_backlog(&mut conn, endpoint).await
    }

    async fn prune_events(&self, stale_before: i64, limit: u32) -> Result<u64> {
        // Pruning goes stream by stream: the streams of the events that became final
        // since the last claim are recorded first (with no endpoint left to claim,
        // nothing else would).
        super::event_horizon::advance(&self.delivery, &self.horizon).await?;
        let pruned: Vec<(String, i64)> = in_tx!(self.delivery, "prune_events", |c| {
            queries::prune_events(c, stale_before, limit)
        })?;
        Ok(pruned.len() as u64)
    }
}

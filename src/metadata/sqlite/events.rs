//! The outbox on SQLite (see `metadata::events`): every write is a group-commit job on
//! the one writer connection, so claims need no row locks (a lease UPDATE suffices:
//! there is one process), and rides a batch with the pushes (one fsync for all).
//!
//! Reads go to the read pool, never to the writer: whether anything is due
//! (`work_due`), a tick's events (`events_after_each`, unless the in-memory hand-off
//! of just-committed events has them: `handoff`), the backlog and listings. A
//! WAL reader sees what was committed when its read began, so it may be stale but
//! never ahead, and never moves a cursor: a claim (on the writer) returns the cursor's
//! position, and the events read after that claim committed include every event
//! committed before it; a completion records an id read after that position, so a
//! cursor neither moves backwards nor skips an event. A stale `work_due` only delays
//! a claim to the next poll.
//!
//! The delivery side's writes are few per tick: the claim carries the completions of
//! the previous tick (`complete_and_claim`); failures and dead letters are one job each.
//! Each is timed as its kind of job (`group_commit::JobKind`).

use async_trait::async_trait;

use super::group_commit::JobKind;
use super::SqliteStore;
use crate::metadata::events::{
    ClaimedCursor, DeadLetter, EndpointBacklog, EventStore, PendingEvent, ReplayFilter, StoredEvent,
};
use crate::metadata::Result;
use crate::types::EventRecord;

/// Most cursors one statement of `complete_cursors` completes (PostgreSQL binds arrays
/// and completes them all in one).
const COMPLETE_CHUNK: usize = 64;

/// Most cursors one statement of `events_after_each` reads (PostgreSQL binds arrays: one
/// statement for them all). Its cursors go in chunks of powers of two up to this, so
/// each connection caches at most six such statements.
const READ_CHUNK: usize = 32;

/// The number of cursors the next statement of `events_after_each` reads, of `left`.
fn read_chunk_len(left: usize) -> usize {
    if left >= READ_CHUNK {
        READ_CHUNK
    } else {
        1 << (usize::BITS - 1 - left.leading_zeros())
    }
}

/// The shared outbox statements, for SQLite.
pub(super) mod queries {
    /// What a stream's events are read from: the index in id order (migration 0014:
    /// see there why not one per repository).
    macro_rules! stream {
        () => {
            "events INDEXED BY events_id_repository"
        };
    }

    // Each stream counts its events.
    crate::metadata::events::event_queries!(
        sqlx::SqliteConnection,
        "",
        stream!(),
        "",
        "SELECT repository, last_id FROM event_streams WHERE events = 0 LIMIT $1",
        // Oldest first: the index in id order reads them in order.
        concat!(
            "DELETE FROM events WHERE id IN (
                 SELECT e.id FROM events e WHERE NOT EXISTS (
                     SELECT 1 FROM event_endpoints ep
                     LEFT JOIN event_cursors c ON c.endpoint = ep.name AND c.repository = e.repository
                     WHERE ",
            crate::metadata::events::pending_condition!(),
            ") ORDER BY e.id LIMIT $1)
             RETURNING repository, id"
        )
    );

    /// `events_after` of each cursor, one `UNION ALL` of per-cursor reads (each on
    /// `stream!()`) per [`READ_CHUNK`](super::READ_CHUNK) of them: SQLite binds no
    /// arrays (PostgreSQL's reads bind them), and chunks of a few sizes keep each
    /// connection's statements few.
    pub(super) async fn events_after_each(
        conn: &mut sqlx::SqliteConnection,
        cursors: &[(String, i64)],
        limit: u32,
    ) -> Result<Vec<Vec<StoredEvent>>> {
        let mut out = Vec::with_capacity(cursors.len());
        let mut rest = cursors;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(super::read_chunk_len(rest.len()));
            let mut q = sqlx::QueryBuilder::new("");
            for (i, (repository, after)) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(" UNION ALL ");
                }
                q.push("SELECT * FROM (SELECT CAST(")
                    .push_bind(i as i64)
                    .push(concat!(
                        " AS BIGINT) AS cursor, id, record, endpoint, created_at FROM ",
                        stream!(),
                        " WHERE repository = "
                    ))
                    .push_bind(repository.as_str())
                    .push(" AND id > ")
                    .push_bind(*after)
                    .push(" ORDER BY id LIMIT ")
                    .push_bind(i64::from(limit))
                    .push(") AS c")
                    .push(i.to_string());
            }
            let rows: Vec<crate::metadata::events::CursorEventRow> =
                q.build_query_as().fetch_all(&mut *conn).await?;
            out.extend(crate::metadata::events::per_cursor(chunk.len(), rows)?);
            rest = tail;
        }
        Ok(out)
    }

    /// `complete_cursor` for each of `done`, one statement per
    /// [`COMPLETE_CHUNK`](super::COMPLETE_CHUNK) of them (a request's cursors are one
    /// statement); how many were still leased.
    pub(super) async fn complete_cursors(
        conn: &mut sqlx::SqliteConnection,
        endpoint: &str,
        token: &str,
        done: &[(String, i64)],
    ) -> Result<u64> {
        let mut n = 0;
        for chunk in done.chunks(super::COMPLETE_CHUNK) {
            let mut q = sqlx::QueryBuilder::new(
                "UPDATE event_cursors SET delivered_id = d.delivered_id, attempts = 0,
                     due_at = 0, lease_token = NULL, lease_until = 0, last_error = NULL
                 FROM (",
            );
            for (i, (repository, delivered_id)) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(" UNION ALL ");
                }
                q.push("SELECT CAST(")
                    .push_bind(repository.as_str())
                    .push(" AS TEXT) AS repository, CAST(")
                    .push_bind(*delivered_id)
                    .push(" AS BIGINT) AS delivered_id");
            }
            q.push(") AS d WHERE event_cursors.endpoint = ")
                .push_bind(endpoint)
                .push(" AND event_cursors.lease_token = ")
                .push_bind(token)
                .push(" AND event_cursors.repository = d.repository");
            n += q.build().execute(&mut *conn).await?.rows_affected();
        }
        Ok(n)
    }

    /// One repository's events (for `append_events`). SQLite runs one write
    /// transaction at a time, so ids are in commit order without locking the stream
    /// first, and the stream's `last_id` is recorded by a trigger on the insert
    /// (migrations 0009 and 0014): one statement per event, each a round trip to the writer
    /// connection's thread on the path of every push.
    async fn append_stream(
        conn: &mut sqlx::SqliteConnection,
        _repository: &str,
        list: &[&EventRecord],
        now: i64,
    ) -> Result<()> {
        for e in list {
            sqlx::query(
                "INSERT INTO events (uuid, repository, action, created_at, record, endpoint)
                 VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(&e.id)
            .bind(&e.repository)
            .bind(e.action.as_str())
            .bind(now)
            .bind(crate::metadata::events::encode(e)?)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append_events(&self, events: &[EventRecord]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows = super::outbox::encode_rows(events)?;
        self.writer
            .write_as(JobKind::NotifyOther, move |conn| {
                Box::pin(async move { super::outbox::append_rows(conn, rows).await })
            })
            .await
    }

    async fn register_endpoint(&self, endpoint: &str, now: i64) -> Result<()> {
        let endpoint = endpoint.to_string();
        self.writer
            .write_as(JobKind::NotifyOther, move |conn| {
                Box::pin(async move { queries::register_endpoint(conn, &endpoint, now).await })
            })
            .await
    }

    async fn claim_cursors(
        &self,
        endpoint: &str,
        token: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedCursor>> {
        let mut conn = self.reader.acquire().await?;
        if !queries::work_due(&mut conn, endpoint, now).await? {
            return Ok(Vec::new());
        }
        drop(conn);
        let (endpoint, token) = (endpoint.to_string(), token.to_string());
        self.writer
            .write_as(JobKind::NotifyClaim, move |conn| {
                Box::pin(async move {
                    queries::claim_cursors(conn, &endpoint, &token, now, lease_until, limit).await
                })
            })
            .await
    }

    async fn events_after(
        &self,
        repository: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let mut conn = self.reader.acquire().await?;
        queries::events_after(&mut conn, repository, after, limit).await
    }

    async fn events_after_each(
        &self,
        cursors: &[(String, i64)],
        limit: u32,
    ) -> Result<Vec<Vec<StoredEvent>>> {
        // From the hand-off where it holds a cursor's next events (`handoff`), the
        // others from the table in one read.
        let handoff = self.writer.handoff();
        let max = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut out: Vec<Option<Vec<StoredEvent>>> = cursors
            .iter()
            .map(|(repository, after)| handoff.events_after(repository, *after, max))
            .collect();
        let missing: Vec<(String, i64)> = cursors
            .iter()
            .zip(&out)
            .filter(|(_, got)| got.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        super::handoff::count(cursors.len() - missing.len(), missing.len());
        let mut read = if missing.is_empty() {
            Vec::new()
        } else {
            let mut conn = self.reader.acquire().await?;
            queries::events_after_each(&mut conn, &missing, limit).await?
        }
        .into_iter();
        Ok(out
            .iter_mut()
            .map(|got| got.take().or_else(|| read.next()).unwrap_or_default())
            .collect())
    }

    async fn complete_cursor(
        &self,
        endpoint: &str,
        repository: &str,
        token: &str,
        delivered_id: i64,
    ) -> Result<bool> {
        let (e, r, t) = (
            endpoint.to_string(),
            repository.to_string(),
            token.to_string(),
        );
        self.writer
            .write_as(JobKind::NotifyComplete, move |conn| {
                Box::pin(
                    async move { queries::complete_cursor(conn, &e, &r, &t, delivered_id).await },
                )
            })
            .await
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
        let (e, t, done) = (endpoint.to_string(), token.to_string(), done.to_vec());
        self.writer
            .write_as(JobKind::NotifyComplete, move |conn| {
                Box::pin(async move { queries::complete_cursors(conn, &e, &t, &done).await })
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
        if done.is_empty() {
            let claimed = self
                .claim_cursors(endpoint, token, now, lease_until, limit)
                .await?;
            return Ok((0, claimed));
        }
        let (e, dt, t, done) = (
            endpoint.to_string(),
            done_token.to_string(),
            token.to_string(),
            done.to_vec(),
        );
        // One job: the completions, then the claim (which may take the cursors they
        // released again), committed with whatever pushes share the batch.
        self.writer
            .write_as(JobKind::NotifyClaim, move |conn| {
                Box::pin(async move {
                    let completed = queries::complete_cursors(conn, &e, &dt, &done).await?;
                    let claimed =
                        queries::claim_cursors(conn, &e, &t, now, lease_until, limit).await?;
                    Ok((completed, claimed))
                })
            })
            .await
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
        let (e, r, t, err) = (
            endpoint.to_string(),
            repository.to_string(),
            token.to_string(),
            error.to_string(),
        );
        self.writer
            .write_as(JobKind::NotifyComplete, move |conn| {
                Box::pin(async move {
                    queries::fail_cursor(conn, &e, &r, &t, attempts, due_at, &err).await
                })
            })
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
        let (e, r, t, err, list) = (
            endpoint.to_string(),
            repository.to_string(),
            token.to_string(),
            error.to_string(),
            events.to_vec(),
        );
        self.writer
            .write_as(JobKind::NotifyOther, move |conn| {
                Box::pin(async move {
                    queries::dead_letter(conn, &e, &r, &t, &list, attempts, &err, now).await
                })
            })
            .await
    }

    async fn dead_letters(&self, endpoint: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>> {
        let mut conn = self.reader.acquire().await?;
        queries::dead_letters(&mut conn, endpoint, limit).await
    }

    async fn replay_dead_letters(&self, filter: &ReplayFilter) -> Result<u64> {
        let filter = filter.clone();
        self.writer
            .write_as(JobKind::NotifyOther, move |conn| {
                Box::pin(async move { queries::replay_dead_letters(conn, &filter).await })
            })
            .await
    }

    async fn pending_events(
        &self,
        endpoint: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PendingEvent>> {
        let mut conn = self.reader.acquire().await?;
        queries::pending_events(&mut conn, endpoint, limit).await
    }

    async fn endpoint_backlog(&self, endpoint: &str) -> Result<EndpointBacklog> {
        let mut conn = self.reader.acquire().await?;
        queries::endpoint_backlog(&mut conn, endpoint).await
    }

    async fn prune_events(&self, stale_before: i64, limit: u32) -> Result<u64> {
        let handoff = self.writer.handoff().clone();
        self.writer
            .write_as(JobKind::NotifyPrune, move |conn| {
                Box::pin(async move {
                    let pruned = queries::prune_events(conn, stale_before, limit).await?;
                    // Pruned events must not be handed out again (a cursor created
                    // later starts before them): forgotten here, on the writer, before
                    // any later claim runs; the rest stays held.
                    handoff.forget(&pruned);
                    Ok(pruned.len() as u64)
                })
            })
            .await
    }
}

//! The notification outbox: events written in the transaction of the change they
//! report, delivery cursors per (endpoint, repository) that any instance can lease,
//! and dead letters.
//!
//! **Order.** Each repository's events are one stream ordered by `events.id`. On
//! PostgreSQL every transaction that writes events first locks its repository's
//! `event_streams` row (an upsert), then inserts the events, then records the stream's
//! `last_id`; the lock is held to commit. (SQLite runs one write transaction at a time,
//! so there ids are in commit order anyway: it inserts, and a trigger records `last_id`.) Two transactions writing events for one repository therefore
//! run their inserts one after the other, so ids (assigned at insert) are in commit
//! order within a repository and a reader never sees id 11 committed while id 10 is
//! still in flight. Events are always the *last* statements of a transaction, so a
//! transaction holding a stream lock waits for nothing but its own commit: the lock
//! adds no deadlock cycle, and it serializes only the commits of writes to the same
//! repository. With several repositories (a pull batch, a replay) streams are locked
//! in name order.
//!
//! **Delivery state.** `event_endpoints` records each endpoint when a worker first
//! serves it, with the last event id of that moment (`start_id`): a new endpoint starts
//! from "now". A cursor row (endpoint, repository) says everything up to
//! `delivered_id` is done (delivered, ignored by the endpoint's rules, or dead-lettered);
//! no cursor means "up to `start_id`". A worker claims due cursors by setting a lease
//! (a random token and an expiry); PostgreSQL claims them `FOR UPDATE SKIP LOCKED`, so
//! instances never wait on each other's rows; SQLite has one process and one writer.
//! Completing or failing a batch is conditional on the lease token, so a worker whose
//! lease expired (it stalled, another took over) changes nothing.
//!
//! **Bounds.** Claims, batches and prunes are `LIMIT`ed; the work a tick finds is
//! bounded by the streams that have events (`event_streams` rows of repositories
//! without events are pruned). An endpoint that never answers costs its cursor rows and
//! the events it holds back from pruning until they age into dead letters.

use async_trait::async_trait;

use super::Result;
use crate::types::EventRecord;

/// An event as stored in the outbox.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Position in its repository's stream (`events.id`).
    pub seq: i64,
    pub record: EventRecord,
    /// Set for a replay meant for one endpoint only.
    pub endpoint: Option<String>,
    pub created_at: i64,
}

/// A cursor a worker has leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCursor {
    pub repository: String,
    pub delivered_id: i64,
    /// Failed attempts of the batch at the head of the cursor.
    pub attempts: u32,
}

/// An event that an endpoint gave up on.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub endpoint: String,
    pub record: EventRecord,
    pub attempts: u32,
    pub last_error: String,
    pub dead_at: i64,
}

/// An event still to be delivered to an endpoint, for `wharf events list`.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub endpoint: String,
    pub event: StoredEvent,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// How far behind an endpoint is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointBacklog {
    pub pending: u64,
    /// `created_at` of the oldest pending event.
    pub oldest: Option<i64>,
}

/// Which dead letters `replay` puts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayFilter {
    All,
    Endpoint(String),
    /// By event id (the UUID receivers see).
    Event(String),
}

/// The outbox, as the registry core (writes of pull events) and the delivery workers
/// use it. Events of pushes, mounts and deletes are written by the write methods of
/// the other aggregates, in their own transactions (their `events` parameter).
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends events in one transaction (pull events, in batches).
    async fn append_events(&self, events: &[EventRecord]) -> Result<()>;
    /// Records that a worker serves `endpoint` (starting from the current last event
    /// the first time); `now` keeps it from being forgotten.
    async fn register_endpoint(&self, endpoint: &str, now: i64) -> Result<()>;
    /// Leases up to `limit` cursors of `endpoint` that have events, are due and are
    /// not leased, until `lease_until`, under `token`.
    async fn claim_cursors(
        &self,
        endpoint: &str,
        token: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedCursor>>;
    /// Events of `repository` after `after`, in stream order.
    async fn events_after(
        &self,
        repository: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;
    /// [`EventStore::events_after`] for each of several cursors (repository, after), in
    /// one statement per [`READ_CHUNK`] of them: what a delivery tick reads for the
    /// cursors it claimed. One list per cursor, in the order given.
    async fn events_after_each(
        &self,
        cursors: &[(String, i64)],
        limit: u32,
    ) -> Result<Vec<Vec<StoredEvent>>>;
    /// Marks everything up to `delivered_id` done and releases the lease. False if the
    /// lease was lost.
    async fn complete_cursor(
        &self,
        endpoint: &str,
        repository: &str,
        token: &str,
        delivered_id: i64,
    ) -> Result<bool>;
    /// [`EventStore::complete_cursor`] for several cursors of `endpoint` leased under
    /// `token` (repository, delivered id), in one transaction: what one delivery request
    /// carrying events of several repositories completes. Returns how many were still
    /// leased (and so completed).
    async fn complete_cursors(
        &self,
        endpoint: &str,
        token: &str,
        done: &[(String, i64)],
    ) -> Result<u64>;
    /// Records a failed attempt and when to try again; releases the lease.
    async fn fail_cursor(
        &self,
        endpoint: &str,
        repository: &str,
        token: &str,
        attempts: u32,
        due_at: i64,
        error: &str,
    ) -> Result<bool>;
    /// Moves `events` (the head of the cursor) to the dead letters and the cursor past
    /// them, in one transaction.
    // The cursor's key (endpoint, repository), the lease token and the letter: each
    // is needed and none belongs to another; a struct for them would be used once.
    #[allow(clippy::too_many_arguments)]
    async fn dead_letter(
        &self,
        endpoint: &str,
        repository: &str,
        token: &str,
        events: &[StoredEvent],
        attempts: u32,
        error: &str,
        now: i64,
    ) -> Result<bool>;
    /// Dead letters, oldest first, optionally of one endpoint.
    async fn dead_letters(&self, endpoint: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>>;
    /// Puts dead letters back in their repositories' streams, each for its endpoint
    /// only, with its id unchanged; returns how many.
    async fn replay_dead_letters(&self, filter: &ReplayFilter) -> Result<u64>;
    /// Events not yet done, per registered endpoint (optionally one).
    async fn pending_events(&self, endpoint: Option<&str>, limit: u32)
        -> Result<Vec<PendingEvent>>;
    /// How many events `endpoint` has still to deliver, and the oldest one's age.
    async fn endpoint_backlog(&self, endpoint: &str) -> Result<EndpointBacklog>;
    /// Forgets endpoints no worker has served since `stale_before`, deletes events every
    /// remaining endpoint has passed and the streams left empty; returns how many
    /// events went.
    async fn prune_events(&self, stale_before: i64, limit: u32) -> Result<u64>;
}

/// `events` row.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    id: i64,
    record: String,
    endpoint: Option<String>,
    created_at: i64,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = super::MetadataError;

    fn try_from(r: EventRow) -> Result<StoredEvent> {
        Ok(StoredEvent {
            seq: r.id,
            record: decode(&r.record, r.id)?,
            endpoint: r.endpoint,
            created_at: r.created_at,
        })
    }
}

/// `event_dead_letters` row.
#[derive(sqlx::FromRow)]
pub(super) struct DeadRow {
    id: i64,
    endpoint: String,
    record: String,
    attempts: i64,
    last_error: String,
    dead_at: i64,
}

impl TryFrom<DeadRow> for DeadLetter {
    type Error = super::MetadataError;

    fn try_from(r: DeadRow) -> Result<DeadLetter> {
        Ok(DeadLetter {
            record: decode(&r.record, r.id)?,
            id: r.id,
            endpoint: r.endpoint,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            last_error: r.last_error,
            dead_at: r.dead_at,
        })
    }
}

/// A pending event with its cursor's state.
#[derive(sqlx::FromRow)]
pub(super) struct PendingRow {
    ep: String,
    id: i64,
    record: String,
    endpoint: Option<String>,
    created_at: i64,
    attempts: Option<i64>,
    last_error: Option<String>,
}

impl TryFrom<PendingRow> for PendingEvent {
    type Error = super::MetadataError;

    fn try_from(r: PendingRow) -> Result<PendingEvent> {
        Ok(PendingEvent {
            endpoint: r.ep,
            attempts: r
                .attempts
                .map_or(0, |a| u32::try_from(a).unwrap_or(u32::MAX)),
            last_error: r.last_error,
            event: StoredEvent {
                seq: r.id,
                record: decode(&r.record, r.id)?,
                endpoint: r.endpoint,
                created_at: r.created_at,
            },
        })
    }
}

pub(super) fn encode(e: &EventRecord) -> Result<String> {
    serde_json::to_string(e)
        .map_err(|err| super::MetadataError::Corrupt(format!("cannot encode an event: {err}")))
}

fn decode(s: &str, id: i64) -> Result<EventRecord> {
    serde_json::from_str(s).map_err(|e| super::MetadataError::Corrupt(format!("event {id}: {e}")))
}

/// Most cursors one statement of `complete_cursors` completes.
pub(super) const COMPLETE_CHUNK: usize = 64;

/// Most cursors one statement of `events_after_each` reads. Its cursors go in chunks of
/// powers of two up to this, so each connection caches at most six such statements.
pub const READ_CHUNK: usize = 32;

/// The number of cursors the next statement of `events_after_each` reads, of `left`.
pub(super) fn read_chunk_len(left: usize) -> usize {
    if left >= READ_CHUNK {
        READ_CHUNK
    } else {
        1 << (usize::BITS - 1 - left.leading_zeros())
    }
}

/// `events` row with the position of the cursor it was read for (`events_after_each`).
#[derive(sqlx::FromRow)]
pub(super) struct CursorEventRow {
    cursor: i64,
    #[sqlx(flatten)]
    row: EventRow,
}

/// Sorts the rows of one `events_after_each` statement into one list per cursor of a
/// chunk of `n` (each cursor's rows come in stream order).
pub(super) fn per_cursor(n: usize, rows: Vec<CursorEventRow>) -> Result<Vec<Vec<StoredEvent>>> {
    let mut out: Vec<Vec<StoredEvent>> = (0..n).map(|_| Vec::new()).collect();
    for r in rows {
        let list = usize::try_from(r.cursor)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| super::MetadataError::Corrupt(format!("cursor {} read", r.cursor)))?;
        list.push(StoredEvent::try_from(r.row)?);
    }
    Ok(out)
}

/// Repositories of `events` in name order (the order streams are locked in), each
/// with its events in the order given.
pub(super) fn by_repository(events: &[EventRecord]) -> Vec<(&str, Vec<&EventRecord>)> {
    let mut out: std::collections::BTreeMap<&str, Vec<&EventRecord>> = Default::default();
    for e in events {
        out.entry(e.repository.as_str()).or_default().push(e);
    }
    out.into_iter().collect()
}

/// Events pending for an endpoint `ep` (a name column in scope): after its cursor, or
/// after its start when it has none, and meant for every endpoint or for it.
macro_rules! pending_condition {
    () => {
        "e.id > COALESCE(c.delivered_id, ep.start_id) AND (e.endpoint IS NULL OR e.endpoint = ep.name)"
    };
}

/// Defines the outbox statements for one engine, on a connection (`$conn`) inside the
/// caller's transaction. `$lock` ends the claim query: `FOR UPDATE OF c SKIP LOCKED`
/// on PostgreSQL, nothing on SQLite.
macro_rules! event_queries {
    ($conn:ty, $lock:literal) => {
        use $crate::metadata::events::{
            by_repository, encode, ClaimedCursor, DeadLetter, DeadRow, EndpointBacklog,
            EventRow, PendingEvent, PendingRow, ReplayFilter, StoredEvent,
        };
        use $crate::metadata::rows::records;
        use $crate::metadata::Result;
        use $crate::types::EventRecord;

        /// Appends `events` to their repositories' streams (see the module doc of
        /// `metadata::events` for why the stream row is locked first).
        ///
        /// Each repository's events go through the engine's `append_stream` (defined
        /// beside this macro's expansion): the statements differ, the order they keep
        /// does not.
        pub(crate) async fn append_events(conn: &mut $conn, events: &[EventRecord]) -> Result<()> {
            let now = $crate::clock::now_ms();
            for (repository, list) in by_repository(events) {
                append_stream(conn, repository, &list, now).await?;
            }
            Ok(())
        }

        pub(super) async fn insert_event(
            conn: &mut $conn,
            e: &EventRecord,
            endpoint: Option<&str>,
            now: i64,
        ) -> Result<i64> {
            Ok(sqlx::query_scalar(
                "INSERT INTO events (uuid, repository, action, created_at, record, endpoint)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&e.id)
            .bind(&e.repository)
            .bind(e.action.as_str())
            .bind(now)
            .bind(encode(e)?)
            .bind(endpoint)
            .fetch_one(&mut *conn)
            .await?)
        }

        pub(super) async fn register_endpoint(conn: &mut $conn, name: &str, now: i64) -> Result<()> {
            sqlx::query(
                "INSERT INTO event_endpoints (name, start_id, seen_at)
                 VALUES ($1, (SELECT COALESCE(MAX(id), 0) FROM events), $2)
                 ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at",
            )
            .bind(name)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Whether `endpoint` has anything to claim: a read, so an idle worker's poll
        /// writes nothing (on SQLite every write is a commit with an fsync).
        pub(super) async fn work_due(conn: &mut $conn, endpoint: &str, now: i64) -> Result<bool> {
            // `SELECT 1` is an INT4 on PostgreSQL: decoded as i32 (as in `gc`).
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM event_streams s JOIN event_endpoints ep ON ep.name = $1
                 LEFT JOIN event_cursors c ON c.endpoint = $1 AND c.repository = s.repository
                 WHERE s.last_id > COALESCE(c.delivered_id, ep.start_id)
                   AND (c.repository IS NULL OR (c.due_at <= $2 AND c.lease_until <= $2))
                 LIMIT 1",
            )
            .bind(endpoint)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(found.is_some())
        }

        /// Creates the missing cursors of streams with news for `endpoint`, then leases
        /// the due ones.
        pub(super) async fn claim_cursors(
            conn: &mut $conn,
            endpoint: &str,
            token: &str,
            now: i64,
            lease_until: i64,
            limit: u32,
        ) -> Result<Vec<ClaimedCursor>> {
            sqlx::query(
                "INSERT INTO event_cursors (endpoint, repository, delivered_id)
                 SELECT ep.name, s.repository, ep.start_id
                 FROM event_streams s JOIN event_endpoints ep ON ep.name = $1
                 WHERE s.last_id > ep.start_id AND NOT EXISTS (
                     SELECT 1 FROM event_cursors c WHERE c.endpoint = $1 AND c.repository = s.repository)
                 ON CONFLICT DO NOTHING",
            )
            .bind(endpoint)
            .execute(&mut *conn)
            .await?;
            // One statement leases them all (the subquery picks and, on PostgreSQL,
            // locks them), rather than a select and an update per cursor.
            let mut due: Vec<(String, i64, i64, i64)> = sqlx::query_as(concat!(
                "UPDATE event_cursors SET lease_token = $1, lease_until = $2
                 WHERE endpoint = $3 AND lease_until <= $4 AND repository IN (
                     SELECT c.repository
                     FROM event_cursors c JOIN event_streams s ON s.repository = c.repository
                     WHERE c.endpoint = $3 AND s.last_id > c.delivered_id
                       AND c.due_at <= $4 AND c.lease_until <= $4
                     ORDER BY c.due_at, c.repository LIMIT $5 ",
                $lock,
                ")
                 RETURNING repository, delivered_id, attempts, due_at"
            ))
            .bind(token)
            .bind(lease_until)
            .bind(endpoint)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            due.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
            Ok(due
                .into_iter()
                .map(|(repository, delivered_id, attempts, _)| ClaimedCursor {
                    repository,
                    delivered_id,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                })
                .collect())
        }

        pub(super) async fn events_after(
            conn: &mut $conn,
            repository: &str,
            after: i64,
            limit: u32,
        ) -> Result<Vec<StoredEvent>> {
            let rows: Vec<EventRow> = sqlx::query_as(
                "SELECT id, record, endpoint, created_at FROM events
                 WHERE repository = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(repository)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            records(rows)
        }

        /// `events_after` of each cursor, one `UNION ALL` of per-cursor reads (each
        /// on the stream index) per `READ_CHUNK` of them.
        pub(super) async fn events_after_each(
            conn: &mut $conn,
            cursors: &[(String, i64)],
            limit: u32,
        ) -> Result<Vec<Vec<StoredEvent>>> {
            let mut out = Vec::with_capacity(cursors.len());
            let mut rest = cursors;
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at($crate::metadata::events::read_chunk_len(rest.len()));
                let mut q = sqlx::QueryBuilder::new("");
                for (i, (repository, after)) in chunk.iter().enumerate() {
                    if i > 0 {
                        q.push(" UNION ALL ");
                    }
                    q.push("SELECT * FROM (SELECT CAST(")
                        .push_bind(i as i64)
                        .push(
                            " AS BIGINT) AS cursor, id, record, endpoint, created_at
                             FROM events WHERE repository = ",
                        )
                        .push_bind(repository.as_str())
                    .push(" AND id > ")
                    .push_bind(*after)
                    .push(" ORDER BY id LIMIT ")
                    .push_bind(i64::from(limit))
                    .push(") AS c")
                    .push(i.to_string());
                }
                let rows: Vec<$crate::metadata::events::CursorEventRow> =
                    q.build_query_as().fetch_all(&mut *conn).await?;
                out.extend($crate::metadata::events::per_cursor(chunk.len(), rows)?);
                rest = tail;
            }
            Ok(out)
        }

        pub(super) async fn complete_cursor(
            conn: &mut $conn,
            endpoint: &str,
            repository: &str,
            token: &str,
            delivered_id: i64,
        ) -> Result<bool> {
            let done = sqlx::query(
                "UPDATE event_cursors SET delivered_id = $1, attempts = 0, due_at = 0,
                     lease_token = NULL, lease_until = 0, last_error = NULL
                 WHERE endpoint = $2 AND repository = $3 AND lease_token = $4",
            )
            .bind(delivered_id)
            .bind(endpoint)
            .bind(repository)
            .bind(token)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// `complete_cursor` for each of `done`, one statement per [`COMPLETE_CHUNK`]
        /// of them (a request's cursors are one statement); how many were still leased.
        pub(super) async fn complete_cursors(
            conn: &mut $conn,
            endpoint: &str,
            token: &str,
            done: &[(String, i64)],
        ) -> Result<u64> {
            let mut n = 0;
            for chunk in done.chunks($crate::metadata::events::COMPLETE_CHUNK) {
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

        pub(super) async fn fail_cursor(
            conn: &mut $conn,
            endpoint: &str,
            repository: &str,
            token: &str,
            attempts: u32,
            due_at: i64,
            error: &str,
        ) -> Result<bool> {
            let done = sqlx::query(
                "UPDATE event_cursors SET attempts = $1, due_at = $2, last_error = $3,
                     lease_token = NULL, lease_until = 0
                 WHERE endpoint = $4 AND repository = $5 AND lease_token = $6",
            )
            .bind(i64::from(attempts))
            .bind(due_at)
            .bind(error)
            .bind(endpoint)
            .bind(repository)
            .bind(token)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        #[allow(clippy::too_many_arguments)]
        pub(super) async fn dead_letter(
            conn: &mut $conn,
            endpoint: &str,
            repository: &str,
            token: &str,
            events: &[StoredEvent],
            attempts: u32,
            error: &str,
            now: i64,
        ) -> Result<bool> {
            let Some(last) = events.last() else {
                return Ok(false);
            };
            if !complete_cursor(conn, endpoint, repository, token, last.seq).await? {
                return Ok(false);
            }
            for e in events {
                sqlx::query(
                    "INSERT INTO event_dead_letters
                         (endpoint, event_id, uuid, repository, created_at, record, attempts, last_error, dead_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(endpoint)
                .bind(e.seq)
                .bind(&e.record.id)
                .bind(repository)
                .bind(e.created_at)
                .bind(encode(&e.record)?)
                .bind(i64::from(attempts))
                .bind(error)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
            Ok(true)
        }

        pub(super) async fn dead_letters(
            conn: &mut $conn,
            endpoint: Option<&str>,
            limit: u32,
        ) -> Result<Vec<DeadLetter>> {
            let rows: Vec<DeadRow> = sqlx::query_as(
                "SELECT id, endpoint, record, attempts, last_error, dead_at FROM event_dead_letters
                 WHERE (CAST($1 AS TEXT) IS NULL OR endpoint = $1) ORDER BY id LIMIT $2",
            )
            .bind(endpoint)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            records(rows)
        }

        /// Takes the dead letters `filter` selects out of their table and appends each
        /// to its repository's stream for its endpoint only, with its record (and so
        /// its id) unchanged.
        pub(super) async fn replay_dead_letters(
            conn: &mut $conn,
            filter: &ReplayFilter,
        ) -> Result<u64> {
            let (endpoint, uuid) = match filter {
                ReplayFilter::All => (None, None),
                ReplayFilter::Endpoint(e) => (Some(e.as_str()), None),
                ReplayFilter::Event(u) => (None, Some(u.as_str())),
            };
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "DELETE FROM event_dead_letters
                 WHERE (CAST($1 AS TEXT) IS NULL OR endpoint = $1)
                   AND (CAST($2 AS TEXT) IS NULL OR uuid = $2)
                 RETURNING endpoint, repository, record",
            )
            .bind(endpoint)
            .bind(uuid)
            .fetch_all(&mut *conn)
            .await?;
            // Back in the order they were first written.
            let mut parsed = Vec::with_capacity(rows.len());
            for (endpoint, repository, record) in rows {
                let r: EventRecord = serde_json::from_str(&record).map_err(|e| {
                    $crate::metadata::MetadataError::Corrupt(format!("dead letter: {e}"))
                })?;
                parsed.push((repository, r.timestamp_ms, endpoint, r));
            }
            parsed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            let now = $crate::clock::now_ms();
            let mut current: Option<String> = None;
            let mut last = 0i64;
            let n = parsed.len() as u64;
            for (repository, _, endpoint, record) in parsed {
                if current.as_deref() != Some(repository.as_str()) {
                    if let Some(prev) = current.take() {
                        set_last(conn, &prev, last).await?;
                    }
                    sqlx::query(
                        "INSERT INTO event_streams (repository, last_id) VALUES ($1, 0)
                         ON CONFLICT (repository) DO UPDATE SET last_id = event_streams.last_id",
                    )
                    .bind(&repository)
                    .execute(&mut *conn)
                    .await?;
                    current = Some(repository.clone());
                }
                last = insert_event(conn, &record, Some(&endpoint), now).await?;
            }
            if let Some(prev) = current {
                set_last(conn, &prev, last).await?;
            }
            Ok(n)
        }

        pub(super) async fn set_last(conn: &mut $conn, repository: &str, last: i64) -> Result<()> {
            sqlx::query("UPDATE event_streams SET last_id = $1 WHERE repository = $2")
                .bind(last)
                .bind(repository)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        pub(super) async fn pending_events(
            conn: &mut $conn,
            endpoint: Option<&str>,
            limit: u32,
        ) -> Result<Vec<PendingEvent>> {
            let rows: Vec<PendingRow> = sqlx::query_as(concat!(
                "SELECT ep.name AS ep, e.id, e.record, e.endpoint, e.created_at, c.attempts, c.last_error
                 FROM events e JOIN event_endpoints ep ON (CAST($1 AS TEXT) IS NULL OR ep.name = $1)
                 LEFT JOIN event_cursors c ON c.endpoint = ep.name AND c.repository = e.repository
                 WHERE ",
                $crate::metadata::events::pending_condition!(),
                " ORDER BY e.id, ep.name LIMIT $2"
            ))
            .bind(endpoint)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            records(rows)
        }

        pub(super) async fn endpoint_backlog(
            conn: &mut $conn,
            endpoint: &str,
        ) -> Result<EndpointBacklog> {
            let (pending, oldest): (i64, Option<i64>) = sqlx::query_as(concat!(
                "SELECT COUNT(*), MIN(e.created_at)
                 FROM events e JOIN event_endpoints ep ON ep.name = $1
                 LEFT JOIN event_cursors c ON c.endpoint = ep.name AND c.repository = e.repository
                 WHERE ",
                $crate::metadata::events::pending_condition!()
            ))
            .bind(endpoint)
            .fetch_one(&mut *conn)
            .await?;
            Ok(EndpointBacklog {
                pending: u64::try_from(pending).unwrap_or(0),
                oldest,
            })
        }

        /// One pruning pass; see `EventStore::prune_events`.
        pub(super) async fn prune_events(
            conn: &mut $conn,
            stale_before: i64,
            limit: u32,
        ) -> Result<u64> {
            sqlx::query("DELETE FROM event_endpoints WHERE seen_at < $1")
                .bind(stale_before)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "DELETE FROM event_cursors WHERE NOT EXISTS
                     (SELECT 1 FROM event_endpoints ep WHERE ep.name = event_cursors.endpoint)",
            )
            .execute(&mut *conn)
            .await?;
            let pruned = sqlx::query(concat!(
                "DELETE FROM events WHERE id IN (
                     SELECT e.id FROM events e WHERE NOT EXISTS (
                         SELECT 1 FROM event_endpoints ep
                         LEFT JOIN event_cursors c ON c.endpoint = ep.name AND c.repository = e.repository
                         WHERE ",
                $crate::metadata::events::pending_condition!(),
                ") ORDER BY e.id LIMIT $1)"
            ))
            .bind(i64::from(limit))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            // Streams with no events left. The delete is conditional on the `last_id`
            // read here: a writer that appended meanwhile changed it (and holds the
            // row until it commits), so its stream stays.
            let empty: Vec<(String, i64)> = sqlx::query_as(
                "SELECT s.repository, s.last_id FROM event_streams s
                 WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.repository = s.repository)
                 LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            for (repository, last_id) in empty {
                let gone = sqlx::query(
                    "DELETE FROM event_streams WHERE repository = $1 AND last_id = $2",
                )
                .bind(&repository)
                .bind(last_id)
                .execute(&mut *conn)
                .await?;
                if gone.rows_affected() == 1 {
                    // Every event of the stream is gone, so a missing cursor (start_id)
                    // cannot bring one back.
                    sqlx::query(
                        "DELETE FROM event_cursors WHERE repository = $1 AND lease_until <= $2",
                    )
                    .bind(&repository)
                    .bind($crate::clock::now_ms())
                    .execute(&mut *conn)
                    .await?;
                }
            }
            Ok(pruned)
        }
    };
}

pub(super) use event_queries;
pub(super) use pending_condition;

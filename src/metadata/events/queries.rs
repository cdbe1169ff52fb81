//! The outbox's statements, written once for both engines (`event_queries!`, expanded
//! by each engine's `events` module with its connection type and claim lock): appends,
//! endpoint registration, claims, reads, completions, failures, dead letters, replays,
//! the backlog and pruning. A delivery tick's reads and completions of many cursors at
//! once are each engine's own (`UNION ALL`s on SQLite, arrays on PostgreSQL). See the parent module for the order and lease rules they keep.

/// Events pending for an endpoint `ep` (a name column in scope): after its cursor, or
/// after its start when it has none, and meant for every endpoint or for it.
macro_rules! pending_condition {
    () => {
        "e.id > COALESCE(c.delivered_id, ep.start_id) AND (e.endpoint IS NULL OR e.endpoint = ep.name)"
    };
}

/// Defines the outbox statements for one engine, on a connection (`$conn`) inside the
/// caller's transaction. `$lock` ends the claim query: `FOR UPDATE OF c SKIP LOCKED`
/// on PostgreSQL, nothing on SQLite. `$stream` is what a stream's events are read
/// from (`events`, with the index to use on SQLite), `$final_only` ends a stream read's
/// condition so it returns only events a reader may pass (PostgreSQL: up to the
/// horizon, see `postgres::event_horizon`; nothing on SQLite), `$empty_streams` selects
/// `(repository, last_id)` of streams with no events left, at most `$1` (migration
/// 0014: an index on PostgreSQL, a count per stream on SQLite), and `$prune` deletes
/// up to `$1` events no endpoint is waiting for, `RETURNING repository, id` (SQLite:
/// oldest first, in id order; PostgreSQL: stream by stream, migration 0015).
macro_rules! event_queries {
    ($conn:ty, $lock:literal, $stream:expr, $final_only:literal, $empty_streams:literal, $prune:expr) => {
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

        /// Records that a worker serves `name`; an endpoint seen for the first time
        /// starts after the newest event (the highest `last_id` of the streams: every
        /// event's stream row is there until the event is pruned, with `last_id` at
        /// least its id — on PostgreSQL once the horizon has passed it, which its
        /// caller advances first; PostgreSQL has no index on `id` alone, migration 0015).
        pub(super) async fn register_endpoint(conn: &mut $conn, name: &str, now: i64) -> Result<()> {
            sqlx::query(
                "INSERT INTO event_endpoints (name, start_id, seen_at)
                 VALUES ($1, (SELECT COALESCE(MAX(last_id), 0) FROM event_streams), $2)
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
            let rows: Vec<EventRow> = sqlx::query_as(concat!(
                "SELECT id, record, endpoint, created_at FROM ",
                $stream,
                " WHERE repository = $1 AND id > $2",
                $final_only,
                " ORDER BY id LIMIT $3"
            ))
            .bind(repository)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            records(rows)
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
            // Each engine records the streams of the events inserted (a trigger on
            // SQLite, the horizon's discovery on PostgreSQL).
            let now = $crate::clock::now_ms();
            let n = parsed.len() as u64;
            for (_, _, endpoint, record) in parsed {
                insert_event(conn, &record, Some(&endpoint), now).await?;
            }
            Ok(n)
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

        /// One pruning pass; see `EventStore::prune_events`. Returns the events that
        /// went, as (repository, id).
        pub(super) async fn prune_events(
            conn: &mut $conn,
            stale_before: i64,
            limit: u32,
        ) -> Result<Vec<(String, i64)>> {
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
            let pruned: Vec<(String, i64)> = sqlx::query_as($prune)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            // Streams with no events left. The delete is conditional on the `last_id`
            // read here: a writer that appended meanwhile changed it (and holds the
            // row until it commits), so its stream stays.
            let empty: Vec<(String, i64)> = sqlx::query_as($empty_streams)
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

pub(crate) use event_queries;
pub(crate) use pending_condition;

//! The notification outbox: events written in the transaction of the change they
//! report, delivery cursors per (endpoint, repository) that any instance can lease,
//! and dead letters.
//!
//! **Order.** Each repository's events are one stream ordered by `events.id`, and a
//! reader must never pass an id that can still appear: see id 11 committed while id 10
//! is in flight, move past 11, and never deliver 10. SQLite runs one write transaction
//! at a time, so its ids are in commit order anyway: it inserts, and a trigger records
//! the stream's `last_id`. PostgreSQL writers only insert their events (no lock shared
//! between pushes), so ids can commit out of order; claims and reads stop at the
//! horizon, the id up to which every transaction that drew one has ended, which the
//! delivery workers move and with it record the streams' `last_id`
//! (`postgres::event_horizon`, migration 0016). Of two writes that conflict (one tag,
//! one link) the later to commit has the higher id, because the id is drawn after the
//! write's row locks.
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
//!
//! This module owns the outbox's types and the [`EventStore`] trait; `rows` the rows
//! as read and the events' JSON; `queries` the statements, written once for both
//! engines.

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
    /// one statement (on SQLite one per few dozen of them): what a delivery tick
    /// reads for the cursors it claimed. One list per cursor, in the order given.
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
    /// [`EventStore::complete_cursors`] of `done` (leased under `done_token`) and then
    /// [`EventStore::claim_cursors`], in one transaction: a delivery worker records the
    /// deliveries of one tick with the claim of the next (`notify::worker`), so a tick
    /// costs the store one write rather than one per request. Returns how many of
    /// `done` were still leased, and the cursors claimed.
    #[allow(clippy::too_many_arguments)]
    async fn complete_and_claim(
        &self,
        endpoint: &str,
        done_token: &str,
        done: &[(String, i64)],
        token: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<(u64, Vec<ClaimedCursor>)>;
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

mod queries;
mod rows;

pub(crate) use queries::{event_queries, pending_condition};
pub(crate) use rows::{
    by_repository, encode, per_cursor, CursorEventRow, DeadRow, EventRow, PendingRow,
};

//! PostgreSQL metadata store: the one for several instances behind a load balancer.
//!
//! Owns the connection pools (`database.url`, `database.maxconnections` for requests,
//! [`DELIVERY_CONNECTIONS`] more for the notification delivery workers), the schema
//! (`migrations/postgres`, applied on open under sqlx's advisory lock, so instances
//! starting together migrate once) and the queries; the write transactions are in
//! `writes`.
//!
//! Concurrency model: every transaction runs at READ COMMITTED, asked for explicitly
//! (`BEGIN ISOLATION LEVEL READ COMMITTED`) so a server-wide default cannot change it.
//! Races between instances are settled by the database, not by reading first:
//! - inserts that may collide (`blobs`, `repositories`, links, manifests) are
//!   `INSERT … ON CONFLICT DO NOTHING` followed by a read in a *separate* statement
//!   (a new snapshot, so it sees the row the other transaction committed);
//! - tags are one upsert, so the last of two racing pushes wins and neither fails;
//! - `advance_upload` is an `UPDATE … WHERE received = $expected` (after a row-lock
//!   wait PostgreSQL re-checks the condition on the new row version, so of several
//!   racing updates exactly one matches), `delete_upload` is `DELETE … RETURNING`;
//! - `put_manifest` locks the rows that prove its children present (see `writes`);
//! - garbage collection claims reviews with `FOR UPDATE SKIP LOCKED` and locks what it
//!   re-checks (`gc`; the argument is in `registry::gc`).
//!
//! Deadlocks, serialization failures and the unique/foreign-key violations a race can
//! still produce are retried a few times (`retry`) so a client never sees a 500 for a
//! race it caused.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection};

use super::{
    BlobCommit, BlobIndex, ManifestStore, MetadataError, NewManifest, PutManifestOutcome, Result,
    UploadStore,
};
use crate::types::{
    BlobRecord, ChunkRecord, Digest, EventRecord, ManifestRecord, ReferrerRecord, RepoName, Tag,
    UploadRecord,
};

mod event_horizon;
mod events;
mod gc;
mod import;
mod mirror;
mod quota;
mod signatures;
mod writes;

/// The shared statements, for PostgreSQL.
mod queries {
    crate::metadata::queries::engine_queries!(
        sqlx::Postgres,
        sqlx::PgConnection,
        "m.created_at, m.digest COLLATE \"C\""
    );
}

/// The quota statements, for PostgreSQL.
mod quota_sql {
    crate::metadata::quota_queries::quota_queries!(
        sqlx::Postgres,
        sqlx::PgConnection,
        "gc_now()",
        " FOR UPDATE"
    );
}

/// The garbage collector's statements, for PostgreSQL: row locks, `SKIP LOCKED` claims.
mod gc_sql {
    crate::metadata::gc::gc_queries!(
        sqlx::Postgres,
        sqlx::PgConnection,
        "gc_now()",
        "GREATEST",
        " FOR UPDATE",
        " FOR UPDATE SKIP LOCKED"
    );
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Server-side limits for every pooled connection: no statement runs longer than
/// `statement_timeout`, none waits for a row lock longer than `lock_timeout`, and a
/// session that stops mid-transaction (a stuck instance) loses its locks after
/// `idle_in_transaction_session_timeout`.
const SESSION_LIMITS: [(&str, &str); 3] = [
    ("statement_timeout", "30s"),
    ("lock_timeout", "10s"),
    ("idle_in_transaction_session_timeout", "60s"),
];
/// Attempts of a write transaction that keeps losing races before the error is returned.
const MAX_ATTEMPTS: u32 = 6;

/// Connections of the notification delivery pool (see [`PostgresStore::delivery`]).
pub const DELIVERY_CONNECTIONS: u32 = 4;

pub struct PostgresStore {
    pool: PgPool,
    /// The delivery workers' own connections (`DELIVERY_CONNECTIONS`, opened when first
    /// used: none without notifications): their claims, reads and completions, the
    /// outbox's horizon and housekeeping. In the request pool they queued behind the
    /// pushes for every statement — under load a tick's five acquisitions took ~35 ms
    /// before its read, and since the horizon is taken before the claim, every event
    /// reached its receiver that much later (`bench/results/2026-12-02-thirteenth.md`).
    delivery: PgPool,
    /// The outbox's horizon as this instance last saw it (`event_horizon`).
    horizon: event_horizon::Horizon,
}

/// True for the errors a race between transactions produces and a fresh attempt
/// resolves (classified in `sql_error`).
fn is_race(e: &MetadataError) -> bool {
    matches!(e, MetadataError::Conflict(_))
}

/// A short pause before attempt `attempt + 1`: exponential, with jitter so that the
/// transactions that collided do not collide again.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = 2u64 << attempt.min(6);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    Duration::from_millis(base + h.finish() % base)
}

/// Runs `attempt` until it succeeds, fails with something other than a race, or has
/// lost `MAX_ATTEMPTS` races.
async fn retry<T, F, Fut>(op: &'static str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if n < MAX_ATTEMPTS && is_race(&e) => {
                tracing::debug!(op, attempt = n, error = %e, "transaction lost a race; retrying");
                tokio::time::sleep(backoff(n)).await;
                n += 1;
            }
            other => return other,
        }
    }
}

/// A pool of `size` connections where a call waits at most `acquire_timeout` for one.
fn pool_options(size: u32, acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size.max(1))
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .max_lifetime(Duration::from_secs(1800))
        // A large manifest grows the connection's write buffer to its size, and the
        // driver keeps that capacity for the connection's life: 16 pooled connections
        // that each once carried a 4 MiB manifest held ~160 MiB when idle. Back to the
        // default size when a connection returns to the pool (free when it never grew).
        .after_release(|conn, _| {
            Box::pin(async move {
                conn.shrink_buffers();
                Ok(true)
            })
        })
}

impl PostgresStore {
    /// Connects, applies pending migrations, and opens a pool of `pool_size` connections
    /// where a call waits at most `acquire_timeout` for one (and, unopened until first
    /// used, the delivery workers' pool of [`DELIVERY_CONNECTIONS`]).
    pub async fn open(url: &str, pool_size: u32, acquire_timeout: Duration) -> Result<Self> {
        // sqlx's per-statement log (DEBUG) summarises every query's SQL before the log
        // filter is consulted when trace export is on; statements are logged only when
        // slow (sqlx's default: WARN after 1 s).
        let options = PgConnectOptions::from_str(url)?
            .application_name("wharf")
            .log_statements(log::LevelFilter::Off);
        // Migrations run on a connection of their own, without the statement timeout
        // (a future migration may build an index on a large table). Closing it also
        // releases sqlx's advisory lock should a migration fail half-way.
        let mut conn = PgConnection::connect_with(&options).await?;
        let migrated = MIGRATOR.run(&mut conn).await;
        let _ = conn.close().await;
        migrated?;
        let options = options.options(SESSION_LIMITS);
        let pool = pool_options(pool_size, acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let delivery =
            pool_options(DELIVERY_CONNECTIONS, acquire_timeout).connect_lazy_with(options);
        Ok(PostgresStore {
            pool,
            delivery,
            horizon: event_horizon::Horizon::default(),
        })
    }

    /// The pool, for callers that need their own queries (tests, maintenance).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl UploadStore for PostgresStore {
    async fn create_upload(&self, u: &UploadRecord) -> Result<()> {
        queries::insert_upload(&self.pool, u).await
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        queries::get_upload(&self.pool, id).await
    }

    /// No retry: losing the race is the answer the caller needs.
    async fn advance_upload(
        &self,
        id: &str,
        expected_offset: u64,
        new_offset: u64,
        chunks: &[ChunkRecord],
        hash_state: &[u8],
        now: i64,
    ) -> Result<bool> {
        queries::advance_upload(
            &self.pool,
            id,
            expected_offset,
            new_offset,
            chunks,
            hash_state,
            now,
        )
        .await
    }

    async fn delete_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        queries::take_upload(&self.pool, id).await
    }

    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>> {
        queries::stale_uploads(&self.pool, before, limit).await
    }
}

#[async_trait]
impl BlobIndex for PostgresStore {
    async fn commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
        events: &[EventRecord],
    ) -> Result<BlobCommit> {
        retry("commit_blob", || {
            writes::commit_blob(&self.pool, repo, blob, upload_id, events)
        })
        .await
    }

    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobRecord>> {
        queries::repo_blob(&self.pool, repo, digest).await
    }

    async fn any_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        queries::any_blob(&self.pool, digest).await
    }

    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        retry("link_blob", || {
            writes::link_blob(&self.pool, repo, digest, events)
        })
        .await
    }

    async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        retry("unlink_blob", || {
            writes::unlink_blob(&self.pool, repo, digest, events)
        })
        .await
    }
}

#[async_trait]
impl ManifestStore for PostgresStore {
    async fn put_manifest(
        &self,
        repo: &RepoName,
        m: &NewManifest,
        events: &[EventRecord],
    ) -> Result<PutManifestOutcome> {
        retry("put_manifest", || {
            writes::put_manifest(&self.pool, repo, m, events)
        })
        .await
    }

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        queries::manifest_by_digest(&self.pool, repo, digest).await
    }

    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>> {
        queries::manifest_by_tag(&self.pool, repo, tag).await
    }

    /// The cascade locks tag rows a concurrent push may hold: a deadlock is retried.
    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        retry("delete_manifest", || {
            writes::delete_manifest(&self.pool, repo, digest, events)
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[EventRecord]) -> Result<bool> {
        retry("delete_tag", || {
            writes::delete_tag(&self.pool, repo, tag, events)
        })
        .await
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<String>>> {
        queries::list_tags(&self.pool, repo, last, limit).await
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>> {
        queries::referrers(&self.pool, repo, subject, artifact_type).await
    }
}

crate::metadata::queries::repository_store_impl!(PostgresStore, pool);

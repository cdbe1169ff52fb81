//! The metadata store: repositories, blobs, repository links, manifests and their
//! references, tags and upload sessions.
//!
//! One small trait per aggregate — [`UploadStore`] (upload sessions), [`BlobIndex`]
//! (blob records and their links to repositories), [`ManifestStore`] (manifests, tags,
//! referrers), [`RepositoryStore`] (the catalog, and liveness), [`GcStore`] (garbage
//! collection's review queues, tombstones and re-checks; see `gc`), [`EventStore`] (the
//! notification outbox, see [`events`]), [`mirror::MirrorStore`] (the pull-through
//! cache's fills, tags and content), [`import::ImportStore`] (`wharf import`'s
//! checkpoints), [`quota::QuotaStore`] (storage quotas' counters, quotas and
//! reservations), [`signatures::SignatureStore`] (signatures stored through OpenShift's
//! API extension) — combined in
//! [`Metadata`], which is what the registry core holds. `sqlite` and `postgres`
//! implement every trait over the same schema (`migrations/<engine>/`); they share the
//! row mapping (`rows`) and every statement that reads or writes the same way
//! (`queries`), and keep apart only what truly differs (SQLite's group commit,
//! PostgreSQL's row locks and retries). A decorator (the metadata cache) replaces the
//! aggregates it caches and nothing else.
//!
//! The store owns atomicity: every method is one transaction, so a half-finished write
//! is never visible. It knows nothing of HTTP and enforces no spec rule beyond what it
//! is told to check. No engine type leaves this module: errors are [`MetadataError`].

use async_trait::async_trait;

use std::sync::Arc;

use crate::types::{
    BlobRecord, ChunkRecord, Digest, EventRecord, ManifestRecord, ReferrerRecord, RepoName, Tag,
    UploadRecord,
};

#[macro_use]
mod store_methods;
pub mod breaker;
pub mod events;
pub mod gc;
mod guarded;
pub mod import;
pub mod instrumented;
pub mod mirror;
mod mirror_queries;
pub mod postgres;
mod queries;
pub mod quota;
mod quota_queries;
mod rows;
pub mod signatures;
mod sql_error;
pub mod sqlite;

pub use events::{
    ClaimedCursor, DeadLetter, EndpointBacklog, EventStore, PendingEvent, ReplayFilter, StoredEvent,
};

/// A failure's cause, as the engine reported it (its type stays inside this module).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the metadata layer. No engine type appears here: the engines convert
/// their errors (`sql_error`) and classify them as transient or not.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// A permanent failure of the database (bad credentials, a missing table, a
    /// constraint the code did not expect): retrying will not help.
    #[error("database error: {0}")]
    Database(#[source] BoxError),
    /// The database could not answer now (pool exhausted, timeouts, lost connection,
    /// busy): the request may be retried.
    #[error("database temporarily unavailable: {0}")]
    Unavailable(String),
    /// The database could not be reached: no connection in the acquire timeout, a
    /// connection lost, the server shutting down or refusing connections. Counted by
    /// the circuit breaker ([`breaker`]); a retry may cure it.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// No pooled connection within the acquire timeout: the database is down (every
    /// connect refused) or busy (every connection in use); the breaker tells which.
    #[error("no database connection within the acquire timeout: {0}")]
    PoolTimedOut(String),
    /// The circuit breaker is open: the database was not tried. `retry_after` is the
    /// number of seconds until it will be.
    #[error("database unreachable (circuit breaker open; next try in {retry_after}s)")]
    CircuitOpen { retry_after: u64 },
    /// A transaction kept losing races with concurrent ones (serialization failures,
    /// deadlocks, unique or foreign-key violations) and the store gave up retrying.
    #[error("transaction conflict: {0}")]
    Conflict(#[source] BoxError),
    /// `commit_blob` was told to close an upload session that no longer exists (it was
    /// cancelled, purged or committed by another request); nothing was written.
    #[error("upload session no longer exists")]
    UploadGone,
    #[error("migration failed: {0}")]
    Migrate(#[source] BoxError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database url {0:?}")]
    UnsupportedUrl(String),
    /// Another process has the SQLite database open (it holds the lock file beside it).
    #[error(
        "the SQLite database {database} is in use by {holder} (it holds {lock}); \
         SQLite serves one wharf process per database file: stop that process, or run \
         several instances on PostgreSQL (database.url: postgres://…)"
    )]
    InUse {
        database: String,
        lock: String,
        /// `process 1234`, or `another process` when it has not written its pid yet.
        holder: String,
    },
}

impl MetadataError {
    /// True for failures a retry may cure (answered with 503 and `Retry-After`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MetadataError::Unavailable(_)
                | MetadataError::Unreachable(_)
                | MetadataError::PoolTimedOut(_)
                | MetadataError::CircuitOpen { .. }
                | MetadataError::Conflict(_)
        )
    }
}

pub type Result<T> = std::result::Result<T, MetadataError>;

pub use gc::GcStore;

/// What a committed blob ended up as.
#[derive(Debug, Clone)]
pub struct BlobCommit {
    pub blob: BlobRecord,
    /// False when the digest was already stored: the caller's copy is redundant.
    pub stored_new: bool,
}

/// A manifest to store, with what it references and the tags to point at it.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub record: ManifestRecord,
    /// Blobs it references (config, layers), recorded as its references.
    pub blobs: Vec<Digest>,
    /// Manifests it references (an index's children).
    pub manifests: Vec<Digest>,
    /// Every referenced blob must be in the repository (false: a sparse manifest; the
    /// references are recorded all the same).
    pub require_blobs: bool,
    /// Every referenced manifest must be in the repository (false: a sparse index).
    pub require_manifests: bool,
    /// Tags to create or move, all or none.
    pub tags: Vec<Tag>,
}

/// Result of storing a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutManifestOutcome {
    Stored,
    /// A required child is not in the repository; nothing was written.
    MissingChild(Digest),
}

/// Upload sessions: the state an upload carries between requests.
#[async_trait]
pub trait UploadStore: Send + Sync + 'static {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()>;
    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>>;
    /// Records progress only if the session is still at `expected_offset`
    /// (optimistic concurrency between instances). Returns false if it moved or vanished.
    async fn advance_upload(
        &self,
        id: &str,
        expected_offset: u64,
        new_offset: u64,
        chunks: &[ChunkRecord],
        hash_state: &[u8],
        now: i64,
    ) -> Result<bool>;
    /// Deletes the session; returns it if it existed.
    async fn delete_upload(&self, id: &str) -> Result<Option<UploadRecord>>;
    /// Sessions not touched since `before` (for purging).
    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>>;
}

/// Blob records and their links to repositories.
#[async_trait]
pub trait BlobIndex: Send + Sync + 'static {
    /// In one transaction: delete the upload session `upload_id` if given (failing with
    /// [`MetadataError::UploadGone`], writing nothing, if it no longer exists), ensure the
    /// repository, record the blob (or keep the existing record of the same digest) and
    /// link it to the repository. `stored_new` is false when the digest existed.
    /// `events` go to the outbox in the same transaction.
    async fn commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
        events: &[EventRecord],
    ) -> Result<BlobCommit>;
    /// The blob if it is linked to `repo`.
    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobRecord>>;
    /// The blob if it is linked to any repository.
    async fn any_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>>;
    /// Links an existing blob to `repo` (cross-repository mount). False if no such blob
    /// (and `events` are not written).
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool>;
    /// Removes the link. False if it did not exist (and `events` are not written).
    async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool>;
}

/// Manifests, the tags that point at them, and their referrers.
#[async_trait]
/// Every write takes the events that report it: they are written to the outbox in the
/// write's transaction, and only if it changed something (stored, deleted).
pub trait ManifestStore: Send + Sync + 'static {
    async fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &NewManifest,
        events: &[EventRecord],
    ) -> Result<PutManifestOutcome>;
    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>>;
    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>>;
    /// Deletes the manifest, the tags pointing at it and its references.
    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool>;
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[EventRecord]) -> Result<bool>;
    /// Tags after `last` in lexical order; `None` if the repository does not exist.
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<String>>>;
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>>;
}

/// The repositories themselves (the catalog), and whether the database answers.
#[async_trait]
pub trait RepositoryStore: Send + Sync + 'static {
    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;
    /// Repository names after `last` in lexical order.
    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>>;
}

/// The metadata store as the registry core holds it: one handle per aggregate.
#[derive(Clone)]
pub struct Metadata {
    pub uploads: Arc<dyn UploadStore>,
    pub blobs: Arc<dyn BlobIndex>,
    pub manifests: Arc<dyn ManifestStore>,
    pub repositories: Arc<dyn RepositoryStore>,
    pub gc: Arc<dyn GcStore>,
    pub events: Arc<dyn EventStore>,
    /// The pull-through cache's state (`mirror`).
    pub mirror: Arc<dyn mirror::MirrorStore>,
    /// `wharf import`'s checkpoints (`import`).
    pub imports: Arc<dyn import::ImportStore>,
    /// Storage quotas: counters, quotas, reservations (`quota`).
    pub quotas: Arc<dyn quota::QuotaStore>,
    /// Signatures stored through the signature API extension (`signatures`).
    pub signatures: Arc<dyn signatures::SignatureStore>,
}

impl Metadata {
    /// Every aggregate served by one engine.
    pub fn from_engine<S>(store: Arc<S>) -> Metadata
    where
        S: UploadStore
            + BlobIndex
            + ManifestStore
            + RepositoryStore
            + GcStore
            + EventStore
            + mirror::MirrorStore
            + import::ImportStore
            + quota::QuotaStore
            + signatures::SignatureStore,
    {
        Metadata {
            uploads: store.clone(),
            blobs: store.clone(),
            manifests: store.clone(),
            mirror: store.clone(),
            imports: store.clone(),
            quotas: store.clone(),
            signatures: store.clone(),
            repositories: store.clone(),
            gc: store.clone(),
            events: store,
        }
    }
}

/// Opens the store a `database.url` names, running its migrations first.
/// The database file a `sqlite:` URL names (None for an in-memory database or another
/// engine's URL).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    sqlite::database_path(url)
}

pub async fn open(url: &str, pool_size: u32) -> Result<Metadata> {
    open_with(
        url,
        &StoreOptions {
            pool_size,
            ..StoreOptions::default()
        },
    )
    .await
}

/// How the store's pool behaves (`database.*`).
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Connections per instance.
    pub pool_size: u32,
    /// How long a call waits for a pooled connection before failing (503).
    pub acquire_timeout: std::time::Duration,
    /// The circuit breaker (PostgreSQL only), or none.
    pub breaker: Option<breaker::BreakerSettings>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size: 16,
            acquire_timeout: std::time::Duration::from_secs(2),
            breaker: Some(breaker::BreakerSettings::default()),
        }
    }
}

/// Opens the store a `database.url` names with `options`, running its migrations
/// first. On PostgreSQL the store is put behind the circuit breaker (when
/// `options.breaker` is set); SQLite is a local file with no connection to lose, and a
/// busy SQLite is contention a breaker would only make worse.
pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Metadata> {
    if url.starts_with("sqlite:") {
        let store =
            sqlite::SqliteStore::open(url, options.pool_size, options.acquire_timeout).await?;
        let store = instrumented::Instrumented::new(store, "sqlite");
        Ok(Metadata::from_engine(Arc::new(store)))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store =
            postgres::PostgresStore::open(url, options.pool_size, options.acquire_timeout).await?;
        let store = instrumented::Instrumented::new(store, "postgres");
        let meta = Metadata::from_engine(Arc::new(store));
        Ok(match options.breaker {
            Some(settings) => guarded::guard(meta, &breaker::Breaker::new(settings)),
            None => meta,
        })
    } else {
        Err(MetadataError::UnsupportedUrl(url.to_string()))
    }
}

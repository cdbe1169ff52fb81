//! The metadata store: repositories, blobs, repository links, manifests and their
//! references, tags and upload sessions.
//!
//! [`MetadataStore`] is the one trait the registry core talks to; `sqlite` and (later)
//! `postgres` implement it over the same schema (`migrations/<engine>/`). The store owns
//! atomicity: every method is one transaction, so a half-finished write is never visible.
//! It knows nothing of HTTP and enforces no spec rule beyond what it is told to check.

use async_trait::async_trait;

use crate::registry::digest::Digest;
use crate::registry::name::{RepoName, Tag};

pub mod postgres;
pub mod sqlite;

/// Errors of the metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The database could not answer now (pool exhausted, timeouts, lost connection,
    /// busy): the request may be retried.
    #[error("database temporarily unavailable: {0}")]
    Unavailable(String),
    /// `commit_blob` was told to close an upload session that no longer exists (it was
    /// cancelled, purged or committed by another request); nothing was written.
    #[error("upload session no longer exists")]
    UploadGone,
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database url {0:?}")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for MetadataError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        let transient = match &e {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => true,
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: connection exceptions (08), statement/lock timeouts,
                // too many connections, shutdown. SQLite: BUSY and LOCKED.
                code.starts_with("08")
                    || matches!(
                        code.as_ref(),
                        "57014"
                            | "55P03"
                            | "53300"
                            | "57P01"
                            | "57P02"
                            | "57P03"
                            | "5"
                            | "6"
                            | "517"
                            | "262"
                    )
            }
            _ => false,
        };
        if transient {
            MetadataError::Unavailable(e.to_string())
        } else {
            MetadataError::Database(e)
        }
    }
}

pub type Result<T> = std::result::Result<T, MetadataError>;

/// A blob known to the registry: its digest, size and where its bytes are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    pub digest: Digest,
    pub size: u64,
    pub storage_key: String,
}

/// A stored piece of an upload in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkRecord {
    pub key: String,
    pub offset: u64,
    pub len: u64,
}

/// An upload session as stored between requests.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub id: String,
    pub repository: RepoName,
    /// Bytes received and durably stored so far.
    pub offset: u64,
    /// Where the blob's bytes go (the first chunk's key on object stores).
    pub storage_key: String,
    pub chunks: Vec<ChunkRecord>,
    /// Serialized hash mid-state ([`crate::registry::hasher::ResumableHasher`]).
    pub hash_state: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a committed blob ended up as.
#[derive(Debug, Clone)]
pub struct BlobCommit {
    pub blob: BlobRecord,
    /// False when the digest was already stored: the caller's copy is redundant.
    pub stored_new: bool,
}

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub payload: Vec<u8>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    /// JSON object text.
    pub annotations: Option<String>,
}

/// A manifest to store, with the children that must exist in the repository.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub record: ManifestRecord,
    pub required_blobs: Vec<Digest>,
    pub required_manifests: Vec<Digest>,
    pub tag: Option<Tag>,
}

/// Result of storing a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutManifestOutcome {
    Stored,
    /// A required child is not in the repository; nothing was written.
    MissingChild(Digest),
}

/// A referrer of a subject, for the referrers API.
#[derive(Debug, Clone)]
pub struct ReferrerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// The operations the registry core needs from its metadata database.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;

    // Upload sessions.
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

    // Blobs.
    /// In one transaction: delete the upload session `upload_id` if given (failing with
    /// [`MetadataError::UploadGone`], writing nothing, if it no longer exists), ensure the
    /// repository, record the blob (or keep the existing record of the same digest) and
    /// link it to the repository. `stored_new` is false when the digest existed.
    async fn commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
    ) -> Result<BlobCommit>;
    /// The blob if it is linked to `repo`.
    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobRecord>>;
    /// The blob if it is linked to any repository.
    async fn any_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>>;
    /// Links an existing blob to `repo` (cross-repository mount). False if no such blob.
    async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Removes the link. False if it did not exist.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;

    // Manifests and tags.
    async fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &NewManifest,
    ) -> Result<PutManifestOutcome>;
    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>>;
    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>>;
    /// Deletes the manifest, the tags pointing at it and its references.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
    /// Tags after `last` in lexical order; `None` if the repository does not exist.
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<String>>>;
    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>>;
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>>;
}

/// Opens the store a `database.url` names, running its migrations first.
pub async fn open(url: &str, pool_size: u32) -> Result<std::sync::Arc<dyn MetadataStore>> {
    if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::open(url, pool_size).await?;
        Ok(std::sync::Arc::new(store))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = postgres::PostgresStore::open(url, pool_size).await?;
        Ok(std::sync::Arc::new(store))
    } else {
        Err(MetadataError::UnsupportedUrl(url.to_string()))
    }
}

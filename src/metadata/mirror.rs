//! The pull-through cache's state ([`MirrorStore`]): blob fills in progress and the
//! leases that make one instance in the cluster fetch each blob, the tags the cache
//! has seen upstream and when, the content it holds (for expiry and eviction), and
//! the leases that let one instance run each sweep.
//!
//! Every method is one statement or one transaction, like the other aggregates. Both
//! engines run the same statements (`mirror_queries`).

use async_trait::async_trait;

use super::Result;
use crate::types::{Digest, RepoName, Tag};

/// A blob being fetched from an upstream, and who fetches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillLease {
    pub digest: Digest,
    /// The (local) repository the upload session belongs to.
    pub repository: RepoName,
    /// The upstream's configured name, and the repository's name there.
    pub upstream: String,
    pub upstream_repository: String,
    /// The upload session the bytes go to.
    pub upload_id: String,
    /// The instance fetching it.
    pub owner: String,
    /// Changes with every owner: the fencing token of [`MirrorStore::renew_fill`].
    pub token: String,
    /// The blob's length, once the upstream has said.
    pub size: Option<u64>,
    /// Bytes durably stored so far.
    pub committed: u64,
    pub expires_at: i64,
    pub created_at: i64,
}

/// A tag as last seen upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedTag {
    pub digest: Digest,
    pub fetched_at: i64,
}

/// A manifest or blob the cache holds in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedContent {
    pub repository: RepoName,
    pub digest: Digest,
    pub upstream: String,
    pub is_manifest: bool,
    pub size: u64,
    pub fetched_at: i64,
    pub last_pulled: i64,
}

/// The pull-through cache's rows.
#[async_trait]
pub trait MirrorStore: Send + Sync + 'static {
    /// The fill of `digest`, live or expired, if there is a row.
    async fn fill(&self, digest: &Digest) -> Result<Option<FillLease>>;
    /// Records `lease` unless a fill of the digest is there; true if it was recorded.
    async fn claim_fill(&self, lease: &FillLease) -> Result<bool>;
    /// Makes `owner` (with `token`, until `expires_at`) the owner of a fill whose lease
    /// with `old_token` has expired by `now`; true if it did.
    async fn take_over_fill(
        &self,
        digest: &Digest,
        old_token: &str,
        owner: &str,
        token: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool>;
    /// Extends the lease held with `token` and records progress; false if the lease
    /// is no longer held with it.
    async fn renew_fill(
        &self,
        digest: &Digest,
        token: &str,
        committed: u64,
        size: Option<u64>,
        expires_at: i64,
    ) -> Result<bool>;
    /// Ends the fill held with `token` (done or abandoned).
    async fn release_fill(&self, digest: &Digest, token: &str) -> Result<()>;

    async fn cached_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<CachedTag>>;
    async fn put_cached_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        fetched_at: i64,
    ) -> Result<()>;

    /// Records content the cache fetched (fetched and pulled now).
    async fn record_content(&self, content: &CachedContent) -> Result<()>;
    /// Moves `last_pulled` forward for each (repository, digest, when).
    async fn touch_content(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()>;
    /// Content of `upstream` not pulled since `before`, oldest first.
    async fn expired_content(
        &self,
        upstream: &str,
        before: i64,
        limit: u32,
    ) -> Result<Vec<CachedContent>>;
    /// The least recently pulled content of every upstream.
    async fn least_recently_pulled(&self, limit: u32) -> Result<Vec<CachedContent>>;
    /// Bytes of every blob the cache holds (each repository's copy counted once per
    /// digest).
    async fn cached_blob_bytes(&self) -> Result<u64>;
    /// Forgets a row of content (once it has been deleted).
    async fn forget_content(&self, repo: &RepoName, digest: &Digest) -> Result<()>;
    /// True if a manifest of `repo` references `digest`.
    async fn is_referenced(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Takes the lease of the sweep `name` until `expires_at` if nobody holds it at
    /// `now` (or `owner` does already); true if `owner` holds it.
    async fn claim_sweep(&self, name: &str, owner: &str, expires_at: i64, now: i64)
        -> Result<bool>;
}

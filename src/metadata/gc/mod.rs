//! [`GcStore`]: the garbage collector's aggregate — review queues, tombstones, the
//! re-checks that decide what nothing references, last-pulled times, and what the
//! orphan sweep and retention need to read.
//!
//! **Queueing** is done by the schema (`migrations/*/0002_gc.sql`): triggers on the
//! writes that drop a reference (a tag moved or deleted, a manifest deleted with its
//! references, a blob linked or unlinked) queue a review of what they dropped, with the
//! database's clock as its `event_at`. Every writer — this release, the previous one
//! during a rolling deploy, a cascade — queues the same way.
//!
//! **Liveness**, as the review transactions check it (the rules are the core's, see
//! `registry::gc`; they are checked here because they must be checked under the
//! transaction's locks):
//! - a manifest is reachable while a tag points at it, a manifest of its repository
//!   references it, or its subject is a manifest of its repository;
//! - a blob's link to a repository stays while a manifest of that repository
//!   references the blob; a blob stays while any repository links it.
//!
//! A review is *due* once `event_at` is older than the caller's delay. Reviews,
//! tombstones and the rows they delete are explained, with the proof that no live blob
//! is deleted, in `registry::gc`.
//!
//! The statements both engines run are `queries` (`gc_queries!`).

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;

use super::Result;
use crate::types::{Digest, RepoName, Tag};

mod queries;

pub(super) use queries::gc_queries;

/// A blob whose rows a review removed: its object is to be deleted, then this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub storage_key: String,
    pub digest: Digest,
    pub size: u64,
}

/// What one batch of reviews did (committed).
#[derive(Debug, Clone, Default)]
pub struct ReviewBatch {
    /// Reviews claimed and settled.
    pub reviewed: usize,
    /// Reviews that found what they looked at still in use (or already gone).
    pub kept: usize,
    /// Manifests deleted, as (repository, digest); their references went with them.
    pub manifests: Vec<(RepoName, Digest)>,
    /// Blob links removed: no manifest of the repository referenced the blob.
    pub unlinked: Vec<(RepoName, Digest)>,
    /// Blobs no repository links any more: rows gone, tombstones committed.
    pub tombstones: Vec<Tombstone>,
}

impl ReviewBatch {
    /// Repositories whose cached reads this batch changed.
    pub fn repositories(&self) -> BTreeSet<RepoName> {
        (self.manifests.iter().map(|(r, _)| r.clone()))
            .chain(self.unlinked.iter().map(|(r, _)| r.clone()))
            .collect()
    }
}

/// What the due reviews would do now, read without changing anything.
#[derive(Debug, Clone, Default)]
pub struct ReviewPreview {
    /// Manifests that would be deleted, with their payload sizes.
    pub manifests: Vec<(RepoName, Digest, u64)>,
    /// Links that would be removed.
    pub unlinked: Vec<(RepoName, Digest)>,
    /// Blobs that would be deleted, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Due reviews that would keep what they look at.
    pub kept: usize,
}

/// The review queues' lengths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub blob_reviews: u64,
    pub blob_reviews_due: u64,
    pub manifest_reviews: u64,
    pub manifest_reviews_due: u64,
    pub tombstones: u64,
}

/// A manifest pulled (GET or HEAD) at `at` (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PullRecord {
    pub repo: RepoName,
    pub digest: Digest,
    pub at: i64,
}

/// One repository as retention sees it.
#[derive(Debug, Clone, Default)]
pub struct RepoSnapshot {
    pub tags: Vec<TagInfo>,
    pub manifests: Vec<ManifestInfo>,
    /// (parent, child) for every manifest a manifest of the repository references.
    pub children: Vec<(Digest, Digest)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub name: Tag,
    pub digest: Digest,
    /// When the tag was last pushed (Unix ms).
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub size: u64,
    /// When it was pushed (Unix ms).
    pub created_at: i64,
    pub subject: Option<Digest>,
    pub last_pulled_at: Option<i64>,
}

/// The garbage collector's reads and writes. Every method is one transaction.
#[async_trait]
pub trait GcStore: Send + Sync + 'static {
    /// Claims up to `limit` manifest reviews due (queued more than `delay_ms` ago, by the
    /// database's clock; on PostgreSQL `FOR UPDATE SKIP LOCKED`, so instances share the
    /// queue) and, in the same transaction, re-checks each manifest under a row lock and
    /// deletes it if unreachable. The reviews are deleted either way.
    async fn review_manifests(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch>;
    /// Claims up to `limit` blob reviews due and, in the same transaction, with the blob's
    /// row and links locked: removes the links no manifest of their repository
    /// references, and if no link is left deletes the blob's row and commits its
    /// tombstone. The reviews are deleted either way.
    async fn review_blobs(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch>;
    /// What the first `limit` due reviews of each kind would do now; changes nothing.
    async fn preview_reviews(&self, delay_ms: i64, limit: u32) -> Result<ReviewPreview>;
    /// Tombstones committed more than `older_than_ms` ago (left by a pass that stopped
    /// between its commit and the object delete).
    async fn tombstones(&self, older_than_ms: i64, limit: u32) -> Result<Vec<Tombstone>>;
    /// Removes tombstones once their objects are gone.
    async fn clear_tombstones(&self, storage_keys: &[String]) -> Result<()>;
    /// Whether a blob of this digest is being deleted.
    async fn is_tombstoned(&self, digest: &Digest) -> Result<bool>;
    /// Pushes back the pending reviews of these blobs (they were just used).
    async fn touch_blobs(&self, digests: &[Digest]) -> Result<()>;
    /// Records when manifests were last pulled (never moving a time backwards).
    async fn record_pulls(&self, pulls: &[PullRecord]) -> Result<()>;
    /// Every storage key a row points at: blobs, upload sessions and their chunks,
    /// tombstones — read in one statement, so one consistent snapshot.
    async fn referenced_keys(&self) -> Result<HashSet<String>>;
    /// The queues' lengths (due: older than `delay_ms`).
    async fn queue_depth(&self, delay_ms: i64) -> Result<QueueDepth>;
    /// The repository's tags, manifests and manifest references, for retention.
    async fn repository_snapshot(&self, repo: &RepoName) -> Result<Option<RepoSnapshot>>;
    /// Deletes the tag only if it still points at `digest`.
    async fn delete_tag_if(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<bool>;
    /// Deletes the manifest only if, checked under its row lock, it is unreachable.
    async fn delete_manifest_if_unreachable(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool>;
}

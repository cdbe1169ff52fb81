//! [`CachedMetadata`]: a [`BlobIndex`] and [`ManifestStore`] in front of the
//! database's that answers the pull path's reads from a [`CacheBackend`] and renews a
//! repository's generation after every write that can change what those reads return —
//! garbage collection's deletes included: its [`GcStore`] passes through here too, and
//! each committed batch renews the generation of every repository it changed, before
//! the core deletes a single object.
//!
//! Fail-open: a backend error or timeout is logged (once per outage) and counted, and
//! from then on every request goes straight to the database; a background task probes
//! the backend every [`PROBE_INTERVAL`] and brings the cache back as soon as it answers.
//! Writes made while the cache is unreachable are remembered (the repository names, in
//! memory) and their generations renewed before the cache is used again, so an entry
//! filled before the outage is never served after a write that happened during it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::metrics::metrics;
use super::{codec, keys, CacheBackend, CacheError};
use crate::metadata::gc::{
    GcStore, PullRecord, QueueDepth, RepoSnapshot, ReviewBatch, ReviewPreview, Tombstone,
};
use crate::metadata::{
    BlobCommit, BlobIndex, ManifestStore, Metadata, NewManifest, PutManifestOutcome, Result,
};
use crate::types::digest::Digest;
use crate::types::name::{RepoName, Tag};
use crate::types::{BlobRecord, EventRecord, ManifestRecord, ReferrerRecord};

/// How often an unreachable backend is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Which reads are cached (the `entry` label of the metrics).
#[derive(Clone, Copy)]
enum Entry {
    Blob,
    Manifest,
    Tag,
}

impl Entry {
    fn kind(self) -> char {
        match self {
            Entry::Blob => 'b',
            Entry::Manifest => 'm',
            Entry::Tag => 't',
        }
    }

    fn label(self) -> &'static str {
        match self {
            Entry::Blob => "blob",
            Entry::Manifest => "manifest",
            Entry::Tag => "tag",
        }
    }
}

/// Whether the backend may be used, and what must be renewed before it is.
struct Health {
    /// False from the first error until the backend answers and nothing is pending.
    up: AtomicBool,
    /// Repositories written while the cache was unreachable. `up` only changes to true
    /// under this lock, and only when it is empty.
    pending: Mutex<HashSet<RepoName>>,
}

pub struct CachedMetadata {
    blobs: Arc<dyn BlobIndex>,
    manifests: Arc<dyn ManifestStore>,
    gc: Arc<dyn GcStore>,
    backend: Arc<dyn CacheBackend>,
    ttl: Duration,
    health: Health,
}

impl CachedMetadata {
    /// Puts the cache in front of `meta`'s blob index and manifest store; spawns the
    /// task that probes the backend while it is unreachable (it ends when the store is
    /// dropped).
    pub fn wrap(meta: Metadata, backend: Arc<dyn CacheBackend>, ttl: Duration) -> Metadata {
        metrics().up.set(1);
        let cached = Arc::new(CachedMetadata {
            blobs: meta.blobs,
            manifests: meta.manifests,
            gc: meta.gc,
            backend,
            ttl,
            health: Health {
                up: AtomicBool::new(true),
                pending: Mutex::new(HashSet::new()),
            },
        });
        let weak = Arc::downgrade(&cached);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                let Some(cached) = weak.upgrade() else { break };
                if !cached.usable() {
                    cached.recover().await;
                }
            }
        });
        Metadata {
            uploads: meta.uploads,
            blobs: cached.clone(),
            manifests: cached.clone(),
            repositories: meta.repositories,
            gc: cached,
            events: meta.events,
            mirror: meta.mirror,
            imports: meta.imports,
            quotas: meta.quotas,
            signatures: meta.signatures,
        }
    }

    fn usable(&self) -> bool {
        self.health.up.load(Ordering::Acquire)
    }

    /// Records a backend failure (logging the first of an outage); with `repo`, also
    /// that its generation must be renewed before the cache is used again.
    fn failed(&self, op: &'static str, error: Option<&CacheError>, repo: Option<&RepoName>) {
        if let Some(error) = error {
            metrics().errors.with_label_values(&[op]).inc();
            tracing::debug!(cache = self.backend.name(), %error, op, "metadata cache error");
        }
        let mut pending = self.health.pending.lock().expect("pending lock");
        if let Some(repo) = repo {
            pending.insert(repo.clone());
            metrics()
                .invalidations
                .with_label_values(&["deferred"])
                .inc();
        }
        if self.health.up.swap(false, Ordering::AcqRel) {
            metrics().up.set(0);
            tracing::warn!(cache = self.backend.name(), error = ?error.map(|e| e.to_string()), op,
                "metadata cache unreachable: serving from the database");
        }
    }

    /// Probes the backend, renews what is pending, and uses the cache again if all
    /// of that worked.
    async fn recover(&self) {
        if let Err(e) = self.backend.probe().await {
            tracing::trace!(error = %e, "metadata cache still unreachable");
            return;
        }
        let repos: Vec<RepoName> = self
            .health
            .pending
            .lock()
            .expect("pending lock")
            .iter()
            .cloned()
            .collect();
        for repo in repos {
            if let Err(e) = self.backend.renew(&keys::generation(&repo)).await {
                metrics().errors.with_label_values(&["renew"]).inc();
                tracing::debug!(error = %e, "renewing after an outage failed");
                return;
            }
            self.health
                .pending
                .lock()
                .expect("pending lock")
                .remove(&repo);
            metrics().invalidations.with_label_values(&["done"]).inc();
        }
        let pending = self.health.pending.lock().expect("pending lock");
        if pending.is_empty() && !self.health.up.swap(true, Ordering::AcqRel) {
            metrics().up.set(1);
            tracing::info!(
                cache = self.backend.name(),
                "metadata cache reachable again"
            );
        }
    }

    /// After a write to `repo` (committed, or failed in a way that may have committed):
    /// renews its generation now, or once the cache is reachable again.
    async fn invalidate(&self, repo: &RepoName) {
        if !self.usable() {
            self.failed("renew", None, Some(repo));
            return;
        }
        match self.backend.renew(&keys::generation(repo)).await {
            Ok(()) => metrics().invalidations.with_label_values(&["done"]).inc(),
            Err(e) => self.failed("renew", Some(&e), Some(repo)),
        }
    }

    /// Reads through the cache: an entry stored under the repository's current
    /// generation, else `load` from the database and store what it found.
    #[tracing::instrument(level = "debug", name = "cache", skip_all,
        fields(repo = %repo, entry = entry.label(), result = tracing::field::Empty))]
    async fn read_through<T, L, F>(
        &self,
        repo: &RepoName,
        entry: Entry,
        id: &str,
        load: L,
        decode: fn(u64, &[u8]) -> Option<T>,
        encode: fn(u64, &T) -> Option<Vec<u8>>,
    ) -> Result<Option<T>>
    where
        L: FnOnce() -> F,
        F: std::future::Future<Output = Result<Option<T>>>,
    {
        let counter = |result: &'static str| {
            tracing::Span::current().record("result", result);
            metrics()
                .lookups
                .with_label_values(&[entry.label(), result])
                .inc()
        };
        if !self.usable() {
            counter("bypass");
            return load().await;
        }
        let key = keys::entry(repo, entry.kind(), id);
        let generation = match self.backend.lookup(&keys::generation(repo), &key).await {
            Ok(found) => {
                if let Some(value) = found
                    .entry
                    .as_deref()
                    .and_then(|e| decode(found.generation, e))
                {
                    counter("hit");
                    return Ok(Some(value));
                }
                found.generation
            }
            Err(e) => {
                counter("error");
                self.failed("lookup", Some(&e), None);
                return load().await;
            }
        };
        counter("miss");
        let loaded = load().await?;
        if let Some(bytes) = loaded.as_ref().and_then(|v| encode(generation, v)) {
            if let Err(e) = self.backend.store(&key, bytes, self.ttl).await {
                self.failed("store", Some(&e), None);
            }
        }
        Ok(loaded)
    }
}

/// Invalidates unless the write certainly changed nothing.
fn changed<T>(result: &Result<T>, unchanged: impl Fn(&T) -> bool) -> bool {
    !matches!(result, Ok(v) if unchanged(v))
}

fn encode_manifest(generation: u64, m: &ManifestRecord) -> Option<Vec<u8>> {
    codec::encode_manifest(generation, m)
}

fn encode_blob(generation: u64, b: &BlobRecord) -> Option<Vec<u8>> {
    Some(codec::encode_blob(generation, b))
}

#[async_trait]
impl BlobIndex for CachedMetadata {
    /// Only adds a link: no cached read can change (misses are not cached).
    async fn commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
        events: &[EventRecord],
    ) -> Result<BlobCommit> {
        self.blobs.commit_blob(repo, blob, upload_id, events).await
    }

    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobRecord>> {
        let id = digest.to_string();
        self.read_through(
            repo,
            Entry::Blob,
            &id,
            || self.blobs.repo_blob(repo, digest),
            codec::decode_blob,
            encode_blob,
        )
        .await
    }

    async fn any_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        self.blobs.any_blob(digest).await
    }

    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        self.blobs.link_blob(repo, digest, events).await
    }

    async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        let result = self.blobs.unlink_blob(repo, digest, events).await;
        if changed(&result, |removed| !removed) {
            self.invalidate(repo).await;
        }
        result
    }
}

#[async_trait]
impl ManifestStore for CachedMetadata {
    async fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &NewManifest,
        events: &[EventRecord],
    ) -> Result<PutManifestOutcome> {
        let result = self.manifests.put_manifest(repo, manifest, events).await;
        // Without a tag a push only adds; with one it may move the tag.
        if !manifest.tags.is_empty()
            && changed(&result, |o| {
                matches!(o, PutManifestOutcome::MissingChild(_))
            })
        {
            self.invalidate(repo).await;
        }
        result
    }

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let id = digest.to_string();
        self.read_through(
            repo,
            Entry::Manifest,
            &id,
            || self.manifests.manifest_by_digest(repo, digest),
            codec::decode_manifest,
            encode_manifest,
        )
        .await
    }

    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>> {
        self.read_through(
            repo,
            Entry::Tag,
            tag.as_str(),
            || self.manifests.manifest_by_tag(repo, tag),
            codec::decode_manifest,
            encode_manifest,
        )
        .await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        let result = self.manifests.delete_manifest(repo, digest, events).await;
        if changed(&result, |deleted| !deleted) {
            self.invalidate(repo).await;
        }
        result
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[EventRecord]) -> Result<bool> {
        let result = self.manifests.delete_tag(repo, tag, events).await;
        if changed(&result, |deleted| !deleted) {
            self.invalidate(repo).await;
        }
        result
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<String>>> {
        self.manifests.list_tags(repo, last, limit).await
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>> {
        self.manifests.referrers(repo, subject, artifact_type).await
    }
}

#[async_trait]
impl GcStore for CachedMetadata {
    async fn review_manifests(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
        let batch = self.gc.review_manifests(delay_ms, limit).await?;
        for repo in batch.repositories() {
            self.invalidate(&repo).await;
        }
        Ok(batch)
    }

    async fn review_blobs(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
        let batch = self.gc.review_blobs(delay_ms, limit).await?;
        for repo in batch.repositories() {
            self.invalidate(&repo).await;
        }
        Ok(batch)
    }

    async fn preview_reviews(&self, delay_ms: i64, limit: u32) -> Result<ReviewPreview> {
        self.gc.preview_reviews(delay_ms, limit).await
    }

    async fn tombstones(&self, older_than_ms: i64, limit: u32) -> Result<Vec<Tombstone>> {
        self.gc.tombstones(older_than_ms, limit).await
    }

    async fn clear_tombstones(&self, storage_keys: &[String]) -> Result<()> {
        self.gc.clear_tombstones(storage_keys).await
    }

    async fn is_tombstoned(&self, digest: &Digest) -> Result<bool> {
        self.gc.is_tombstoned(digest).await
    }

    async fn touch_blobs(&self, digests: &[Digest]) -> Result<()> {
        self.gc.touch_blobs(digests).await
    }

    async fn record_pulls(&self, pulls: &[PullRecord]) -> Result<()> {
        self.gc.record_pulls(pulls).await
    }

    async fn referenced_keys(&self) -> Result<std::collections::HashSet<String>> {
        self.gc.referenced_keys().await
    }

    async fn queue_depth(&self, delay_ms: i64) -> Result<QueueDepth> {
        self.gc.queue_depth(delay_ms).await
    }

    async fn repository_snapshot(&self, repo: &RepoName) -> Result<Option<RepoSnapshot>> {
        self.gc.repository_snapshot(repo).await
    }

    async fn delete_tag_if(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<bool> {
        let result = self.gc.delete_tag_if(repo, tag, digest).await;
        if changed(&result, |deleted| !deleted) {
            self.invalidate(repo).await;
        }
        result
    }

    async fn delete_manifest_if_unreachable(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        let result = self.gc.delete_manifest_if_unreachable(repo, digest).await;
        if changed(&result, |deleted| !deleted) {
            self.invalidate(repo).await;
        }
        result
    }
}

//! The instrumented engine's garbage collection, outbox and pull-through cache
//! aggregates (`GcStore`, `EventStore`, `MirrorStore`): each call measured as in the
//! parent module.

use std::collections::HashSet;

use async_trait::async_trait;

use super::{Engine, Instrumented};
use crate::metadata::events::{
    ClaimedCursor, DeadLetter, EndpointBacklog, EventStore, PendingEvent, ReplayFilter, StoredEvent,
};
use crate::metadata::gc::{
    GcStore, PullRecord, QueueDepth, RepoSnapshot, ReviewBatch, ReviewPreview, Tombstone,
};
use crate::metadata::mirror::{CachedContent, CachedTag, FillLease, MirrorStore};
use crate::metadata::Result;
use crate::telemetry::calls::{observe, Store};
use crate::types::{Digest, EventRecord, RepoName, Tag};

#[async_trait]
impl<S: Engine> GcStore for Instrumented<S> {
    async fn review_manifests(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
        observe(
            Store::Metadata,
            self.backend,
            "review_manifests",
            self.inner.review_manifests(delay_ms, limit),
        )
        .await
    }

    async fn review_blobs(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
        observe(
            Store::Metadata,
            self.backend,
            "review_blobs",
            self.inner.review_blobs(delay_ms, limit),
        )
        .await
    }

    async fn preview_reviews(&self, delay_ms: i64, limit: u32) -> Result<ReviewPreview> {
        observe(
            Store::Metadata,
            self.backend,
            "preview_reviews",
            self.inner.preview_reviews(delay_ms, limit),
        )
        .await
    }

    async fn tombstones(&self, older_than_ms: i64, limit: u32) -> Result<Vec<Tombstone>> {
        observe(
            Store::Metadata,
            self.backend,
            "tombstones",
            self.inner.tombstones(older_than_ms, limit),
        )
        .await
    }

    async fn clear_tombstones(&self, storage_keys: &[String]) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "clear_tombstones",
            self.inner.clear_tombstones(storage_keys),
        )
        .await
    }

    async fn is_tombstoned(&self, digest: &Digest) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "is_tombstoned",
            self.inner.is_tombstoned(digest),
        )
        .await
    }

    async fn touch_blobs(&self, digests: &[Digest]) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "touch_blobs",
            self.inner.touch_blobs(digests),
        )
        .await
    }

    async fn record_pulls(&self, pulls: &[PullRecord]) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "record_pulls",
            self.inner.record_pulls(pulls),
        )
        .await
    }

    async fn referenced_keys(&self) -> Result<HashSet<String>> {
        observe(
            Store::Metadata,
            self.backend,
            "referenced_keys",
            self.inner.referenced_keys(),
        )
        .await
    }

    async fn queue_depth(&self, delay_ms: i64) -> Result<QueueDepth> {
        observe(
            Store::Metadata,
            self.backend,
            "queue_depth",
            self.inner.queue_depth(delay_ms),
        )
        .await
    }

    async fn repository_snapshot(&self, repo: &RepoName) -> Result<Option<RepoSnapshot>> {
        observe(
            Store::Metadata,
            self.backend,
            "repository_snapshot",
            self.inner.repository_snapshot(repo),
        )
        .await
    }

    async fn delete_tag_if(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "delete_tag_if",
            self.inner.delete_tag_if(repo, tag, digest),
        )
        .await
    }

    async fn delete_manifest_if_unreachable(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "delete_manifest_if_unreachable",
            self.inner.delete_manifest_if_unreachable(repo, digest),
        )
        .await
    }
}

#[async_trait]
impl<S: Engine> EventStore for Instrumented<S> {
    async fn append_events(&self, events: &[EventRecord]) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "append_events",
            self.inner.append_events(events),
        )
        .await
    }

    async fn register_endpoint(&self, endpoint: &str, now: i64) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "register_endpoint",
            self.inner.register_endpoint(endpoint, now),
        )
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
        observe(
            Store::Metadata,
            self.backend,
            "claim_cursors",
            self.inner
                .claim_cursors(endpoint, token, now, lease_until, limit),
        )
        .await
    }

    async fn events_after(
        &self,
        repository: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        observe(
            Store::Metadata,
            self.backend,
            "events_after",
            self.inner.events_after(repository, after, limit),
        )
        .await
    }

    async fn complete_cursor(
        &self,
        endpoint: &str,
        repository: &str,
        token: &str,
        delivered_id: i64,
    ) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "complete_cursor",
            self.inner
                .complete_cursor(endpoint, repository, token, delivered_id),
        )
        .await
    }

    async fn complete_cursors(
        &self,
        endpoint: &str,
        token: &str,
        done: &[(String, i64)],
    ) -> Result<u64> {
        let call = self.inner.complete_cursors(endpoint, token, done);
        observe(Store::Metadata, self.backend, "complete_cursors", call).await
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
        observe(
            Store::Metadata,
            self.backend,
            "fail_cursor",
            self.inner
                .fail_cursor(endpoint, repository, token, attempts, due_at, error),
        )
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
        observe(
            Store::Metadata,
            self.backend,
            "dead_letter",
            self.inner
                .dead_letter(endpoint, repository, token, events, attempts, error, now),
        )
        .await
    }

    async fn dead_letters(&self, endpoint: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>> {
        observe(
            Store::Metadata,
            self.backend,
            "dead_letters",
            self.inner.dead_letters(endpoint, limit),
        )
        .await
    }

    async fn replay_dead_letters(&self, filter: &ReplayFilter) -> Result<u64> {
        observe(
            Store::Metadata,
            self.backend,
            "replay_dead_letters",
            self.inner.replay_dead_letters(filter),
        )
        .await
    }

    async fn pending_events(
        &self,
        endpoint: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PendingEvent>> {
        observe(
            Store::Metadata,
            self.backend,
            "pending_events",
            self.inner.pending_events(endpoint, limit),
        )
        .await
    }

    async fn endpoint_backlog(&self, endpoint: &str) -> Result<EndpointBacklog> {
        observe(
            Store::Metadata,
            self.backend,
            "endpoint_backlog",
            self.inner.endpoint_backlog(endpoint),
        )
        .await
    }

    async fn prune_events(&self, stale_before: i64, limit: u32) -> Result<u64> {
        observe(
            Store::Metadata,
            self.backend,
            "prune_events",
            self.inner.prune_events(stale_before, limit),
        )
        .await
    }
}

#[async_trait]
impl<S: Engine> MirrorStore for Instrumented<S> {
    async fn fill(&self, digest: &Digest) -> Result<Option<FillLease>> {
        observe(
            Store::Metadata,
            self.backend,
            "fill",
            self.inner.fill(digest),
        )
        .await
    }

    async fn claim_fill(&self, lease: &FillLease) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "claim_fill",
            self.inner.claim_fill(lease),
        )
        .await
    }

    async fn take_over_fill(
        &self,
        digest: &Digest,
        old_token: &str,
        owner: &str,
        token: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "take_over_fill",
            self.inner
                .take_over_fill(digest, old_token, owner, token, expires_at, now),
        )
        .await
    }

    async fn renew_fill(
        &self,
        digest: &Digest,
        token: &str,
        committed: u64,
        size: Option<u64>,
        expires_at: i64,
    ) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "renew_fill",
            self.inner
                .renew_fill(digest, token, committed, size, expires_at),
        )
        .await
    }

    async fn release_fill(&self, digest: &Digest, token: &str) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "release_fill",
            self.inner.release_fill(digest, token),
        )
        .await
    }

    async fn cached_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<CachedTag>> {
        observe(
            Store::Metadata,
            self.backend,
            "cached_tag",
            self.inner.cached_tag(repo, tag),
        )
        .await
    }

    async fn put_cached_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        fetched_at: i64,
    ) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "put_cached_tag",
            self.inner.put_cached_tag(repo, tag, digest, fetched_at),
        )
        .await
    }

    async fn record_content(&self, content: &CachedContent) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "record_content",
            self.inner.record_content(content),
        )
        .await
    }

    async fn touch_content(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "touch_content",
            self.inner.touch_content(pulls),
        )
        .await
    }

    async fn expired_content(
        &self,
        upstream: &str,
        before: i64,
        limit: u32,
    ) -> Result<Vec<CachedContent>> {
        observe(
            Store::Metadata,
            self.backend,
            "expired_content",
            self.inner.expired_content(upstream, before, limit),
        )
        .await
    }

    async fn least_recently_pulled(&self, limit: u32) -> Result<Vec<CachedContent>> {
        observe(
            Store::Metadata,
            self.backend,
            "least_recently_pulled",
            self.inner.least_recently_pulled(limit),
        )
        .await
    }

    async fn cached_blob_bytes(&self) -> Result<u64> {
        observe(
            Store::Metadata,
            self.backend,
            "cached_blob_bytes",
            self.inner.cached_blob_bytes(),
        )
        .await
    }

    async fn forget_content(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "forget_content",
            self.inner.forget_content(repo, digest),
        )
        .await
    }

    async fn is_referenced(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "is_referenced",
            self.inner.is_referenced(repo, digest),
        )
        .await
    }

    async fn claim_sweep(
        &self,
        name: &str,
        owner: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "claim_sweep",
            self.inner.claim_sweep(name, owner, expires_at, now),
        )
        .await
    }
}

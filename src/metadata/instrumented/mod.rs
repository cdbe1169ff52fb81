//! The metadata store, instrumented once: [`Instrumented`] wraps an engine (SQLite or
//! PostgreSQL) and gives every call of every aggregate a span (`store.call`, with the
//! operation, the backend and the outcome; DEBUG, so exported with the request's trace
//! and not logged at INFO) and an observation in
//! `wharf_metadata_call_duration_seconds{backend, operation, outcome}`
//! (`telemetry::calls`). The operation is the trait method's name, a closed set.
//! [`open`](super::open) wraps every store it opens; nothing else in the layer measures.
//! The request path's aggregates are here, GC's, the outbox's and the cache's in
//! `background`, the quotas', signatures' and import checkpoints' in `extensions`.

mod background;
mod extensions;

use std::sync::Arc;

use async_trait::async_trait;

use super::events::EventStore;
use super::gc::GcStore;
use super::import::ImportStore;
use super::mirror::MirrorStore;
use super::quota::QuotaStore;
use super::signatures::SignatureStore;
use super::{
    BlobCommit, BlobIndex, ManifestStore, NewManifest, PutManifestOutcome, RepositoryStore, Result,
    UploadStore,
};
use crate::telemetry::calls::{observe, Store};
use crate::types::{
    BlobRecord, ChunkRecord, Digest, EventRecord, ManifestRecord, ReferrerRecord, RepoName, Tag,
    UploadRecord,
};

/// Every aggregate, as one engine serves them.
pub trait Engine:
    UploadStore
    + BlobIndex
    + ManifestStore
    + RepositoryStore
    + GcStore
    + EventStore
    + MirrorStore
    + QuotaStore
    + SignatureStore
    + ImportStore
{
}

impl<S> Engine for S where
    S: UploadStore
        + BlobIndex
        + ManifestStore
        + RepositoryStore
        + GcStore
        + EventStore
        + MirrorStore
        + QuotaStore
        + SignatureStore
        + ImportStore
{
}

/// An engine whose every call is measured.
pub struct Instrumented<S> {
    inner: Arc<S>,
    /// `sqlite` or `postgres`.
    backend: &'static str,
}

impl<S: Engine> Instrumented<S> {
    pub fn new(inner: S, backend: &'static str) -> Instrumented<S> {
        Instrumented {
            inner: Arc::new(inner),
            backend,
        }
    }
}

#[async_trait]
impl<S: Engine> UploadStore for Instrumented<S> {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()> {
        observe(
            Store::Metadata,
            self.backend,
            "create_upload",
            self.inner.create_upload(upload),
        )
        .await
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        observe(
            Store::Metadata,
            self.backend,
            "get_upload",
            self.inner.get_upload(id),
        )
        .await
    }

    async fn advance_upload(
        &self,
        id: &str,
        expected_offset: u64,
        new_offset: u64,
        chunks: &[ChunkRecord],
        hash_state: &[u8],
        now: i64,
    ) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "advance_upload",
            self.inner
                .advance_upload(id, expected_offset, new_offset, chunks, hash_state, now),
        )
        .await
    }

    async fn delete_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        observe(
            Store::Metadata,
            self.backend,
            "delete_upload",
            self.inner.delete_upload(id),
        )
        .await
    }

    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>> {
        observe(
            Store::Metadata,
            self.backend,
            "stale_uploads",
            self.inner.stale_uploads(before, limit),
        )
        .await
    }
}

#[async_trait]
impl<S: Engine> BlobIndex for Instrumented<S> {
    async fn commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
        events: &[EventRecord],
    ) -> Result<BlobCommit> {
        observe(
            Store::Metadata,
            self.backend,
            "commit_blob",
            self.inner.commit_blob(repo, blob, upload_id, events),
        )
        .await
    }

    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobRecord>> {
        observe(
            Store::Metadata,
            self.backend,
            "repo_blob",
            self.inner.repo_blob(repo, digest),
        )
        .await
    }

    async fn any_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        observe(
            Store::Metadata,
            self.backend,
            "any_blob",
            self.inner.any_blob(digest),
        )
        .await
    }

    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "link_blob",
            self.inner.link_blob(repo, digest, events),
        )
        .await
    }

    async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "unlink_blob",
            self.inner.unlink_blob(repo, digest, events),
        )
        .await
    }
}

#[async_trait]
impl<S: Engine> ManifestStore for Instrumented<S> {
    async fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &NewManifest,
        events: &[EventRecord],
    ) -> Result<PutManifestOutcome> {
        observe(
            Store::Metadata,
            self.backend,
            "put_manifest",
            self.inner.put_manifest(repo, manifest, events),
        )
        .await
    }

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        observe(
            Store::Metadata,
            self.backend,
            "manifest_by_digest",
            self.inner.manifest_by_digest(repo, digest),
        )
        .await
    }

    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>> {
        observe(
            Store::Metadata,
            self.backend,
            "manifest_by_tag",
            self.inner.manifest_by_tag(repo, tag),
        )
        .await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "delete_manifest",
            self.inner.delete_manifest(repo, digest, events),
        )
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[EventRecord]) -> Result<bool> {
        observe(
            Store::Metadata,
            self.backend,
            "delete_tag",
            self.inner.delete_tag(repo, tag, events),
        )
        .await
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<String>>> {
        observe(
            Store::Metadata,
            self.backend,
            "list_tags",
            self.inner.list_tags(repo, last, limit),
        )
        .await
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>> {
        observe(
            Store::Metadata,
            self.backend,
            "referrers",
            self.inner.referrers(repo, subject, artifact_type),
        )
        .await
    }
}

#[async_trait]
impl<S: Engine> RepositoryStore for Instrumented<S> {
    async fn ping(&self) -> Result<()> {
        observe(Store::Metadata, self.backend, "ping", self.inner.ping()).await
    }

    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        observe(
            Store::Metadata,
            self.backend,
            "list_repositories",
            self.inner.list_repositories(last, limit),
        )
        .await
    }
}

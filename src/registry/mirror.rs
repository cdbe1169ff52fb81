//! The core's side of the pull-through cache: the [`Mirror`] trait the pull path calls
//! for repositories that mirror an upstream, and what the mirror may do to the store
//! that a client may not (store a manifest whose blobs are not there yet).
//!
//! The core knows nothing of upstreams, HTTP clients or leases: `proxy` implements
//! [`Mirror`] and `server` hands it to [`Registry::with_mirror`]. Without one, every
//! hook here is a no-op and the registry behaves as before.

use std::sync::Arc;

use async_trait::async_trait;

use super::blobs::BlobContent;
use super::manifest_format;
use super::{Registry, RegistryError, Result};
use crate::metadata::{NewManifest, PutManifestOutcome};
use crate::types::{BlobRecord, ByteRange, Digest, ManifestRecord, Reference, RepoName, Tag};

/// How an upstream failed when nothing cached could stand in for its answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Unreachable, timed out, or answered 5xx.
    #[error("upstream {upstream} is unavailable: {message}")]
    Unavailable { upstream: String, message: String },
    /// Answered 429.
    #[error("upstream {upstream} is rate-limiting this registry")]
    TooManyRequests {
        upstream: String,
        retry_after: Option<u64>,
    },
    /// Refused this registry's credentials (401/403 after the token flow).
    #[error("upstream {upstream} refused this registry's credentials: {message}")]
    Denied { upstream: String, message: String },
    /// Sent something that is not what was asked for (a digest mismatch, a manifest
    /// that does not parse).
    #[error("upstream {upstream} sent invalid content: {message}")]
    Invalid { upstream: String, message: String },
}

/// A pull-through cache, as the core's pull path sees it.
#[async_trait]
pub trait Mirror: Send + Sync + 'static {
    /// The local repository that `name` names in a request with `?ns=<ns>`; `Err`
    /// (with the reason) when `ns` is no configured upstream: nothing is dialled.
    fn ns_repository(&self, ns: &str, name: &str) -> std::result::Result<String, String>;
    /// If `repo` mirrors an upstream: what it mirrors, for refusals of pushes.
    fn mirror_of(&self, repo: &RepoName) -> Option<String>;
    /// Makes `reference` of a mirrored `repo` servable from the store: fetched when
    /// absent, a tag revalidated once its ttl has passed. When the upstream fails and
    /// a cached copy exists it returns `Ok` (the copy is served); it fails only when
    /// nothing can be. Does nothing for other repositories.
    async fn refresh_manifest(
        &self,
        registry: &Registry,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<()>;
    /// A blob of a mirrored `repo` that the store does not hold: its record as the
    /// upstream (or a fill in progress) describes it. `None`: not mirrored.
    async fn stat_blob(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>>;
    /// A blob of a mirrored `repo` that the store does not hold, streamed while it is
    /// fetched into the store (or followed from a fill already under way). `None`:
    /// not mirrored.
    async fn open_blob(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobContent>>;
    /// Content of `repo` was served from the store (for expiry, eviction, metrics).
    fn pulled(&self, repo: &RepoName, digest: &Digest, manifest: bool);
}

impl Registry {
    /// This registry with a pull-through cache.
    pub fn with_mirror(mut self, mirror: Arc<dyn Mirror>) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// The pull-through cache, if one is configured.
    pub fn mirror(&self) -> Option<&Arc<dyn Mirror>> {
        self.mirror.as_ref()
    }

    /// Before a manifest read: the mirror's chance to fetch or revalidate it.
    pub(super) async fn mirror_refresh(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<()> {
        match &self.mirror {
            Some(m) => m.refresh_manifest(self, repo, reference).await,
            None => Ok(()),
        }
    }

    /// After a read served from the store.
    pub(super) fn mirror_pulled(&self, repo: &RepoName, digest: &Digest, manifest: bool) {
        if let Some(m) = &self.mirror {
            m.pulled(repo, digest, manifest);
        }
    }

    /// A blob the store does not hold, from the mirror if `repo` is mirrored.
    pub(super) async fn mirror_stat_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobRecord> {
        if let Some(m) = &self.mirror {
            if let Some(blob) = m.stat_blob(self, repo, digest).await? {
                return Ok(blob);
            }
        }
        Err(RegistryError::BlobUnknown(digest.clone()))
    }

    pub(super) async fn mirror_open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobContent> {
        if let Some(m) = &self.mirror {
            if let Some(content) = m.open_blob(self, repo, digest, range).await? {
                return Ok(content);
            }
        }
        Err(RegistryError::BlobUnknown(digest.clone()))
    }

    /// The blob's record if `repo` links it (no mirror involved).
    pub async fn local_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobRecord>> {
        Ok(self.meta.blobs.repo_blob(repo, digest).await?)
    }

    /// Stores a manifest fetched from an upstream into a mirrored repository: validated
    /// as a push is, digest checked against `expected` when given, but sparse (its
    /// blobs arrive when they are pulled), pointing `tag` at it if given.
    pub async fn put_mirrored_manifest(
        &self,
        repo: &RepoName,
        expected: Option<&Digest>,
        tag: Option<&Tag>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<ManifestRecord> {
        let algorithm = expected.map_or(crate::types::digest::Algorithm::Sha256, |d| d.algorithm());
        let valid = manifest_format::validate(&body, content_type, algorithm)?;
        if let Some(expected) = expected {
            if expected != &valid.digest {
                return Err(RegistryError::DigestMismatch {
                    expected: expected.clone(),
                    actual: valid.digest,
                });
            }
        }
        let (blobs, manifests) = valid.required_digests();
        let record = ManifestRecord {
            digest: valid.digest.clone(),
            media_type: valid.media_type.clone(),
            payload: body,
            subject: valid.subject.clone(),
            artifact_type: valid.artifact_type.clone(),
            annotations: valid.annotations.as_ref().map(|a| a.to_string()),
        };
        let new = NewManifest {
            record: record.clone(),
            blobs,
            manifests,
            require_blobs: false,
            require_manifests: false,
            tags: tag.into_iter().cloned().collect(),
        };
        // Mirrored content is not announced: no client pushed it.
        match self.meta.manifests.put_manifest(repo, &new, &[]).await? {
            PutManifestOutcome::Stored => Ok(record),
            PutManifestOutcome::MissingChild(d) => Err(RegistryError::ManifestBlobUnknown(d)),
        }
    }

    /// The metadata store, for the mirror's own rows (`metadata::mirror`).
    pub fn metadata(&self) -> &crate::metadata::Metadata {
        &self.meta
    }

    /// The blob store, for the mirror's reads of fills in progress.
    pub fn blob_backend(&self) -> &Arc<dyn crate::blobs::BlobBackend> {
        &self.blobs
    }
}

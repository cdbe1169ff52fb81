//! Adopting content that is already in the blob store, for `wharf import`: a blob object
//! written by another registry (distribution's `blobs/sha256/…/data`) recorded under its
//! own storage key, and a manifest stored by it validated and recorded as a push would
//! be. Nothing is copied and nothing is announced (no client pushed it: no events, as
//! for mirrored content).
//!
//! The rules are the push's: the manifest is parsed and validated
//! (`manifest_format::validate`, `validation.manifests.urls`), its digest must be the one
//! the other registry filed it under, and every blob and manifest it references must
//! already be in the repository (unless `validation.manifests.sparse` says otherwise), so
//! an importer adopts a repository's blobs first, then image manifests, then indexes.

use super::manifest_format;
use super::{Registry, RegistryError, Result};
use crate::metadata::{NewManifest, PutManifestOutcome};
use crate::types::digest::{Algorithm, Digest};
use crate::types::name::{RepoName, Tag};
use crate::types::{BlobRecord, ManifestRecord};

/// What adopting a manifest found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    Stored,
    /// A referenced blob or manifest is not (yet) in the repository; nothing was written.
    MissingChild(Digest),
}

impl Registry {
    /// Records the blob `digest` of `size` bytes, stored at `storage_key`, and links it
    /// to `repo`. If the registry already has the digest, its record (and key) stays and
    /// only the link is added. True if the record is new.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %digest))]
    pub async fn adopt_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        storage_key: &str,
    ) -> Result<bool> {
        self.require_writable()?;
        let record = BlobRecord {
            digest: digest.clone(),
            size,
            storage_key: storage_key.to_string(),
        };
        let commit = self
            .meta
            .blobs
            .commit_blob(repo, &record, None, &[])
            .await?;
        Ok(commit.stored_new)
    }

    /// Validates `body` as the manifest `digest` of `repo` and stores it with `tags`
    /// pointing at it (all or none). Adopting the same manifest again changes nothing
    /// but the tags.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %digest))]
    pub async fn adopt_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: Vec<u8>,
        tags: &[Tag],
    ) -> Result<Adopted> {
        self.require_writable()?;
        let algorithm: Algorithm = digest.algorithm();
        let valid = manifest_format::validate(&body, None, algorithm)?;
        self.check_foreign_urls(&valid.foreign_urls)?;
        if &valid.digest != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual: valid.digest,
            });
        }
        let (blobs, manifests) = valid.required_digests();
        let mut tags = tags.to_vec();
        tags.sort();
        tags.dedup();
        let new = NewManifest {
            record: ManifestRecord {
                digest: valid.digest,
                media_type: valid.media_type,
                payload: body,
                subject: valid.subject,
                artifact_type: valid.artifact_type,
                annotations: valid.annotations.as_ref().map(|a| a.to_string()),
            },
            blobs,
            manifests,
            require_blobs: !self.options.sparse_manifests,
            require_manifests: !(self.options.sparse_manifests || self.options.sparse_indexes),
            tags,
        };
        match self.meta.manifests.put_manifest(repo, &new, &[]).await? {
            PutManifestOutcome::Stored => Ok(Adopted::Stored),
            PutManifestOutcome::MissingChild(d) => Ok(Adopted::MissingChild(d)),
        }
    }
}

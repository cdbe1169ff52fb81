//! Reading and deleting blobs of a repository.

use std::net::IpAddr;
use std::ops::Range;

use super::{Registry, RegistryError, Result};
use crate::blobs::ByteStream;
use crate::redirect::Redirect;
use crate::types::digest::Digest;
use crate::types::name::RepoName;
use crate::types::{BlobRecord, ByteRange, EventAction, RequestContext, TargetKind};

/// An opened blob: its record, the bytes selected and their stream.
pub struct BlobContent {
    pub blob: BlobRecord,
    pub range: Option<Range<u64>>,
    pub stream: ByteStream,
}

/// Where a blob GET's bytes come from.
pub enum BlobLocation {
    /// Sent elsewhere (a presigned object-store URL, a CDN); the registry moves no bytes.
    Redirect {
        blob: BlobRecord,
        redirect: Redirect,
    },
    /// Streamed by the registry.
    Stream(BlobContent),
}

impl Registry {
    /// Where to read the blob (or a range of it) from: a redirect when redirects are on
    /// and the store can make a URL for it, else its opened content. A range
    /// the blob cannot satisfy is refused here either way; an empty blob is streamed.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %digest, redirect = tracing::field::Empty))]
    pub async fn locate_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
        client: Option<IpAddr>,
        ctx: &RequestContext,
    ) -> Result<BlobLocation> {
        let Some(blob) = self.local_blob(repo, digest).await? else {
            // Not in the store: a mirrored repository streams it while it is fetched.
            let content = self.mirror_open_blob(repo, digest, range).await?;
            // A client's pull all the same, announced as a pull from the store is (the
            // fill itself writes no event: no client pushed the blob).
            if self.pulls.is_some() {
                let target =
                    super::events::blob_target(&content.blob.digest, Some(content.blob.size));
                self.pulled(ctx, repo, target);
            }
            return Ok(BlobLocation::Stream(content));
        };
        // A use, which pushes back the blob's pending garbage-collection review.
        self.access.blob_used(digest);
        self.mirror_pulled(repo, digest, false);
        if self.pulls.is_some() {
            let target = super::events::blob_target(&blob.digest, Some(blob.size));
            self.pulled(ctx, repo, target);
        }
        let resolved = range.map(|r| r.resolve(blob.size)).transpose()?;
        if let (Some(redirector), true) = (&self.redirector, blob.size > 0) {
            let suffix = range.is_some_and(|r| r.is_suffix());
            if let Some(redirect) = redirector
                .redirect(self.blobs.as_ref(), &blob.storage_key, suffix, client)
                .await
            {
                tracing::Span::current().record("redirect", redirect.target.label());
                return Ok(BlobLocation::Redirect { blob, redirect });
            }
        }
        self.stream_blob(blob, resolved)
            .await
            .map(BlobLocation::Stream)
    }

    /// The blob's record if it is in `repo` (or, for a mirrored repository, upstream).
    /// A HEAD of a stored blob is a use, which pushes back its pending
    /// garbage-collection review.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobRecord> {
        match self.meta.blobs.repo_blob(repo, digest).await? {
            Some(blob) => {
                self.access.blob_used(digest);
                Ok(blob)
            }
            None => self.mirror_stat_blob(repo, digest).await,
        }
    }

    /// Opens `range` (or all) of a blob for reading.
    async fn stream_blob(
        &self,
        blob: BlobRecord,
        range: Option<Range<u64>>,
    ) -> Result<BlobContent> {
        let stream = if blob.size == 0 {
            Box::pin(futures_util::stream::empty()) as ByteStream
        } else {
            let selected = range.clone().unwrap_or(0..blob.size);
            self.blobs.get(&blob.storage_key, Some(selected)).await?
        };
        Ok(BlobContent {
            blob,
            range,
            stream,
        })
    }

    /// Unlinks the blob from `repo`. Its bytes stay until garbage collection finds no
    /// repository linking them.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %digest))]
    pub async fn delete_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.require_delete()?;
        let target = super::events::deleted_target(TargetKind::Blob, Some(digest), None);
        let events = self.event(ctx, EventAction::Delete, repo, target);
        if self.meta.blobs.unlink_blob(repo, digest, &events).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }
}

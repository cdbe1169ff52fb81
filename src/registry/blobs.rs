//! Reading and deleting blobs of a repository.

use std::net::IpAddr;
use std::ops::Range;

use super::digest::Digest;
use super::name::RepoName;
use super::{Registry, RegistryError, Result};
use crate::blobs::ByteStream;
use crate::metadata::BlobRecord;
use crate::redirect::Redirect;

/// A byte range a client asked for, before it is resolved against the blob's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive) or `bytes=a-` (`end` None).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open range this selects in a blob of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<Range<u64>> {
        let unsatisfiable = RegistryError::RangeNotSatisfiable { size };
        match self {
            ByteRange::From { start, end } => {
                if start >= size {
                    return Err(unsatisfiable);
                }
                let end = end.map_or(size, |e| e.saturating_add(1).min(size));
                if end <= start {
                    return Err(unsatisfiable);
                }
                Ok(start..end)
            }
            ByteRange::Suffix(0) => Err(unsatisfiable),
            ByteRange::Suffix(n) => Ok(size.saturating_sub(n)..size),
        }
    }
}

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
    /// Where to read the blob (or a range of it) from: a redirect when the blob store
    /// has a redirector and can make a URL for it, else its opened content. A range
    /// the blob cannot satisfy is refused here either way; an empty blob is streamed.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %digest, redirect = tracing::field::Empty))]
    pub async fn locate_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
        client: Option<IpAddr>,
    ) -> Result<BlobLocation> {
        let blob = self.stat_blob(repo, digest).await?;
        let resolved = range.map(|r| r.resolve(blob.size)).transpose()?;
        if let (Some(redirector), true) = (self.blobs.redirector(), blob.size > 0) {
            let suffix = matches!(range, Some(ByteRange::Suffix(_)));
            let backend = self.blobs.backend();
            if let Some(redirect) = redirector
                .redirect(backend, &blob.storage_key, suffix, client)
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

    /// The blob's record if it is in `repo`.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobRecord> {
        self.meta
            .repo_blob(repo, digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
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
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.require_delete()?;
        if self.meta.unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve() {
        let from = |start, end| ByteRange::From { start, end };
        assert_eq!(from(0, Some(9)).resolve(100).unwrap(), 0..10);
        assert_eq!(from(90, Some(200)).resolve(100).unwrap(), 90..100);
        assert_eq!(from(5, None).resolve(100).unwrap(), 5..100);
        assert_eq!(ByteRange::Suffix(10).resolve(100).unwrap(), 90..100);
        assert_eq!(ByteRange::Suffix(1000).resolve(100).unwrap(), 0..100);
        assert!(from(100, None).resolve(100).is_err());
        assert!(from(5, Some(4)).resolve(100).is_err());
        assert!(ByteRange::Suffix(0).resolve(100).is_err());
        assert!(from(0, None).resolve(0).is_err());
    }
}

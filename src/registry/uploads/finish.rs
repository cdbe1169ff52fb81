//! An upload's end: the final `PUT ?digest=` appends its last chunk, verifies the
//! digest, and commits the blob (charged to its quotas when they bind); the commit shared
//! with the monolithic push and the pull-through cache's fills.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tracing::{debug, warn};

use super::Received;
use crate::metadata::quota::{ChargedCommit, QuotaCharge};
use crate::registry::hasher::ResumableHasher;
use crate::registry::{Registry, RegistryError, Result};
use crate::types::digest::{Algorithm, Digest};
use crate::types::name::RepoName;
use crate::types::records::push_chunk;
use crate::types::{
    BlobRecord, ChunkRange, ChunkRecord, EventAction, RequestContext, UploadRecord,
};

impl Registry {
    /// `PUT ?digest=`: appends the optional last chunk, verifies the digest, and commits.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, upload = %id, digest = %expected))]
    // The request's parts, each its own value as the handler parsed it.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_upload<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        expected: &Digest,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: S,
        ctx: &RequestContext,
    ) -> Result<BlobRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.finish_upload_announced(repo, id, expected, range, content_length, body, Some(ctx))
            .await
    }

    /// Commits a session that no client pushed (a pull-through cache's fill): as
    /// [`Registry::finish_upload`] with no body, but without a `push` event, as
    /// mirrored manifests have none.
    pub async fn finish_fill_upload(
        &self,
        repo: &RepoName,
        id: &str,
        expected: &Digest,
    ) -> Result<BlobRecord> {
        let body = futures_util::stream::empty::<std::result::Result<Bytes, String>>();
        self.finish_upload_announced(repo, id, expected, None, Some(0), body, None)
            .await
    }

    /// `finish_upload`, with the push event written only when `ctx` is given.
    // The request's parts, each its own value as the handler parsed it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish_upload_announced<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        expected: &Digest,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: S,
        ctx: Option<&RequestContext>,
    ) -> Result<BlobRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.require_writable()?;
        let upload = self.load_upload(repo, id).await?;
        let declared = Self::check_range(&upload, range)?;
        let hasher = Self::restore_hasher(&upload)?;
        // A final request whose length is known and small is checked now (a read)
        // and charged by the commit; a longer or unknown one reserves ahead of its
        // bytes. Either way the commit checks the blob again, so a reservation that
        // expired while the session idled is checked once more.
        let limits = self.binding_quotas(repo).await?;
        let length = declared.or(content_length);
        let quota = match self
            .guard_quota(id, repo, expected, upload.offset, length, &limits)
            .await
        {
            Ok(q) => q,
            Err(e) => return Err(self.refuse_upload(&upload, e).await),
        };
        let charge = (!limits.is_empty()).then_some(QuotaCharge {
            limits,
            reservation: None,
        });
        let written = self
            .write_session_chunk(&upload, (repo, id), hasher, declared, quota, body)
            .await?;
        let mut chunks = upload.chunks.clone();
        if let Some(chunk) = written.chunk.clone() {
            push_chunk(&mut chunks, chunk);
        }
        let size = upload.offset + written.len;
        // The hold on the upload (written._hold) lasts until the commit is recorded.
        let committed = self
            .commit(
                repo,
                &upload,
                true,
                Received {
                    chunks,
                    size,
                    hasher: written.hasher.clone(),
                },
                expected,
                ctx,
                charge,
            )
            .await;
        drop(written);
        committed
    }

    /// Assembles, verifies and records the blob, closing the upload's session row if it
    /// has one; on a digest mismatch the upload is gone.
    #[tracing::instrument(level = "debug", skip_all, fields(size))]
    // The request's parts, each its own value as the upload gathered it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit(
        &self,
        repo: &RepoName,
        upload: &UploadRecord,
        has_session_row: bool,
        received: Received,
        expected: &Digest,
        ctx: Option<&RequestContext>,
        charge: Option<QuotaCharge>,
    ) -> Result<BlobRecord> {
        let Received {
            chunks,
            size,
            hasher,
        } = received;
        let storage_key = self
            .blobs
            .assemble(&upload.storage_key, &chunks, size)
            .await?;
        let actual = if hasher.algorithm() == expected.algorithm() {
            hasher.finish()
        } else {
            // The session hashed with another algorithm (sha256 unless the client said
            // otherwise when it started): hash the stored blob once with the asked one.
            self.rehash(&storage_key, expected.algorithm()).await?
        };
        if &actual != expected {
            self.drop_upload(upload, &chunks, &storage_key).await;
            return Err(RegistryError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let record = BlobRecord {
            digest: actual,
            size,
            storage_key: storage_key.clone(),
        };
        let session = has_session_row.then_some(upload.id.as_str());
        let target = crate::registry::events::blob_target(&record.digest, Some(size));
        // No event for a commit no client asked for (a mirror's fill).
        let events = match ctx {
            Some(ctx) => self.event(ctx, EventAction::Push, repo, target),
            None => Vec::new(),
        };
        crate::clock::race_point("upload.before_commit", &record.digest.to_string()).await;
        let committed = match &charge {
            Some(charge) => self
                .meta
                .quotas
                .commit_blob_charged(repo, &record, session, &events, charge)
                .await
                .map(|c| match c {
                    ChargedCommit::Committed(c) => Ok(c),
                    ChargedCommit::Refused(outcome) => Err(outcome),
                }),
            None => self
                .meta
                .blobs
                .commit_blob(repo, &record, session, &events)
                .await
                .map(Ok),
        };
        let commit = match committed {
            Ok(Ok(c)) => c,
            // No room left at commit (taken by a push that committed or reserved since
            // this one was checked): the blob is not recorded, and its bytes go.
            Ok(Err(outcome)) => {
                self.drop_upload(upload, &chunks, &storage_key).await;
                crate::registry::quota::refused(outcome)?;
                return Err(RegistryError::Metadata(
                    crate::metadata::MetadataError::Corrupt(
                        "a quota-charged commit was refused without a reason".into(),
                    ),
                ));
            }
            // Cancelled, purged or finished by another request meanwhile: its data is
            // not ours to keep or delete.
            Err(crate::metadata::MetadataError::UploadGone) => {
                return Err(RegistryError::UploadUnknown(upload.id.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.blobs.release_chunks(&chunks, &storage_key).await {
            warn!(upload = %upload.id, error = %e, "could not delete composed chunks");
        }
        if commit.stored_new
            && self
                .meta
                .gc
                .is_tombstoned(&record.digest)
                .await
                .unwrap_or(false)
        {
            // The digest's old bytes are being collected; these are stored anew.
            crate::registry::gc::metrics::tombstone_hit("upload");
        }
        if !commit.stored_new && commit.blob.storage_key != storage_key {
            // The registry already had these bytes: ours are redundant.
            if let Err(e) = self.blobs.delete(&storage_key).await {
                warn!(key = %storage_key, error = %e, "could not delete a duplicate blob");
            }
        }
        debug!(repo = %repo, digest = %record.digest, size, "blob committed");
        Ok(commit.blob)
    }

    pub(super) async fn rehash(&self, key: &str, algorithm: Algorithm) -> Result<Digest> {
        let mut hasher = ResumableHasher::new(algorithm);
        let mut stream = self.blobs.get(key, None).await?;
        while let Some(piece) = stream.next().await {
            hasher.update(&piece?);
        }
        Ok(hasher.finish())
    }

    pub(super) async fn drop_upload(
        &self,
        upload: &UploadRecord,
        chunks: &[ChunkRecord],
        assembled: &str,
    ) {
        if let Err(e) = self.meta.uploads.delete_upload(&upload.id).await {
            warn!(upload = %upload.id, error = %e, "could not delete upload session");
        }
        if let Err(e) = self.blobs.discard_upload(&upload.storage_key, chunks).await {
            warn!(upload = %upload.id, error = %e, "could not delete upload data");
        }
        if assembled != upload.storage_key {
            let _ = self.blobs.delete(assembled).await;
        }
    }
}

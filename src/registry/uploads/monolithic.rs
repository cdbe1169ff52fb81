//! `POST ?digest=`: a whole blob in one request, with no session row.

use bytes::Bytes;
use futures_util::Stream;

use super::{QuotaWatch, Received};
use crate::metadata::quota::QuotaCharge;
use crate::registry::hasher::ResumableHasher;
use crate::registry::{now_ms, Registry, Result};
use crate::types::digest::Digest;
use crate::types::name::RepoName;
use crate::types::{BlobRecord, ChunkRecord, RequestContext, UploadRecord};

impl Registry {
    /// `POST ?digest=`: the whole blob in one request, no session row.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %expected))]
    pub async fn upload_monolithic<S, E>(
        &self,
        repo: &RepoName,
        expected: &Digest,
        content_length: Option<u64>,
        body: S,
        ctx: &RequestContext,
    ) -> Result<BlobRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.require_writable()?;
        let id = uuid::Uuid::new_v4().to_string();
        let limits = self.binding_quotas(repo).await?;
        let quota = self
            .guard_quota(&id, repo, expected, 0, content_length, &limits)
            .await?;
        // A reservation (a push too long, or of unknown length, to be only checked
        // first) has no session row to end it: the commit ends it, else it is released
        // here.
        let reserved = quota.is_some();
        let charge = (!limits.is_empty()).then(|| QuotaCharge {
            limits,
            reservation: reserved.then(|| id.clone()),
        });
        let result = self
            .upload_monolithic_reserved(repo, expected, &id, quota, charge, body, ctx)
            .await;
        if reserved && result.is_err() {
            // Off the request's path: the client need not wait for one more write (a
            // failure, or a process that dies first, leaves it to expire).
            let registry = self.clone();
            tokio::spawn(async move { registry.release_reservation(Some(id)).await });
        }
        result
    }

    // The request's parts, each its own value as the handler parsed it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload_monolithic_reserved<S, E>(
        &self,
        repo: &RepoName,
        expected: &Digest,
        id: &str,
        quota: Option<QuotaWatch<'_>>,
        charge: Option<QuotaCharge>,
        body: S,
        ctx: &RequestContext,
    ) -> Result<BlobRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = id.to_string();
        let now = now_ms();
        let upload = UploadRecord {
            id: id.clone(),
            repository: repo.clone(),
            offset: 0,
            storage_key: self.blobs.new_storage_key(&id),
            chunks: Vec::new(),
            hash_state: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let written = self
            .write_chunk(
                &upload.storage_key,
                0,
                ResumableHasher::new(expected.algorithm()),
                None,
                None,
                quota,
                body,
            )
            .await?;
        let chunks: Vec<ChunkRecord> = written.chunk.iter().cloned().collect();
        let received = Received {
            chunks,
            size: written.len,
            hasher: written.hasher,
        };
        self.commit(repo, &upload, false, received, expected, Some(ctx), charge)
            .await
    }
}

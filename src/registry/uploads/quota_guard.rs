//! An upload's quota guard (`registry::quota`): the reservation a streamed chunk extends
//! ahead of its bytes, the room check or reservation of a request that names its blob,
//! and what a refusal leaves (nothing).

use crate::registry::quota::SMALL_PUSH;
use crate::registry::{Registry, RegistryError, Result};
use crate::types::digest::Digest;
use crate::types::name::RepoName;
use crate::types::UploadRecord;

/// The quota reservation a streamed chunk extends as its bytes arrive
/// (`registry::quota`): the session's id, its repository, the quotas that bind it and
/// the total reserved so far.
pub(super) struct QuotaWatch<'a> {
    pub(super) id: &'a str,
    pub(super) repo: &'a RepoName,
    /// The blob's digest when the request names it (a final `PUT`).
    pub(super) digest: Option<&'a Digest>,
    pub(super) limits: Vec<(String, u64)>,
    pub(super) reserved: u64,
}

impl Registry {
    /// Grows `q`'s reservation to cover `total` bytes before they are written: a step
    /// ahead when there is room for it, else exactly `total`.
    pub(super) async fn extend_reservation(
        &self,
        q: &mut QuotaWatch<'_>,
        total: u64,
    ) -> Result<()> {
        if total <= q.reserved || q.limits.is_empty() {
            return Ok(());
        }
        let ahead = total.saturating_add(crate::registry::quota::STREAM_STEP);
        match self
            .reserve_upload(q.id, q.repo, ahead, q.digest, &q.limits)
            .await
        {
            Ok(()) => q.reserved = ahead,
            Err(RegistryError::QuotaExceeded { .. }) => {
                self.reserve_upload(q.id, q.repo, total, q.digest, &q.limits)
                    .await?;
                q.reserved = total;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Reserves what a request declares up front (`offset` + its declared length) and
    /// returns the watch that extends the reservation while its body streams.
    pub(super) async fn watch_quota<'a>(
        &self,
        id: &'a str,
        repo: &'a RepoName,
        digest: Option<&'a Digest>,
        offset: u64,
        declared: Option<u64>,
    ) -> Result<Option<QuotaWatch<'a>>> {
        let limits = self.binding_quotas(repo).await?;
        if limits.is_empty() {
            return Ok(None);
        }
        let mut watch = QuotaWatch {
            id,
            repo,
            digest,
            limits,
            reserved: 0,
        };
        self.extend_reservation_exact(&mut watch, offset + declared.unwrap_or(0))
            .await?;
        Ok(Some(watch))
    }

    /// Guards a request that names its blob (a final `PUT`, a `POST ?digest=`) before
    /// its bytes are written. Its length known and at most [`SMALL_PUSH`]: checked
    /// against the room left now (a read, nothing recorded) — its commit charges it,
    /// checking again — and no watch. Otherwise reserved as [`Registry::watch_quota`]
    /// does, with a watch that extends the reservation as the bytes stream.
    pub(super) async fn guard_quota<'a>(
        &self,
        id: &'a str,
        repo: &'a RepoName,
        digest: &'a Digest,
        offset: u64,
        length: Option<u64>,
        limits: &[(String, u64)],
    ) -> Result<Option<QuotaWatch<'a>>> {
        if limits.is_empty() {
            return Ok(None);
        }
        match length {
            Some(n) if n <= SMALL_PUSH => {
                self.check_upload_room(id, repo, offset + n, digest, limits)
                    .await?;
                Ok(None)
            }
            _ => {
                let mut watch = QuotaWatch {
                    id,
                    repo,
                    digest: Some(digest),
                    limits: limits.to_vec(),
                    reserved: 0,
                };
                self.extend_reservation_exact(&mut watch, offset + length.unwrap_or(0))
                    .await?;
                Ok(Some(watch))
            }
        }
    }

    pub(super) async fn extend_reservation_exact(
        &self,
        q: &mut QuotaWatch<'_>,
        total: u64,
    ) -> Result<()> {
        self.reserve_upload(q.id, q.repo, total, q.digest, &q.limits)
            .await?;
        q.reserved = total;
        Ok(())
    }

    /// A push refused for its quota leaves nothing: the session and every byte it
    /// wrote go.
    pub(super) async fn refuse_upload(
        &self,
        upload: &UploadRecord,
        e: RegistryError,
    ) -> RegistryError {
        if matches!(e, RegistryError::QuotaExceeded { .. }) {
            self.drop_upload(upload, &upload.chunks, &upload.storage_key)
                .await;
        }
        e
    }
}
